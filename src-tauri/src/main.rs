#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--worker") {
        std::process::exit(canopy_app::worker_main());
    }
    canopy_app::run();
}
