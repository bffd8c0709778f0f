//! `canopy rpc-server`: serve this machine's backend device to a Canopy on another machine, whose
//! `--rpc host:port` then puts part of a target's layers here. A thin wrapper over ggml's own RPC
//! server (`canopy_llama::rpc::serve`); it runs until killed.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use canopy_llama::rpc;

use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (IPv4). The protocol has no authentication: anything but loopback
    /// belongs on a trusted network only.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: Ipv4Addr,
    /// Port to listen on.
    #[arg(long, default_value_t = rpc::DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Device to serve, by name (e.g. CPU, CUDA0); repeat or separate with commas for several.
    /// Default: every GPU, else the CPU.
    #[arg(long, value_delimiter = ',')]
    pub device: Vec<String>,
    /// CPU threads for the served backend (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Keep large tensors in this directory by hash, so that a client loading the same model again
    /// sends hashes instead of weights.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let devices = rpc::serve_devices(&args.device).map_err(|e| CliError::user(e.to_string()))?;
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(4, |n| n.get()),
        |t| t as usize,
    );
    let endpoint = format!("{}:{}", args.host, args.port);
    if !args.host.is_loopback() {
        eprintln!(
            "warning: serving on {endpoint}: the RPC protocol has no authentication or encryption; \
             anyone who can reach this port can run code on this backend and read its memory. \
             Use it on a trusted network only."
        );
    }
    let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    eprintln!(
        "serving {} on {endpoint} to `canopy … --rpc {endpoint}`; stop with Ctrl-C",
        names.join(", ")
    );
    rpc::serve(&endpoint, &devices, threads, args.cache.as_deref())
        .map_err(|e| CliError::user(e.to_string()))?;
    // ggml's server returns only when it cannot listen; it has printed why.
    Err(CliError::user(format!(
        "the RPC server stopped: cannot listen on {endpoint} (is the port in use?)"
    )))
}
