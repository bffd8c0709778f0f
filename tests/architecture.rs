//! ARCHITECTURE.md's layers against the real dependency graph (`cargo metadata`): the documented
//! list is the graph both ways, no dependency points up or around a cycle, the server stands on
//! the core alone, front ends reach past the core only where the document says so, the outside
//! crates that carry a rule (llama.cpp, CUDA, SQLite, HTTP, Tauri, clap) are used only where they
//! belong, and each shared word (plan, placement, chat role, error kind, ...) names one type.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// All a front end may depend on of Canopy: the core, the vocabulary, the server and the worker's
/// entry point.
const FRONT_END_ALLOWED: [&str; 5] = [
    "canopy-core",
    "canopy-types",
    "canopy-serve",
    "canopy-llama",
    "canopy-worker",
];
const FRONT_ENDS: [&str; 2] = ["canopy", "canopy-app"];
const AROUND: &str = "| around the core:";

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every workspace package and its normal and build dependencies, by name.
fn metadata() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(ROOT)
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut graph = Graph::new();
    for package in doc["packages"].as_array().unwrap() {
        let deps = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null() || d["kind"] == "build")
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        graph.insert(package["name"].as_str().unwrap().to_owned(), deps);
    }
    graph
}

/// The lines of ARCHITECTURE.md's fenced block tagged `tag`.
fn block(tag: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).unwrap();
    let open = format!("```{tag}\n");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no ```{tag} block"))
        + open.len();
    let end = start + text[start..].find("```").unwrap();
    text[start..end].lines().map(str::to_owned).collect()
}

/// `name: a b | around the core: c d` → (name, [a, b], [c, d]).
fn parse(line: &str) -> (String, Vec<String>, Vec<String>) {
    let (name, rest) = line.split_once(':').expect("`name: deps`");
    let (deps, around) = rest.split_once(AROUND).unwrap_or((rest, ""));
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    (name.trim().to_owned(), words(deps), words(around))
}

fn canopy_deps(graph: &Graph, name: &str) -> BTreeSet<String> {
    graph[name]
        .iter()
        .filter(|d| graph.contains_key(*d))
        .cloned()
        .collect()
}

#[test]
fn the_documented_layers_are_the_dependency_graph() {
    let graph = metadata();
    let lines = block("layers");
    let mut seen = Vec::<String>::new();
    for line in &lines {
        let (name, deps, around) = parse(line);
        assert!(graph.contains_key(&name), "{name} is not a workspace crate");
        let documented: BTreeSet<String> = deps.iter().chain(&around).cloned().collect();
        let real = canopy_deps(&graph, &name);
        assert_eq!(
            documented, real,
            "ARCHITECTURE.md's layers list for {name} differs from its Cargo.toml"
        );
        for dep in &documented {
            assert!(
                seen.contains(dep),
                "{name} depends on {dep}, which is not listed below it: a dependency points up or around a cycle"
            );
        }
        seen.push(name);
    }
    let listed: BTreeSet<String> = seen.into_iter().collect();
    let crates: BTreeSet<String> = graph.keys().cloned().collect();
    assert_eq!(listed, crates, "every workspace crate is listed once");
    assert_eq!(
        lines.len(),
        crates.len(),
        "every workspace crate is listed once"
    );
}

#[test]
fn the_server_stands_on_the_core_alone() {
    let graph = metadata();
    let deps = canopy_deps(&graph, "canopy-serve");
    let allowed: BTreeSet<String> = ["canopy-core", "canopy-types"].map(str::to_owned).into();
    assert_eq!(deps, allowed, "canopy-serve depends on {deps:?}");
}

#[test]
fn front_ends_stand_on_the_core() {
    let graph = metadata();
    for line in block("layers") {
        let (name, deps, around) = parse(&line);
        if FRONT_ENDS.contains(&name.as_str()) {
            assert!(
                around.is_empty(),
                "front end {name} reaches around the core to {around:?}: move what it uses behind canopy-core"
            );
            for dep in &deps {
                assert!(
                    FRONT_END_ALLOWED.contains(&dep.as_str()),
                    "front end {name} depends on {dep}: go through canopy-core"
                );
            }
        } else {
            assert!(around.is_empty(), "{name} is not a front end");
            for dep in &deps {
                assert!(
                    !FRONT_ENDS.contains(&dep.as_str()),
                    "{name} depends on the front end {dep}"
                );
            }
        }
    }
    for front in FRONT_ENDS {
        assert!(graph.contains_key(front), "front end {front} exists");
    }
}

#[test]
fn outside_crates_with_a_rule_are_used_only_where_documented() {
    let graph = metadata();
    for line in block("outside") {
        let (outside, users, _) = parse(&line);
        let users: BTreeSet<String> = users.into_iter().collect();
        let real: BTreeSet<String> = graph
            .iter()
            .filter(|(_, deps)| deps.contains(&outside))
            .map(|(name, _)| name.clone())
            .collect();
        assert!(
            real.is_subset(&users),
            "{outside} is used by {:?}, beyond ARCHITECTURE.md's {users:?}",
            real.difference(&users).collect::<Vec<_>>()
        );
        assert!(
            !real.is_empty(),
            "nothing depends on {outside}: drop its line"
        );
    }
}

/// The shared words of ARCHITECTURE.md's `canopy-types` invariant, and the error words, each
/// defined once: by the crate named here and by no other.
const ONE_TYPE_PER_WORD: [(&str, &str); 12] = [
    ("Plan", "crates/canopy-types"),
    ("Placement", "crates/canopy-types"),
    ("Sampling", "crates/canopy-types"),
    ("Source", "crates/canopy-types"),
    ("StopReason", "crates/canopy-types"),
    ("ChatRole", "crates/canopy-types"),
    ("ErrorKind", "crates/canopy-core"),
    ("PlanError", "crates/canopy-plan"),
    ("Choice", "crates/canopy-plan"),
    ("Limits", "crates/canopy-plan"),
    ("DownloadEvent", "crates/canopy-models"),
    ("DEFAULT_CONTEXT", "crates/canopy-types"),
];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn each_shared_word_names_one_type() {
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    for dir in ["src", "src-tauri/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    for krate in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        rust_files(&krate.path().join("src"), &mut files);
    }
    assert!(files.len() > 50, "found the sources: {}", files.len());
    for (word, home) in ONE_TYPE_PER_WORD {
        let mut defined = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for line in text.lines() {
                let line = line.trim_start();
                let line = line.strip_prefix("pub ").unwrap_or(line);
                let defines = ["enum ", "struct ", "type ", "const "].iter().any(|kind| {
                    line.strip_prefix(kind).is_some_and(|rest| {
                        rest.strip_prefix(word)
                            .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric()))
                    })
                });
                if defines {
                    defined.push(file.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        assert_eq!(defined.len(), 1, "{word} is defined in {defined:?}");
        assert!(
            defined[0].starts_with(home),
            "{word} is defined in {defined:?}, not in {home}"
        );
    }
}

/// The top-level modules of the crate whose sources are in `src` (a file, or a folder with all its
/// files), each with the sibling modules its code names (`crate::name`), tests and comments left
/// out.
fn module_graph(src: &Path) -> Graph {
    let mut files: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut inside = Vec::new();
            rust_files(&path, &mut inside);
            files.insert(name, inside);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            files.insert(name, vec![path]);
        }
    }
    let mut graph = Graph::new();
    for (module, paths) in &files {
        let mut uses = BTreeSet::new();
        for path in paths {
            let text = std::fs::read_to_string(path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                // `crate::name` and the names inside `use crate::{a, b::c}`.
                let mut rest = line;
                while let Some(at) = rest.find("crate::") {
                    rest = &rest[at + "crate::".len()..];
                    let group = rest
                        .strip_prefix('{')
                        .map(|g| g.split('}').next().unwrap_or(""));
                    let names: Vec<&str> = match group {
                        Some(g) => g
                            .split(',')
                            .map(|n| n.trim().split("::").next().unwrap_or(""))
                            .collect(),
                        None => vec![rest
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .next()
                            .unwrap_or("")],
                    };
                    for name in names {
                        if name != module && files.contains_key(name) {
                            uses.insert(name.to_owned());
                        }
                    }
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_cycles_within_a_crate() {
    let root = Path::new(ROOT);
    let mut sources = vec![root.join("src"), root.join("src-tauri/src")];
    for krate in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        sources.push(krate.path().join("src"));
    }
    let mut modules = 0;
    for src in sources {
        let graph = module_graph(&src);
        modules += graph.len();
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "modules of {} use each other: {}",
                src.display(),
                cycle.join(" -> ")
            );
        }
    }
    assert!(modules > 50, "found the modules: {modules}");
}

#[test]
fn the_core_hands_out_no_locks() {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("crates/canopy-core/src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // A signature may span lines: read each `pub fn` up to its body.
        for (at, _) in text.match_indices("pub fn ") {
            let signature = &text[at..text[at..].find('{').map_or(text.len(), |end| at + end)];
            assert!(
                !signature.contains("MutexGuard") && !signature.contains("RwLock"),
                "{} hands a lock out of the core: {}",
                file.display(),
                signature.lines().next().unwrap_or_default()
            );
        }
    }
}

/// The longest function allowed in a front end (`src/`, `src-tauri/src/`), and anywhere else
/// outside tests, in lines from `fn` to its closing brace.
const FRONT_END_FN_LINES: usize = 80;
const FN_LINES: usize = 120;

/// `text` with the contents of string and character literals and comments blanked out, so that
/// only code braces remain.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !prev_is_ident(&chars, i) {
            // A raw string: r"..." or r#"..."#.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += hashes + 2;
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while i < chars.len() && !chars[i..].starts_with(&close) {
                if chars[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += close.len();
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                } else if chars[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A character literal ('x' or '\x'); a lifetime has no closing quote.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Every function of `text` (outside its test module) longer than `limit` lines, as
/// `name (lines)`.
fn long_functions(text: &str, limit: usize) -> Vec<String> {
    let code = code_only(text);
    let lines: Vec<&str> = code.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod "))
        .unwrap_or(lines.len());
    let mut found = Vec::new();
    let mut i = 0;
    while i < end {
        let words: Vec<&str> = lines[i].split_whitespace().collect();
        let at = words.iter().position(|w| *w == "fn");
        let qualifiers = [
            "pub",
            "pub(crate)",
            "pub(super)",
            "const",
            "async",
            "unsafe",
        ];
        let is_fn = at.is_some_and(|at| words[..at].iter().all(|w| qualifiers.contains(w)));
        if !is_fn {
            i += 1;
            continue;
        }
        let (mut depth, mut opened, mut j) = (0i64, false, i);
        'lines: while j < lines.len() {
            for c in lines[j].chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    ';' if !opened => break 'lines,
                    _ => {}
                }
                if opened && depth == 0 {
                    break 'lines;
                }
            }
            j += 1;
        }
        let name = words[at.unwrap() + 1]
            .split(['(', '<'])
            .next()
            .unwrap_or("");
        if opened && j - i + 1 > limit {
            found.push(format!("{name} ({} lines)", j - i + 1));
        }
        i = if opened { j + 1 } else { i + 1 };
    }
    found
}

#[test]
fn no_function_is_too_long() {
    let root = Path::new(ROOT);
    let mut dirs = vec![
        (root.join("src"), FRONT_END_FN_LINES),
        (root.join("src-tauri/src"), FRONT_END_FN_LINES),
    ];
    for krate in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        dirs.push((krate.path().join("src"), FN_LINES));
    }
    let mut too_long = Vec::new();
    for (dir, limit) in dirs {
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
            let text = std::fs::read_to_string(file).unwrap();
            for f in long_functions(&text, limit) {
                too_long.push(format!(
                    "{}: {f}",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        too_long.is_empty(),
        "functions over {FRONT_END_FN_LINES} lines in a front end or {FN_LINES} elsewhere: {too_long:#?}"
    );
}

#[test]
fn the_length_rule_reads_real_code() {
    let text = "fn short() {\n    let s = \"}}}\";\n    let c = '{';\n}\n\
                pub(crate) fn long<'a>(x: &'a str) {\n    // }\n    a();\n    b();\n}\n\
                fn declared();\n";
    assert_eq!(long_functions(text, 5), Vec::<String>::new());
    assert_eq!(long_functions(text, 4), ["long (5 lines)"]);
    assert_eq!(
        long_functions(text, 3),
        ["short (4 lines)", "long (5 lines)"]
    );
}

/// `text` up to its test module.
fn outside_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ")
        .map_or(text, |at| &text[..at])
}

/// Where each of `needles` occurs in the sources under `dir` (outside test modules), as
/// `path: needle`.
fn occurrences(dir: &str, needles: &[&str]) -> Vec<String> {
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    rust_files(&root.join(dir), &mut files);
    assert!(!files.is_empty(), "{dir} has sources");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = code_only(outside_tests(&text));
        for needle in needles {
            if code.contains(needle) {
                let path = file.strip_prefix(root).unwrap().display().to_string();
                found.push(format!("{path}: {needle}"));
            }
        }
    }
    found
}

/// ARCHITECTURE.md: canopy-types does no IO, canopy-plan is pure (no IO, no clock), and
/// canopy-spec's policies read no clock (the driver measures pass times and passes them in).
#[test]
fn the_pure_crates_read_no_files_clocks_or_environment() {
    let io = [
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "File::",
        "Instant",
        "SystemTime",
    ];
    for dir in ["crates/canopy-types/src", "crates/canopy-plan/src"] {
        let found = occurrences(dir, &io);
        assert!(found.is_empty(), "{found:?}");
    }
    let clocks = occurrences("crates/canopy-spec/src", &["Instant", "SystemTime"]);
    assert!(
        clocks
            .iter()
            .all(|c| c.starts_with("crates/canopy-spec/src/driver.rs")),
        "only the driver reads the clock: {clocks:?}"
    );
}

/// ARCHITECTURE.md: no caller runs a model in its own process: only the executables, which are
/// also the worker, depend on the llama.cpp adapter.
#[test]
fn only_the_worker_entry_points_load_models() {
    let graph = metadata();
    let users: BTreeSet<&str> = graph
        .iter()
        .filter(|(_, deps)| deps.contains("canopy-llama"))
        .map(|(name, _)| name.as_str())
        .collect();
    let entries: BTreeSet<&str> = FRONT_ENDS.into();
    assert!(users.is_subset(&entries), "{users:?}");
}

/// ARCHITECTURE.md: the core resolves the data folder and passes its paths down; below it only
/// the test-model lookup asks for it, and only the store knows the platform's folders.
#[test]
fn only_the_core_picks_the_data_folder() {
    let mut asked = Vec::new();
    for krate in std::fs::read_dir(Path::new(ROOT).join("crates"))
        .unwrap()
        .flatten()
    {
        let dir = format!("crates/{}/src", krate.file_name().to_string_lossy());
        asked.extend(occurrences(&dir, &["data_dir()", "dirs::"]));
    }
    let allowed = [
        "crates/canopy-core/src/lib.rs: data_dir()",
        "crates/canopy-core/src/hub.rs: data_dir()",
        "crates/canopy-models/src/paths.rs: data_dir()",
        // The one rule: `$CANOPY_HOME`, else the platform's data folder.
        "crates/canopy-store/src/lib.rs: data_dir()",
        "crates/canopy-store/src/lib.rs: dirs::",
    ];
    for place in &asked {
        assert!(
            allowed.contains(&place.as_str()),
            "{place} picks a data folder of its own: take the path from the core"
        );
    }
}

/// ARCHITECTURE.md: every file is validated by canopy-gguf before llama.cpp sees it. The adapter
/// hands files to llama.cpp in one function, `Engine::load`, which validates first.
#[test]
fn llama_cpp_reads_only_validated_files() {
    let loads = occurrences(
        "crates/canopy-llama/src",
        &[
            "load_from_file(",
            "load_split(",
            "llama_model_load_from_file(",
        ],
    );
    let allowed = [
        "crates/canopy-llama/src/engine.rs: load_from_file(",
        "crates/canopy-llama/src/engine.rs: load_split(",
        // The split loader itself, called only from `Engine::load`.
        "crates/canopy-llama/src/rpc.rs: load_split(",
        "crates/canopy-llama/src/rpc.rs: load_from_file(",
        "crates/canopy-llama/src/rpc.rs: llama_model_load_from_file(",
    ];
    for place in &loads {
        assert!(allowed.contains(&place.as_str()), "{place} loads a model");
    }
    let engine =
        std::fs::read_to_string(Path::new(ROOT).join("crates/canopy-llama/src/engine.rs")).unwrap();
    let code = code_only(outside_tests(&engine));
    let load = code.find("fn load(&mut self").expect("Engine::load");
    let body = &code[load..];
    let body = &body[..body.find("\n    }\n").expect("the end of Engine::load")];
    let checked = body
        .find("check_model_file(")
        .expect("Engine::load validates");
    for call in ["load_from_file(", "load_split("] {
        assert!(
            body.find(call).is_some_and(|at| at > checked),
            "{call} after validation"
        );
        assert_eq!(code.matches(call).count(), 1, "{call} only in Engine::load");
    }
}
