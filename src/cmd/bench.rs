//! `canopy bench`: target-only, chains, a sweep of tree budgets and `auto`, side by side in one
//! worker on the same prompts. Prints a table of median tokens/s and the ratio to target-only.

use std::path::PathBuf;

use canopy_core::{CancelFlag, ChatMessage, Core, GenerateResult, ModelChoice, Prompt};
use canopy_types::{ChatRole, Placement, Plan, Sampling};
use serde_json::json;

use crate::engine::{core, core_error, parse_placement, rpc_endpoints, PairArgs};
use crate::error::{CliError, CliResult};
use crate::prompts::load_prompts;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Use only the first N prompts.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Chain lengths to run.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub chains: Vec<u32>,
    /// Tree budgets to run.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32,64")]
    pub budgets: Vec<u32>,
    /// Sampling temperature (0 = greedy, where every plan must print the same text).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Where the target's weights live: auto, cpu, stream, gpu or layers:N.
    #[arg(long, default_value = "auto", value_parser = parse_placement)]
    pub placement: Placement,
    /// Also run every plan with the KV cache as before exact caching (llama.cpp's default f16
    /// types, accepted cells kept out of position order), to show what exactness costs.
    #[arg(long)]
    pub inexact_cache: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print the JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Put part of the target's layers on RPC helpers (`canopy rpc-server` on other machines).
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT]")]
    pub rpc: Option<String>,
}

/// What `auto` may propose from: the draft model and the conversation (the default), the draft
/// model alone, or the conversation alone (no draft model).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sources {
    Both,
    DraftOnly,
    LookupOnly,
}

struct Row {
    plan: Plan,
    inexact: bool,
    sources: Sources,
    tps: Vec<f64>,
    accepted: Vec<f64>,
    chosen: Vec<String>,
    same_text: usize,
    /// Where greedy output left target-only output: (prompt, token index, target's top-2 margin).
    divergences: Vec<(usize, usize, Option<f32>)>,
}

impl Row {
    fn label(&self) -> String {
        let base = match self.sources {
            Sources::Both => self.plan.to_string(),
            Sources::DraftOnly => format!("{} draft only", self.plan),
            Sources::LookupOnly => format!("{} lookup only", self.plan),
        };
        if self.inexact {
            format!("{base} inexact")
        } else {
            base
        }
    }
}

/// The first index where two token sequences differ (the shorter length when one is a prefix).
fn first_difference(a: &[i32], b: &[i32]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn one(
    core: &Core,
    args: &Args,
    prompt: &str,
    plan: Plan,
    inexact: bool,
    sources: Sources,
) -> CliResult<GenerateResult> {
    let choice = ModelChoice {
        target: args.pair.target.clone(),
        draft: Some(args.pair.draft.clone()),
        plan,
        placement: args.placement,
        context: None,
        // Every plan calibrates in this worker, so that all of them are timed alike.
        profile: None,
        rpc: rpc_endpoints(args.rpc.as_deref())?,
        rpc_layers: None,
    };
    let sampling =
        Sampling::new(args.temperature, 0, 1.0, 1).map_err(|e| CliError::user(format!("--{e}")))?;
    let prompt = Prompt::Chat(vec![ChatMessage {
        role: ChatRole::User,
        content: prompt.to_owned(),
    }]);
    let mut prepared = core
        .prepare(&choice, prompt, sampling, args.max_tokens, Vec::new())
        .map_err(core_error)?;
    prepared.request.inexact_cache = inexact;
    prepared.request.no_lookup = sources == Sources::DraftOnly;
    if sources == Sources::LookupOnly {
        prepared.request.draft = None;
    }
    prepared.request.acceptance = None;
    prepared.request.costs = None;
    core.generate(&mut prepared, &CancelFlag::new(), &mut |_| {})
        .map_err(core_error)
}

pub fn run(args: Args) -> CliResult {
    if args.max_tokens == 0 {
        return Err(CliError::user("--max-tokens must be at least 1"));
    }
    let mut prompts = load_prompts(args.pair.prompts.as_deref())?;
    if let Some(n) = args.limit {
        prompts.truncate(n.max(1));
    }
    let mut plans = vec![Plan::None];
    for &k in &args.chains {
        plans.push(Plan::chain(k).map_err(|e| CliError::user(format!("--chains: {e}")))?);
    }
    for &n in &args.budgets {
        plans.push(Plan::tree(n).map_err(|e| CliError::user(format!("--budgets: {e}")))?);
    }
    plans.push(Plan::Auto);
    let row = |plan: &Plan, inexact: bool, sources: Sources| Row {
        plan: *plan,
        inexact,
        sources,
        tps: vec![],
        accepted: vec![],
        chosen: vec![],
        same_text: 0,
        divergences: vec![],
    };
    let mut rows: Vec<Row> = plans.iter().map(|p| row(p, false, Sources::Both)).collect();
    // `auto` from each source alone: the draft model's trees, and candidates matched in the
    // conversation with no draft model at all.
    rows.push(row(&Plan::Auto, false, Sources::DraftOnly));
    rows.push(row(&Plan::Auto, false, Sources::LookupOnly));
    if args.inexact_cache {
        rows.extend(
            plans
                .iter()
                .map(|p| row(p, true, Sources::Both))
                .collect::<Vec<_>>(),
        );
    }

    let core = core()?;
    // Load both models and let `auto` calibrate before anything is timed.
    eprintln!("warming up (loading models, calibrating auto) ...");
    one(&core, &args, "Hello", Plan::Auto, false, Sources::Both)?;
    for (i, prompt) in prompts.iter().enumerate() {
        // Target-only output with the same cache settings: the exact and the inexact cache hold
        // values in different types, so each group is compared with its own plain run.
        let mut reference: [Option<GenerateResult>; 2] = [None, None];
        // One untimed run first: the first generation of a prompt allocates and first touches its
        // contexts' memory, which cost the first row up to 10% on a 2-core VM.
        eprint!("\rprompt {}/{}: {:<20}", i + 1, prompts.len(), "warm-up");
        one(&core, &args, prompt, Plan::None, false, Sources::Both)?;
        for row in &mut rows {
            eprint!("\rprompt {}/{}: {:<20}", i + 1, prompts.len(), row.label());
            let r = one(&core, &args, prompt, row.plan, row.inexact, row.sources)?;
            let reference = reference[usize::from(row.inexact)].get_or_insert_with(|| r.clone());
            if reference.text == r.text {
                row.same_text += 1;
            } else {
                let at = first_difference(&reference.token_ids, &r.token_ids);
                row.divergences
                    .push((i, at, reference.margins.get(at).copied()));
            }
            row.tps.push(r.tokens_per_second);
            row.accepted.push(r.mean_accepted_per_step);
            row.chosen.push(r.plan.clone());
        }
    }
    eprintln!();
    report(&args, &rows, prompts.len())
}

/// Prints (and with `--output` writes) the table or the JSON document of `rows`.
fn report(args: &Args, rows: &[Row], prompts: usize) -> CliResult {
    let base = median(&rows[0].tps);
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "plan": r.plan.to_string(),
                "label": r.label(),
                "inexact_cache": r.inexact,
                "median_tokens_per_second": median(&r.tps),
                "ratio_to_target_only": if base > 0.0 { median(&r.tps) / base } else { 0.0 },
                "mean_accepted_per_step": median(&r.accepted),
                "tokens_per_second": r.tps,
                "same_text_as_target_only": r.same_text,
                "divergences": r.divergences.iter().map(|&(prompt, token, margin)| json!({
                    "prompt": prompt,
                    "token": token,
                    "target_top2_margin": margin,
                })).collect::<Vec<_>>(),
                "chosen": r.chosen.last(),
            })
        })
        .collect();
    let doc = json!({
        "target": args.pair.target,
        "draft": args.pair.draft,
        "prompts": prompts,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "placement": args.placement,
        "rpc": args.rpc,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "results": results,
    });
    if let Some(path) = &args.output {
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap_or_default())
            .map_err(|e| CliError::user(format!("cannot write {}: {e}", path.display())))?;
    }
    if args.json {
        println!("{doc}");
        return Ok(());
    }
    println!(
        "{:<20} {:>10} {:>8} {:>10} {:>9}  last choice",
        "plan", "tok/s", "ratio", "acc/step", "same"
    );
    for (r, v) in rows.iter().zip(&results) {
        println!(
            "{:<20} {:>10.2} {:>7.2}x {:>10.2} {:>5}/{:<3}  {}",
            r.label(),
            v["median_tokens_per_second"].as_f64().unwrap_or(0.0),
            v["ratio_to_target_only"].as_f64().unwrap_or(0.0),
            v["mean_accepted_per_step"].as_f64().unwrap_or(0.0),
            r.same_text,
            prompts,
            r.chosen.last().map(String::as_str).unwrap_or(""),
        );
    }
    println!("same text as target-only:");
    for r in rows {
        let at: Vec<String> = r
            .divergences
            .iter()
            .map(|&(prompt, token, margin)| match margin {
                Some(m) => format!("prompt {} token {token} (margin {m:.3})", prompt + 1),
                None => format!("prompt {} token {token}", prompt + 1),
            })
            .collect();
        let detail = if at.is_empty() {
            String::new()
        } else {
            format!("; diverges at {}", at.join(", "))
        };
        println!("  {}: {}/{}{detail}", r.label(), r.same_text, prompts);
    }
    Ok(())
}
