//! `canopy generate`: one prompt, streamed to stdout.

use std::io::Write;

use canopy_core::{CancelFlag, ChatMessage, Event, GenerateResult, LiveCheck, Prompt};
use canopy_types::{ChatRole, Source};
use serde_json::json;

use crate::engine::{core, core_error, ModelArgs, SamplingArgs};
use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
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
    /// Print one JSON object with the text and statistics instead of streaming.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> CliResult {
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
    let prompt = if args.raw {
        Prompt::Raw(args.prompt.clone())
    } else {
        Prompt::Chat(messages)
    };
    let core = core()?;
    let mut prepared = core
        .prepare(
            &args.model.choice()?,
            prompt,
            args.sampling.sampling()?,
            args.max_tokens,
            args.stop.clone(),
        )
        .map_err(core_error)?;
    if let Some(profile) = &prepared.profile {
        eprintln!("planning with profile {profile}");
    }
    let cancel = CancelFlag::new();
    let stdout = std::io::stdout();
    let json_mode = args.json;
    let mut streamed = String::new();
    let mut on_event = |event: &Event| {
        if let Event::Token { text, .. } = event {
            streamed.push_str(text);
            if !json_mode {
                let mut out = stdout.lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
        }
    };
    let result = core.generate(&mut prepared, &cancel, &mut on_event);
    match result {
        Ok(result) => {
            if let Some(warning) = result
                .target_weights
                .as_ref()
                .and_then(|w| w.pageable_warning())
            {
                eprintln!("{warning}");
            }
            let check = result.cost_disagreement.map(LiveCheck::measured_now);
            if let (Some(profile), Some(check)) = (&prepared.profile, check) {
                if check.disagrees {
                    eprintln!("note: profile {profile}: {}", check.summary);
                }
            }
            if json_mode {
                let mut json = result_json(&result);
                json["placement"] = json!(prepared.decision);
                println!("{json}");
            } else {
                println!();
            }
            Ok(())
        }
        Err(err) => {
            if !json_mode && !streamed.is_empty() {
                println!();
            }
            Err(core_error(err))
        }
    }
}

/// The `--json` document: the text and the statistics of the generation.
pub fn result_json(r: &GenerateResult) -> serde_json::Value {
    let provenance: String = r
        .provenance
        .iter()
        .map(|s| match s {
            Source::Draft => 'd',
            Source::Target => 't',
            Source::Lookup => 'l',
        })
        .collect();
    json!({
        "text": r.text,
        "tokens": r.tokens,
        "prefill_tokens": r.prefill_tokens,
        "prefix_reused_tokens": r.prefix_reused_tokens,
        "lookup_tokens": r.lookup_tokens,
        "lookup_accepted": r.lookup_accepted,
        "cost_disagreement": r.cost_disagreement,
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
        "target_weights": r.target_weights,
        "gpu_free_bytes": r.gpu_free_bytes,
    })
}
