//! `canopy models`: inspect, register, pair, fit and download GGUF models.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use canopy_core::{
    fmt_bytes, fmt_params, Core, CoreError, DeleteFile, DownloadEvent, DownloadSource, HashEvent,
    HashState, HubEvent, ImportMode, ModelRecord, ModelsError, Role, Verdict, DEFAULT_CONTEXT,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{core, core_error};
use crate::error::{CliError, CliResult};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a GGUF file and show what it holds, without loading its weights.
    Inspect {
        /// The .gguf file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Register every valid .gguf file under a folder (invalid ones are reported with the reason).
    Scan {
        /// The folder to scan (recursively).
        dir: PathBuf,
    },
    /// Copy a GGUF file into the models folder and register it.
    Import {
        /// The .gguf file.
        file: PathBuf,
        /// Register the file where it is instead of copying it.
        #[arg(long)]
        reference: bool,
    },
    /// List the registered models and their disk usage.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a model from the library.
    Remove {
        /// Registry id (see `canopy models list`).
        id: i64,
        /// Also delete the file (only inside the models folder unless --force is given).
        #[arg(long)]
        delete_file: bool,
        /// With --delete-file: delete the file even outside the models folder.
        #[arg(long, requires = "delete_file")]
        force: bool,
    },
    /// Set whether a model is used as a draft, a target or both.
    Role {
        /// Registry id.
        id: i64,
        /// draft, target or both.
        role: String,
    },
    /// For a target, judge every registered model as a draft, with the reason for each refusal.
    Pairs {
        /// Registry id or path of the target.
        target: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Download a GGUF file (resumable), verify it and register it.
    ///
    /// A hub file (hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO@REVISION/FILE.gguf or a
    /// https://huggingface.co/OWNER/REPO/resolve/REVISION/FILE URL) is verified against the hub's
    /// sha256; a part of a split model downloads every part. HF_ENDPOINT and HF_TOKEN are honoured.
    Download {
        /// hf:OWNER/REPO/FILE.gguf, a hub resolve URL, or any http(s) URL of a .gguf file.
        url: String,
        /// Hub revision (branch, tag or commit), instead of the one in the reference.
        #[arg(long)]
        revision: Option<String>,
        /// Expected sha256 (required unless the catalog knows the file's checksum or size).
        #[arg(long)]
        sha256: Option<String>,
        /// File name in the models folder (default: from the URL).
        #[arg(long)]
        name: Option<String>,
    },
    /// Estimate whether a target (with a draft) runs on this machine.
    Fit {
        /// Registry id or path of the target.
        target: String,
        /// Registry id or path of the draft (default: the smallest compatible one).
        #[arg(long)]
        draft: Option<String>,
        /// Context length in tokens.
        #[arg(long, default_value_t = DEFAULT_CONTEXT.into())]
        context: u64,
        /// GPU memory in GiB (default: none known, CPU only).
        #[arg(long)]
        vram_gib: Option<f64>,
        /// Pinned host-to-device bandwidth in GB/s.
        #[arg(long)]
        h2d_gbps: Option<f64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Search the hub for GGUF model repositories.
    Search {
        /// Words of the repository name.
        query: String,
        /// At most this many results.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List a hub repository's GGUF files, grouped by quantization (split sets as one entry).
    Files {
        /// OWNER/REPO.
        repo: String,
        /// Branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Save the hub access token for gated repositories, read from standard input (stored in
    /// the data folder, readable by you only; it wins over HF_TOKEN), or forget it.
    Token {
        /// Forget the saved token.
        #[arg(long)]
        remove: bool,
    },
    /// Show the recommended target/draft pairs and where to download them.
    Catalog {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: Command) -> CliResult {
    match command {
        Command::Inspect { file, json } => inspect(file, json),
        Command::Scan { dir } => scan(dir),
        Command::Import { file, reference } => import(file, reference),
        Command::List { json } => list(json),
        Command::Remove {
            id,
            delete_file,
            force,
        } => remove(id, delete_file, force),
        Command::Role { id, role } => {
            let role = Role::parse(&role).map_err(|e| core_error(e.into()))?;
            let record = core()?.set_model_role(id, role).map_err(core_error)?;
            println!(
                "model {} ({}) is now a {}",
                record.id,
                record.file_name,
                role.as_str()
            );
            Ok(())
        }
        Command::Pairs { target, json } => pairs(target, json),
        Command::Download {
            url,
            revision,
            sha256,
            name,
        } => download(&url, revision, sha256, name),
        Command::Search { query, limit, json } => search(&query, limit, json),
        Command::Files {
            repo,
            revision,
            json,
        } => files(&repo, &revision, json),
        Command::Fit {
            target,
            draft,
            context,
            vram_gib,
            h2d_gbps,
            json,
        } => fit(target, draft, context, vram_gib, h2d_gbps, json),
        Command::Catalog { json } => show_catalog(json),
        Command::Token { remove } => token(remove),
    }
}

fn token(remove: bool) -> CliResult {
    let core = core()?;
    let token = if remove {
        None
    } else {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            eprint!("paste the hub token and press Enter: ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| {
            CliError::user(format!("cannot read the token from standard input: {e}"))
        })?;
        if line.trim().is_empty() {
            return Err(CliError::user(
                "no token on standard input (to forget the saved one, pass --remove)",
            ));
        }
        Some(line)
    };
    let status = core.save_hub_token(token.as_deref()).map_err(core_error)?;
    match (status.saved, status.from_environment) {
        (true, _) => println!(
            "hub token saved in {}, readable by you only",
            core.data_dir().display()
        ),
        (false, true) => println!("no token saved; HF_TOKEN is used"),
        (false, false) => println!("no token saved; gated repositories need one"),
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> CliResult {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Failure(e.into()))?;
    println!("{text}");
    Ok(())
}

fn inspect(file: PathBuf, json: bool) -> CliResult {
    let info = core()?.inspect_file(&file).map_err(core_error)?;
    if json {
        return print_json(&info);
    }
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    println!(
        "file           {} ({})",
        file.display(),
        fmt_bytes(info.file_size)
    );
    println!(
        "architecture   {}",
        info.architecture.as_deref().unwrap_or("unknown")
    );
    if let Some(name) = &info.name {
        println!("name           {name}");
    }
    println!(
        "parameters     {} ({})",
        fmt_params(info.parameter_count),
        info.parameter_count
    );
    println!(
        "quantization   {} ({:.2} bits per weight)",
        info.file_type.as_deref().unwrap_or("mixed"),
        info.bits_per_weight
    );
    println!("layers         {}", opt(info.layers));
    println!("context        {}", opt(info.context_length));
    println!("embedding      {}", opt(info.embedding_size));
    println!(
        "heads          {} (KV heads {})",
        opt(info.heads),
        opt(info.kv_heads)
    );
    println!(
        "tokenizer      {} ({} tokens, chat template {})",
        info.tokenizer_model.as_deref().unwrap_or("none"),
        opt(info.vocab_size),
        if info.has_chat_template { "yes" } else { "no" }
    );
    println!("weights        {}", fmt_bytes(info.weights_bytes));
    if let Some(kv) = info.kv_cache_bytes_per_token {
        println!("KV cache       {} per token", fmt_bytes(kv));
    }
    Ok(())
}

/// Hashes the given models in the background, printing progress to stderr, and waits.
fn hash(core: &Core, models: &[ModelRecord]) -> CliResult {
    if models.is_empty() {
        return Ok(());
    }
    let job = core.hash_models(models).map_err(core_error)?;
    let mut last = Instant::now();
    for event in job.events.iter() {
        match event {
            HashEvent::Progress { id, done, total } => {
                if last.elapsed() > Duration::from_millis(500) || done == total {
                    last = Instant::now();
                    let pct = (done * 100).checked_div(total).unwrap_or(100);
                    eprint!("\rhashing model {id}: {pct:>3}%");
                    let _ = std::io::stderr().flush();
                }
            }
            HashEvent::Done { id, sha256 } => eprintln!("\rmodel {id}: sha256 {sha256}"),
            HashEvent::Failed { id, reason } => eprintln!("\rmodel {id}: cannot hash: {reason}"),
        }
    }
    Ok(())
}

fn scan(dir: PathBuf) -> CliResult {
    let core = core()?;
    let report = core.scan_models(Some(&dir)).map_err(core_error)?;
    for m in &report.added {
        println!("added    {:>4}  {}", m.id, m.path.display());
    }
    for p in &report.already {
        println!("known          {}", p.display());
    }
    for (p, reason) in &report.invalid {
        println!("invalid        {}: {reason}", p.display());
    }
    println!(
        "{} added, {} already known, {} invalid",
        report.added.len(),
        report.already.len(),
        report.invalid.len()
    );
    hash(&core, &report.added)
}

fn import(file: PathBuf, reference: bool) -> CliResult {
    let core = core()?;
    let mode = if reference {
        ImportMode::Reference
    } else {
        ImportMode::Copy
    };
    let record = core.import_model(&file, mode).map_err(core_error)?;
    println!("added {:>4}  {}", record.id, record.path.display());
    hash(&core, std::slice::from_ref(&record))
}

fn list(json: bool) -> CliResult {
    let library = core()?.library_listing().map_err(core_error)?;
    if json {
        return print_json(&library);
    }
    let listing = &library.listing;
    if listing.models.is_empty() {
        println!("no models yet: canopy models scan DIR, import FILE or download URL");
        return Ok(());
    }
    println!(
        "{:>4}  {:<6}  {:>6}  {:>10}  {:<9}  file",
        "id", "role", "params", "size", "sha256"
    );
    for m in &listing.models {
        let sha = match &m.hash {
            HashState::Done => m
                .sha256
                .as_deref()
                .map_or("-".to_string(), |s| s[..8].to_string()),
            HashState::Hashing { done } => {
                format!("hashing {}%", done * 100 / m.size.max(1))
            }
            HashState::Failed { .. } => "failed".to_string(),
        };
        let missing = if m.present { "" } else { "  (missing)" };
        println!(
            "{:>4}  {:<6}  {:>6}  {:>10}  {:<9}  {}{missing}",
            m.id,
            m.role.as_str(),
            fmt_params(m.info.parameter_count),
            fmt_bytes(m.size),
            sha,
            m.path.display()
        );
    }
    println!(
        "{} models, {} in all, {} in the models folder {}",
        listing.models.len(),
        fmt_bytes(listing.total_bytes),
        fmt_bytes(listing.managed_bytes),
        library.models_dir.display()
    );
    Ok(())
}

fn remove(id: i64, delete_file: bool, force: bool) -> CliResult {
    let delete = match (delete_file, force) {
        (false, _) => DeleteFile::Keep,
        (true, false) => DeleteFile::InsideModelsDir,
        (true, true) => DeleteFile::Anywhere,
    };
    let record = core()?.remove_model(id, delete).map_err(|e| match e {
        CoreError::Models(e @ ModelsError::OutsideModelsDir { .. }) => {
            CliError::user(format!("{e}; add --force to delete it anyway"))
        }
        e => core_error(e),
    })?;
    if delete_file {
        println!("removed model {id} and deleted {}", record.path.display());
    } else {
        println!(
            "removed model {id} (the file {} is kept)",
            record.path.display()
        );
    }
    Ok(())
}

fn pairs(target: String, json: bool) -> CliResult {
    let core = core()?;
    let target = core.find_model(&target).map_err(core_error)?;
    let pairing = core.pairings_of(&target).map_err(core_error)?;
    if json {
        return print_json(&pairing);
    }
    println!("drafts for model {} ({}):", target.id, target.file_name);
    for c in &pairing.candidates {
        match &c.verdict {
            Verdict::Compatible => println!("  {:>4}  compatible  {}", c.id, c.file_name),
            Verdict::Refused { reason } => {
                println!("  {:>4}  refused     {}: {reason}", c.id, c.file_name)
            }
        }
    }
    if let Some(note) = &pairing.note {
        println!("{note}");
    }
    Ok(())
}

/// Downloads a catalog id, a hub file or a URL, verified as the core's checksum policy says,
/// with progress on stderr.
fn download(
    url: &str,
    revision: Option<String>,
    sha256: Option<String>,
    name: Option<String>,
) -> CliResult {
    let core = core()?;
    let source = core
        .download_source_at(url, sha256.as_deref(), revision.as_deref())
        .map_err(|e| match e {
            CoreError::User(m) if m.starts_with("no checksum") => {
                CliError::user(format!("{m}: pass --sha256 HEX"))
            }
            e => core_error(e),
        })?;
    let source = match source {
        DownloadSource::Url(request) => DownloadSource::Url(canopy_core::DownloadRequest {
            file_name: name,
            ..request
        }),
        DownloadSource::Hub { hub, plan } => {
            if name.is_some() {
                return Err(CliError::user(
                    "--name does not apply to hub files: the hub's file names are used",
                ));
            }
            DownloadSource::Hub { hub, plan }
        }
    };
    let parts = match &source {
        DownloadSource::Hub { plan, .. } if plan.parts.len() > 1 => {
            format!(" in {} parts", plan.parts.len())
        }
        _ => String::new(),
    };
    if let DownloadSource::Hub { plan, .. } = &source {
        announce(&core, plan, &parts);
    }
    let bar = ProgressBar::new(source.size().unwrap_or(0)).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .map_err(|e| CliError::Failure(e.into()))?
        .progress_chars("=> "),
    );
    let result = core.download(&source, &AtomicBool::new(false), &mut |e| {
        show_progress(&bar, e)
    });
    bar.finish_and_clear();
    let downloaded = result.map_err(core_error)?;
    let verified = match (&source, downloaded.checksum_verified) {
        (DownloadSource::Hub { .. }, true) => "sha256 verified against the hub",
        (DownloadSource::Hub { .. }, false) => "size verified, no checksum on the hub",
        (DownloadSource::Url(_), true) => "sha256 verified",
        (DownloadSource::Url(_), false) => "size verified, no checksum",
    };
    let record = downloaded.record;
    println!(
        "added {:>4}  {} ({}{parts}, {verified})",
        record.id,
        record.path.display(),
        fmt_bytes(record.size)
    );
    Ok(())
}

/// A hub download's size, `parts` (as the result line says them), fit on this machine and how it
/// will be verified, on stderr.
fn announce(core: &Core, plan: &canopy_core::HubDownload, parts: &str) {
    let first = plan
        .parts
        .first()
        .map(|p| p.file.to_string())
        .unwrap_or_default();
    eprintln!("{first}: {}{parts}", fmt_bytes(plan.size()));
    let fit = plan.fit(&core.machine_facts());
    eprintln!(
        "fit on this machine (from the size): {}: {}",
        fit.badge.as_str(),
        fit.reason
    );
    if !plan.fully_verifiable() {
        eprintln!("warning: the hub lists no sha256 for some files; they are checked by size only");
    }
}

fn show_progress(bar: &ProgressBar, event: &HubEvent) {
    match event {
        HubEvent::Part {
            part,
            parts,
            file,
            size,
        } => {
            bar.set_message(format!("{file} ({part}/{parts})"));
            bar.set_length(*size);
            bar.set_position(0);
        }
        HubEvent::Reused { part, file } => {
            bar.println(format!("part {part} {file}: already here, sha256 checked"))
        }
        HubEvent::Download(DownloadEvent::CheckingPartial { bytes }) => bar.println(format!(
            "resuming: checking the {} already downloaded",
            fmt_bytes(*bytes)
        )),
        HubEvent::Download(DownloadEvent::ServerIgnoredRange { discarded }) => {
            bar.println(format!(
                "the server cannot resume; starting again (dropped {})",
                fmt_bytes(*discarded)
            ))
        }
        HubEvent::Download(DownloadEvent::Progress { done, total }) => {
            if let Some(total) = total {
                bar.set_length(*total);
            }
            bar.set_position(*done);
        }
        HubEvent::Download(DownloadEvent::Connected { .. }) => {}
    }
}

fn search(query: &str, limit: usize, json: bool) -> CliResult {
    let found = core()?.hub_search(query, limit).map_err(core_error)?;
    if json {
        return print_json(&found);
    }
    if found.is_empty() {
        println!("no GGUF repositories match {query:?}");
    }
    for m in &found {
        let downloads = m.downloads.map_or("-".to_string(), |d| d.to_string());
        println!("{:<60} {downloads:>10} downloads", m.id);
    }
    Ok(())
}

fn files(repo: &str, revision: &str, json: bool) -> CliResult {
    let files = core()?.hub_files(repo, revision).map_err(core_error)?;
    if json {
        return print_json(&files);
    }
    if files.is_empty() {
        println!("{repo} has no .gguf files at {revision}");
    }
    let mut quant = None;
    for f in &files {
        if quant != Some(&f.quant) {
            quant = Some(&f.quant);
            println!("{}", f.quant.as_deref().unwrap_or("other"));
        }
        let parts = match (f.parts, f.fit) {
            (_, None) => "  (split, parts missing on the hub)".to_string(),
            (1, _) => String::new(),
            (n, _) => format!("  ({n} parts)"),
        };
        let fit = f.fit.map_or("-", |b| b.as_str());
        let have = if f.in_library {
            "  (in the library)"
        } else {
            ""
        };
        println!(
            "  {:>10}  {fit:<7}  {}{parts}{have}",
            fmt_bytes(f.size),
            f.source
        );
    }
    Ok(())
}

fn fit(
    target: String,
    draft: Option<String>,
    context: u64,
    vram_gib: Option<f64>,
    h2d_gbps: Option<f64>,
    json: bool,
) -> CliResult {
    let core = core()?;
    let mut machine = core.machine_facts();
    if let Some(gib) = vram_gib {
        if !(gib.is_finite() && gib >= 0.0) {
            return Err(CliError::user(format!(
                "--vram-gib must be a non-negative number, got {gib}"
            )));
        }
        machine.vram_bytes = Some((gib * (1u64 << 30) as f64) as u64);
    }
    if let Some(gbps) = h2d_gbps {
        if !(gbps.is_finite() && gbps > 0.0) {
            return Err(CliError::user(format!(
                "--h2d-gbps must be a positive number, got {gbps}"
            )));
        }
        machine.h2d_bytes_per_second = Some(gbps * 1e9);
    }
    let report = core
        .fit_estimate(&target, draft.as_deref(), context, machine)
        .map_err(core_error)?;
    let (target, draft, machine, fit) = (
        &report.target,
        &report.draft,
        &report.machine,
        &report.estimate,
    );
    if json {
        return print_json(&serde_json::json!({
            "target": target.id,
            "draft": draft.as_ref().map(|d| d.id),
            "machine": machine,
            "estimate": fit,
        }));
    }
    println!("target   {} ({})", target.id, target.file_name);
    match &draft {
        Some(d) => println!("draft    {} ({})", d.id, d.file_name),
        None => println!("draft    none (no compatible draft registered)"),
    }
    println!(
        "machine  {} RAM ({} free), VRAM {}",
        fmt_bytes(machine.ram_total),
        fmt_bytes(machine.ram_available),
        machine
            .vram_bytes
            .map_or("none known".to_string(), fmt_bytes)
    );
    println!("{}: {}", fit.badge.as_str(), fit.reason);
    println!(
        "  resident target layers {} of {}, streamed per pass {}, RAM needed {}",
        fit.target_layers_resident,
        fit.target_layers_total,
        fmt_bytes(fit.bytes_streamed_per_pass),
        fmt_bytes(fit.ram_needed_bytes)
    );
    Ok(())
}

fn show_catalog(json: bool) -> CliResult {
    let catalog = core()?.catalog().map_err(core_error)?;
    if json {
        return print_json(&catalog);
    }
    for pair in &catalog.pairs {
        let (Some(t), Some(d)) = (catalog.model(&pair.target), catalog.model(&pair.draft)) else {
            continue;
        };
        println!("{} + draft {}", t.name, d.name);
        println!("  {}", pair.note);
        for m in [t, d] {
            let sha = m.sha256.as_deref().unwrap_or("unknown (pass --sha256)");
            println!("  {}\n    sha256 {sha}", m.url);
        }
    }
    Ok(())
}
