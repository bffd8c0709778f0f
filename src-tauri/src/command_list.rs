// The one list of the app's commands is `lib.rs`'s `generate_handler!`: `build.rs` reads it to
// make each command's permission, and the bindings test checks the window's capability and the
// front end's calls against it. Shared by both through `include!`, so it uses only `std`.

/// The command names (each path's last segment) of the `generate_handler!` list in `lib_rs`.
pub fn handler_commands(lib_rs: &str) -> Vec<String> {
    let start = lib_rs
        .find("generate_handler![")
        .expect("lib.rs registers its commands with tauri::generate_handler!")
        + "generate_handler![".len();
    let end = start + lib_rs[start..].find(']').expect("the handler list ends");
    lib_rs[start..end]
        .split(',')
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .map(|path| path.rsplit("::").next().unwrap_or(path).to_owned())
        .collect()
}
