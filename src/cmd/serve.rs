//! `canopy serve`: the OpenAI-compatible local HTTP server (the service lives in `canopy-serve`).

use std::net::IpAddr;
use std::sync::Arc;

use canopy_serve::{ServeError, ServeOptions, Server, DEFAULT_MAX_BODY, DEFAULT_QUEUE};

use crate::engine::{core, core_error, ModelArgs};
use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The address to listen on; anything but loopback needs --api-key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The port; 0 picks a free one (the ready line names it).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every /v1 request.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// A browser origin allowed to call the server (exact, repeatable), e.g. http://localhost:3000.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Largest request body in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Requests that may wait while one runs; more are refused with 429.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_QUEUE)]
    pub queue: usize,
}

pub fn run(args: Args) -> CliResult {
    // The models, plan, placement, profile and context are prepared once by the core; each HTTP
    // request brings its prompt, sampling, length and stop strings.
    let options = ServeOptions {
        host: args.host,
        port: args.port,
        api_key: args.api_key,
        allow_origins: args.allow_origin,
        max_body: args.max_body,
        queue: args.queue,
    };
    let choice = args.model.choice()?;
    let core = Arc::new(core()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failure(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let (server, served) = Server::start(core, &choice, options)
            .await
            .map_err(serve_error)?;
        eprintln!("target placement: {}", served.placement_summary());
        if let Some(profile) = served.profile() {
            eprintln!("planning with profile {profile}");
        }
        println!("listening on http://{}", server.local_addr());
        server.run(shutdown).await.map_err(serve_error)
    })
}

fn serve_error(err: ServeError) -> CliError {
    match err {
        ServeError::Core(err) => core_error(err),
        ServeError::Io(_) => CliError::Failure(anyhow::Error::new(err)),
        _ => CliError::user(err.to_string()),
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed here, before the ready line is
/// printed, so a signal sent right after it stops the server cleanly.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static, CliError> {
    let failed =
        |e: std::io::Error| CliError::Failure(anyhow::anyhow!("cannot handle signals: {e}"));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).map_err(failed)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(failed)?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = failed;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
