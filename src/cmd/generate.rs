//! `canopy generate`: one prompt, streamed to stdout.

use std::io::Write;
use std::path::PathBuf;

use canopy_worker::{
    CancelFlag, ChatMessage, ChatRole, CostCurves, GenerateRequest, GenerateResult, Prompt, Source,
};
use serde_json::json;

use crate::engine::{model_path, placement, supervisor, worker_error, SamplingArgs};
use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// The target model (GGUF file).
    #[arg(long)]
    pub target: PathBuf,
    /// A small draft model sharing the target's vocabulary.
    #[arg(long)]
    pub draft: Option<PathBuf>,
    /// The prompt; rendered with the model's chat template as one user message.
    #[arg(long)]
    pub prompt: String,
    /// Use the prompt as raw text, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// A system message placed before the prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Stop when this text appears (repeatable); the stop text is not printed.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Speculation: none, chain:K, tree:N or auto.
    #[arg(long, default_value = "none")]
    pub plan: String,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(long)]
    pub context: Option<u32>,
    /// Where the target's weights live: cpu, stream, gpu or layers:N.
    #[arg(long, default_value = "cpu")]
    pub placement: String,
    /// Print one JSON object with the text and statistics instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// With --plan auto: plan with this hardware profile's curves and acceptance vector (name or file)
    /// instead of the newest saved profile measured for these models and placement.
    #[arg(long, value_name = "NAME|PATH")]
    pub profile: Option<String>,
}

pub fn run(args: Args) -> CliResult {
    let target = model_path(&args.target, "target")?;
    let draft = args
        .draft
        .as_deref()
        .map(|d| model_path(d, "draft"))
        .transpose()?;
    if args.max_tokens == 0 {
        return Err(CliError::user("--max-tokens must be at least 1"));
    }
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage {
            role: ChatRole::System,
            content: system.clone(),
        });
    }
    messages.push(ChatMessage {
        role: ChatRole::User,
        content: args.prompt.clone(),
    });
    let placement = placement(&args.placement)?;
    let (acceptance, costs) = match (&args.plan[..], &draft) {
        ("auto", Some(d)) => profile_plan(args.profile.as_deref(), &target, d, placement)?,
        _ => (None, None),
    };
    let request = GenerateRequest {
        target,
        draft,
        prompt: if args.raw {
            Prompt::Raw(args.prompt.clone())
        } else {
            Prompt::Chat(messages)
        },
        sampling: args.sampling.sampling()?,
        max_tokens: args.max_tokens,
        stop: args.stop.clone(),
        plan: args.plan.clone(),
        context: args.context,
        placement,
        acceptance,
        costs,
        inexact_cache: false,
    };
    let mut supervisor = supervisor()?;
    let cancel = CancelFlag::new();
    let stdout = std::io::stdout();
    let json_mode = args.json;
    let mut streamed = String::new();
    let mut on_token = |text: &str, _sources: &[Source]| {
        streamed.push_str(text);
        if !json_mode {
            let mut out = stdout.lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    };
    let result = supervisor.generate(request, &cancel, &mut on_token);
    match result {
        Ok(result) => {
            if json_mode {
                println!("{}", result_json(&result));
            } else {
                println!();
            }
            Ok(())
        }
        Err(err) => {
            if !json_mode && !streamed.is_empty() {
                println!();
            }
            Err(worker_error(err))
        }
    }
}

/// The acceptance vector and cost curves `--plan auto` plans with: those of `--profile`, else of the
/// newest saved profile measured for these files and placement, else none (the worker calibrates).
fn profile_plan(
    spec: Option<&str>,
    target: &std::path::Path,
    draft: &std::path::Path,
    placement: canopy_worker::Placement,
) -> Result<(Option<Vec<f64>>, Option<CostCurves>), CliError> {
    let profile = match spec {
        Some(spec) => {
            Some(canopy_hw::find_profile(spec).map_err(|e| CliError::user(e.to_string()))?)
        }
        None => crate::cmd::profile::saved_profile_for(target, draft, placement),
    };
    let Some(profile) = profile else {
        return Ok((None, None));
    };
    let Some((target, draft)) = profile.costs() else {
        return Err(CliError::user(format!(
            "profile {} has no measured cost curves: run `canopy profile --target T --draft D`",
            profile.name
        )));
    };
    eprintln!("planning with profile {}", profile.name);
    Ok((
        profile.acceptance.map(|a| a.p),
        Some(CostCurves { target, draft }),
    ))
}

/// The `--json` document: the text and the statistics of the generation.
pub fn result_json(r: &GenerateResult) -> serde_json::Value {
    let provenance: String = r
        .provenance
        .iter()
        .map(|s| match s {
            Source::Draft => 'd',
            Source::Target => 't',
        })
        .collect();
    json!({
        "text": r.text,
        "tokens": r.tokens,
        "prefill_tokens": r.prefill_tokens,
        "prefill_ms": r.prefill_ms,
        "decode_ms": r.decode_ms,
        "tokens_per_second": r.tokens_per_second,
        "stop_reason": r.stop_reason,
        "plan": r.plan,
        "steps": r.steps,
        "mean_accepted_per_step": r.mean_accepted_per_step,
        "accepted_histogram": r.accepted_histogram,
        "budget": r.budget,
        "depth": r.depth,
        "draft_ms": r.draft_ms,
        "verify_ms": r.verify_ms,
        "provenance": provenance,
    })
}
