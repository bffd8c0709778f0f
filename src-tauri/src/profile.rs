//! The hardware profile wizard: detect → bandwidth → cost curves → acceptance → plan.
//!
//! Measurements run in the inference worker (`Measure` and `Acceptance` jobs); the plan comes from
//! `canopy_plan`. The result is saved in the store and read back by the chat when it plans.

use canopy_hw::{GpuProbeOptions, GpuStatus, HostBandwidth, HostBandwidthOptions};
use canopy_plan::{Acceptance, CostTable, Costs, Limits, TreePlan};
use canopy_worker::{
    AcceptanceRequest, CostCurves, Event, Job, JobResult, MeasureRequest, Placement, TimedPoint,
};
use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult, ErrorKind};
use crate::state::{AppState, Task};

/// Prompts the acceptance step drafts on: short, varied, in the chat's usual register.
const ACCEPTANCE_PROMPTS: &[&str] = &[
    "Explain how a hash map works, step by step.",
    "Write a short story about a lighthouse keeper.",
    "def fibonacci(n):",
    "List five tips for a first trip to Japan.",
];

/// Acceptance assumed when no draft is measured (plain decoding needs none).
const MAX_BUDGET: usize = 128;
const MAX_DEPTH: usize = 12;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fact {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bandwidth {
    pub label: String,
    pub gb_per_second: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    pub n: usize,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Node {
    pub parent: Option<usize>,
    pub rank: u32,
    pub depth: u32,
    pub children: u32,
}

/// A saved profile as the wizard shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileView {
    pub created_at: i64,
    pub quick: bool,
    pub system: Vec<Fact>,
    pub bandwidth: Vec<Bandwidth>,
    pub target_model: Option<String>,
    pub draft_model: Option<String>,
    pub target_curve: Vec<Point>,
    pub draft_curve: Vec<Point>,
    pub acceptance: Vec<f64>,
    pub plan: String,
    pub budget: usize,
    pub depth: usize,
    pub tree: Vec<Node>,
    pub expected_tokens_per_step: f64,
    pub predicted_tokens_per_second: f64,
    pub plain_tokens_per_second: f64,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Detect,
    Bandwidth,
    Costs,
    Acceptance,
    Plan,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProfileEvent {
    Step {
        step: Step,
        fraction: f64,
        note: String,
    },
    StepDone {
        step: Step,
        profile: Box<ProfileView>,
    },
}

/// What generation plans with, from the latest saved profile.
pub struct PlanningInputs {
    pub acceptance: Option<Vec<f64>>,
    pub costs: Option<CostCurves>,
}

fn load_latest(state: &AppState) -> CommandResult<Option<ProfileView>> {
    let Some((_, _, json)) = state.inner.store()?.latest_profile()? else {
        return Ok(None);
    };
    // A profile saved in another format (by a newer build) is ignored rather than fatal.
    Ok(serde_json::from_str(&json).ok())
}

/// The latest profile's acceptance vector and cost curves, if a profile was saved.
pub fn planning_inputs(state: &AppState) -> Option<PlanningInputs> {
    let profile = load_latest(state).ok().flatten()?;
    let points = |c: &[Point]| c.iter().map(|p| (p.n, p.seconds)).collect::<Vec<_>>();
    let costs =
        (!profile.target_curve.is_empty() && !profile.draft_curve.is_empty()).then(|| CostCurves {
            target: points(&profile.target_curve),
            draft: points(&profile.draft_curve),
        });
    Some(PlanningInputs {
        acceptance: (!profile.acceptance.is_empty()).then_some(profile.acceptance),
        costs,
    })
}

#[tauri::command]
pub fn latest_profile(state: State<'_, AppState>) -> CommandResult<Option<ProfileView>> {
    load_latest(&state)
}

#[tauri::command]
pub fn cancel_profile(state: State<'_, AppState>) {
    state.inner.profile_cancel.cancel();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn fact(key: &str, value: String) -> Fact {
    Fact {
        key: key.to_owned(),
        value,
    }
}

/// What the operating system and the GPU driver say about this machine.
fn detect(gpu: &GpuStatus) -> Vec<Fact> {
    let sys = canopy_hw::system_facts();
    let cores = match sys.physical_cores {
        Some(physical) => format!("{physical} cores, {} threads", sys.logical_cores),
        None => format!("{} threads", sys.logical_cores),
    };
    vec![
        fact("CPU", format!("{} ({})", sys.cpu_model, sys.cpu_arch)),
        fact("Cores", cores),
        fact("RAM", gib(sys.ram_total_bytes)),
        fact("RAM available", gib(sys.ram_available_bytes)),
        fact("System", format!("{} {}", sys.os_name, sys.os_version)),
        fact("GPU", gpu.summary()),
    ]
}

/// Host memory copy speed and, with a GPU, its transfer speeds, as bars.
fn bandwidths(host: Option<&HostBandwidth>, gpu: &GpuStatus) -> Vec<Bandwidth> {
    let mut bars = Vec::new();
    if let Some(host) = host {
        bars.push(Bandwidth {
            label: "RAM copy".into(),
            gb_per_second: host.copy_gb_per_s.median,
        });
    }
    if let Some(b) = gpu.info().and_then(|info| info.bandwidths.as_ref()) {
        let mut push = |label: &str, value: Option<f64>| {
            if let Some(v) = value {
                bars.push(Bandwidth {
                    label: label.into(),
                    gb_per_second: v,
                });
            }
        };
        push("H→D pinned", b.h2d_pinned_gb_per_s());
        push("H→D pageable", b.h2d_pageable_gb_per_s());
        push("D→H pinned", b.d2h_pinned.last().map(|p| p.gb_per_s.median));
        push("GPU memory", Some(b.d2d.gb_per_s.median));
    }
    bars
}

/// Runs the profile; every finished step is streamed with the profile so far, and the final
/// profile is saved. Cancelling stops at the next safe point and saves nothing.
#[tauri::command]
pub async fn run_profile(
    state: State<'_, AppState>,
    quick: bool,
    target: Option<String>,
    draft: Option<String>,
    on_event: Channel<ProfileEvent>,
) -> CommandResult<ProfileView> {
    let target = target.filter(|t| !t.is_empty());
    let draft = draft.filter(|d| !d.is_empty());
    if draft.is_some() && target.is_none() {
        return Err(CommandError::user(
            "choose a target for the draft to be measured against",
        ));
    }
    let target_path = target
        .as_deref()
        .map(|t| crate::models::resolve(&state, t))
        .transpose()?;
    let draft_path = match (&target, &draft) {
        (Some(t), Some(d)) => {
            crate::models::check_pair(&state, t, d)?;
            Some(crate::models::resolve(&state, d)?)
        }
        _ => None,
    };
    let guard = state.start(Task::Profile)?;
    let app = state.inner().clone();
    app.inner.profile_cancel.reset();

    let result = tauri::async_runtime::spawn_blocking(move || {
        let inner = &app.inner;
        let cancel = &inner.profile_cancel;
        let send_step = |step: Step, fraction: f64, note: &str| {
            let _ = on_event.send(ProfileEvent::Step {
                step,
                fraction,
                note: note.to_owned(),
            });
        };
        let done = |step: Step, profile: &ProfileView| {
            let _ = on_event.send(ProfileEvent::StepDone {
                step,
                profile: Box::new(profile.clone()),
            });
        };
        let cancelled = || {
            CommandError::new(
                ErrorKind::User,
                "the profile was cancelled; nothing was saved",
            )
        };

        let mut profile = ProfileView {
            created_at: now_ms(),
            quick,
            system: Vec::new(),
            bandwidth: Vec::new(),
            target_model: target.clone(),
            draft_model: draft.clone(),
            target_curve: Vec::new(),
            draft_curve: Vec::new(),
            acceptance: Vec::new(),
            plan: "none".into(),
            budget: 1,
            depth: 0,
            tree: Vec::new(),
            expected_tokens_per_step: 1.0,
            predicted_tokens_per_second: 0.0,
            plain_tokens_per_second: 0.0,
        };

        send_step(Step::Detect, 0.0, "reading CPU, memory and GPUs");
        let gpu_options = GpuProbeOptions {
            measure_bandwidth: false,
            ..GpuProbeOptions::quick()
        };
        let gpu_facts = canopy_hw::probe_gpu(&gpu_options, &mut |_, _| {})
            .map_err(|e| CommandError::internal(format!("looking for a GPU failed: {e}")))?;
        profile.system = detect(&gpu_facts);
        done(Step::Detect, &profile);

        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        send_step(Step::Bandwidth, 0.0, "copying a large buffer in RAM");
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let host_options = if quick {
            HostBandwidthOptions::quick(threads)
        } else {
            HostBandwidthOptions::full(threads)
        };
        let host = canopy_hw::measure_host_bandwidth(&host_options, &mut |done, total| {
            send_step(
                Step::Bandwidth,
                0.5 * done as f64 / total.max(1) as f64,
                "copying a large buffer in RAM",
            );
        })
        .map_err(|e| CommandError::internal(format!("measuring memory bandwidth failed: {e}")))?;
        let gpu = if gpu_facts.info().is_some() {
            let options = if quick {
                GpuProbeOptions::quick()
            } else {
                GpuProbeOptions::full()
            };
            canopy_hw::probe_gpu(&options, &mut |done, total| {
                send_step(
                    Step::Bandwidth,
                    0.5 + 0.5 * done as f64 / total.max(1) as f64,
                    "timing host↔GPU copies",
                );
            })
            .map_err(|e| CommandError::internal(format!("measuring the GPU failed: {e}")))?
        } else {
            gpu_facts
        };
        profile.bandwidth = bandwidths(Some(&host), &gpu);
        let note = match gpu.info().and_then(|i| i.bandwidths.as_ref()) {
            Some(b) => format!(
                "RAM {:.1} GB/s, host→GPU {:.1} GB/s",
                host.copy_gb_per_s.median,
                b.h2d_pinned_gb_per_s().unwrap_or(0.0)
            ),
            None => format!(
                "RAM {:.1} GB/s; no GPU to stream to",
                host.copy_gb_per_s.median
            ),
        };
        send_step(Step::Bandwidth, 1.0, &note);
        done(Step::Bandwidth, &profile);

        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let Some(target_path) = target_path else {
            send_step(Step::Costs, 1.0, "no target model chosen: skipped");
            done(Step::Costs, &profile);
            send_step(Step::Acceptance, 1.0, "no draft model chosen: skipped");
            done(Step::Acceptance, &profile);
            send_step(Step::Plan, 1.0, "choose a target model to plan for");
            done(Step::Plan, &profile);
            return Ok(profile);
        };

        let target_grid: Vec<usize> = if quick {
            vec![1, 2, 4, 8, 16]
        } else {
            vec![1, 2, 4, 8, 16, 32, 64, 128]
        };
        let draft_grid: Vec<usize> = if draft_path.is_none() {
            Vec::new()
        } else if quick {
            vec![1, 2, 4, 8]
        } else {
            vec![1, 2, 4, 8, 16, 32]
        };
        send_step(Step::Costs, 0.0, "loading the model");
        let measure = Job::Measure(MeasureRequest {
            target: target_path.clone(),
            draft: draft_path.clone(),
            target_grid,
            draft_grid,
            repeats: if quick { 2 } else { 5 },
            placement: Placement::Cpu,
            rpc: Vec::new(),
            rpc_layers: None,
        });
        let measured =
            match inner
                .supervisor()
                .run(measure, cancel, &mut forward(&on_event, Step::Costs))?
            {
                JobResult::Measure(m) => m,
                other => {
                    return Err(CommandError::internal(format!(
                        "the worker answered a measurement with {other:?}"
                    )))
                }
            };
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let points = |ps: &[TimedPoint]| {
            ps.iter()
                .map(|p| Point {
                    n: p.n,
                    seconds: p.median,
                })
                .collect::<Vec<_>>()
        };
        profile.target_curve = points(&measured.target);
        profile.draft_curve = points(&measured.draft);
        let plain = profile
            .target_curve
            .iter()
            .find(|p| p.n == 1)
            .map(|p| 1.0 / p.seconds.max(1e-9))
            .unwrap_or(0.0);
        profile.plain_tokens_per_second = plain;
        profile.predicted_tokens_per_second = plain;
        done(Step::Costs, &profile);

        let Some(draft_path) = draft_path else {
            send_step(Step::Acceptance, 1.0, "no draft model: plain decoding");
            done(Step::Acceptance, &profile);
            send_step(Step::Plan, 1.0, "plain decoding (no draft)");
            done(Step::Plan, &profile);
            return Ok(profile);
        };

        send_step(Step::Acceptance, 0.0, "drafting on sample prompts");
        let acceptance = Job::Acceptance(AcceptanceRequest {
            target: target_path,
            draft: draft_path,
            prompts: ACCEPTANCE_PROMPTS
                .iter()
                .take(if quick { 2 } else { ACCEPTANCE_PROMPTS.len() })
                .map(|p| (*p).to_owned())
                .collect(),
            temperature: 0.0,
            width: 8,
            tokens_per_prompt: if quick { 16 } else { 64 },
            seed: 0,
        });
        let measured = match inner.supervisor().run(
            acceptance,
            cancel,
            &mut forward(&on_event, Step::Acceptance),
        )? {
            JobResult::Acceptance(a) => a,
            other => {
                return Err(CommandError::internal(format!(
                    "the worker answered an acceptance run with {other:?}"
                )))
            }
        };
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        profile.acceptance = measured.acceptance;
        done(Step::Acceptance, &profile);

        send_step(Step::Plan, 0.2, "searching tree sizes and depths");
        plan_into(&mut profile).map_err(CommandError::internal)?;
        let note = if profile.budget <= 1 {
            "plain decoding is fastest here".to_owned()
        } else {
            format!("{} nodes, depth {}", profile.budget, profile.depth)
        };
        send_step(Step::Plan, 1.0, &note);
        done(Step::Plan, &profile);
        Ok(profile)
    })
    .await
    .map_err(CommandError::internal)?;
    drop(guard);
    let profile = result?;
    let json = serde_json::to_string(&profile).map_err(CommandError::internal)?;
    let name = if quick { "quick" } else { "full" };
    state.inner.store()?.save_profile(name, &json)?;
    Ok(profile)
}

/// Passes the worker's progress reports on to the window as progress of `step`.
fn forward(on_event: &Channel<ProfileEvent>, step: Step) -> impl FnMut(&Event) + '_ {
    move |event| {
        if let Event::Progress {
            phase, fraction, ..
        } = event
        {
            let _ = on_event.send(ProfileEvent::Step {
                step,
                fraction: *fraction,
                note: phase.clone(),
            });
        }
    }
}

/// Chooses the tree for the measured acceptance and costs and records it in `profile`.
fn plan_into(profile: &mut ProfileView) -> Result<(), canopy_plan::PlanError> {
    let acc = Acceptance::new(profile.acceptance.clone())?;
    let table = |ps: &[Point]| CostTable::new(ps.iter().map(|p| (p.n, p.seconds)).collect());
    let costs = Costs {
        target: table(&profile.target_curve)?,
        draft: table(&profile.draft_curve)?,
    };
    let limits = Limits::with_budget_depth(MAX_BUDGET, MAX_DEPTH);
    let choice = canopy_plan::choose(&acc, &costs, &limits)?;
    record_plan(profile, &choice.plan);
    profile.predicted_tokens_per_second = choice.predicted_tokens_per_second;
    profile.plain_tokens_per_second = choice.plain_tokens_per_second;
    Ok(())
}

fn record_plan(profile: &mut ProfileView, plan: &TreePlan) {
    profile.budget = plan.nodes.len();
    profile.depth = plan
        .nodes
        .iter()
        .map(|n| n.depth as usize)
        .max()
        .unwrap_or(0);
    profile.expected_tokens_per_step = plan.expected_tokens;
    profile.plan = if profile.budget <= 1 {
        "none".to_owned()
    } else {
        format!("tree:{}", profile.budget)
    };
    profile.tree = plan
        .nodes
        .iter()
        .map(|n| Node {
            parent: n.parent,
            rank: n.rank,
            depth: n.depth,
            children: n.children,
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> ProfileView {
        ProfileView {
            created_at: 0,
            quick: true,
            system: Vec::new(),
            bandwidth: Vec::new(),
            target_model: None,
            draft_model: None,
            target_curve: Vec::new(),
            draft_curve: Vec::new(),
            acceptance: Vec::new(),
            plan: "none".into(),
            budget: 1,
            depth: 0,
            tree: Vec::new(),
            expected_tokens_per_step: 1.0,
            predicted_tokens_per_second: 0.0,
            plain_tokens_per_second: 0.0,
        }
    }

    #[test]
    fn a_flat_target_curve_and_a_good_draft_give_a_tree() {
        let mut p = empty();
        p.acceptance = vec![0.7, 0.15, 0.05];
        p.target_curve = [1, 2, 4, 8, 16, 32, 64, 128]
            .iter()
            .map(|&n| Point {
                n,
                seconds: 0.5 + n as f64 * 1e-4,
            })
            .collect();
        p.draft_curve = [1, 2, 4, 8, 16, 32]
            .iter()
            .map(|&n| Point { n, seconds: 0.005 })
            .collect();
        plan_into(&mut p).unwrap();
        assert!(p.budget > 8, "{}", p.budget);
        assert!(p.plan.starts_with("tree:"));
        assert!(p.predicted_tokens_per_second > 2.0 * p.plain_tokens_per_second);
        assert_eq!(p.tree.len(), p.budget);
        assert_eq!(p.tree[0].parent, None);
    }

    #[test]
    fn a_steep_target_curve_keeps_plain_decoding() {
        let mut p = empty();
        p.acceptance = vec![0.1];
        p.target_curve = [1, 2, 4, 8]
            .iter()
            .map(|&n| Point {
                n,
                seconds: 0.01 * n as f64,
            })
            .collect();
        p.draft_curve = [1, 2, 4, 8]
            .iter()
            .map(|&n| Point { n, seconds: 0.01 })
            .collect();
        plan_into(&mut p).unwrap();
        assert_eq!(p.plan, "none");
        assert!((p.predicted_tokens_per_second - 100.0).abs() < 1e-6);
    }

    #[test]
    fn the_machine_is_described() {
        let facts = detect(&GpuStatus::NotBuilt);
        assert!(facts.iter().any(|f| f.key == "RAM"));
        assert!(facts.iter().any(|f| f.value.contains("no CUDA support")));
        assert!(bandwidths(None, &GpuStatus::NotBuilt).is_empty());
    }
}
