//! `canopy`: the command-line face of the Canopy engine.
//!
//! Every subcommand lives in `cmd/`; each turns raw flags into validated settings once and then
//! calls the library crates. User errors exit with code 2 and a single line on stderr.

mod cmd;
mod engine;
mod error;
mod prompts;

use clap::{Parser, Subcommand};

use crate::error::CliError;

#[derive(Parser)]
#[command(
    name = "canopy",
    version,
    about = "Chat with models many times larger than your GPU: tree speculative decoding over llama.cpp",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a completion for one prompt and stream it to stdout.
    Generate(cmd::generate::Args),
    /// Interactive chat in the terminal (history kept in the data directory).
    Chat(cmd::chat::Args),
    /// Estimate the positional acceptance vector of a draft/target pair.
    Acceptance(cmd::acceptance::Args),
    /// Benchmark target-only, chains, tree budgets and auto side by side.
    Bench(cmd::bench::Args),
    /// Plan an optimal speculation tree from an acceptance vector (and optionally measured costs).
    Plan(cmd::plan::Args),
    /// Serve the model over an OpenAI-compatible HTTP API on 127.0.0.1.
    Serve(cmd::serve::Args),
    /// Measure this machine and save a hardware profile.
    Profile(cmd::profile::Args),
    /// Predict tokens per second on a profiled machine for a target of any size (model-based).
    Simulate(cmd::simulate::Args),
    /// Serve this machine's backend to a Canopy elsewhere (its `--rpc host:port`); no authentication.
    RpcServer(cmd::rpc_server::Args),
    /// Browse, search, export and import the chat history.
    #[command(subcommand)]
    History(cmd::history::Command),
    /// Inspect, register, pair and download GGUF models.
    #[command(subcommand)]
    Models(cmd::models::Command),
    /// Internal: the inference worker process spoken to over stdin/stdout.
    #[command(hide = true)]
    Worker(cmd::worker::Args),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            std::process::exit(0);
        }
        Err(err) => {
            // One line: clap's first line names the bad flag or value.
            let rendered = err.to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            eprintln!("error: {first} (see --help)");
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        Command::Generate(args) => cmd::generate::run(args),
        Command::Chat(args) => cmd::chat::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Acceptance(args) => cmd::acceptance::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Profile(args) => cmd::profile::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::RpcServer(args) => cmd::rpc_server::run(args),
        Command::History(command) => cmd::history::run(command),
        Command::Models(command) => cmd::models::run(command),
        Command::Worker(args) => cmd::worker::run(args),
    };
    if let Err(err) = result {
        report(&err);
        std::process::exit(err.exit_code());
    }
}

fn report(err: &CliError) {
    let line = err.to_string().replace('\n', " ");
    eprintln!("error: {line}");
}
