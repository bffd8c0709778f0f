//! What a profile screen shows: a projection of [`canopy_hw::Profile`] (the one saved schema),
//! with the tree the planner chooses from its measurements.

use canopy_hw::{GpuStatus, LayerSplit, Profile};
use canopy_plan::{Acceptance, CostTable, Costs, Limits, TreePlan};
use canopy_types::Placement;
use serde::Serialize;

/// Largest tree the profile screen plans (the chat's `auto` may plan larger ones off the CPU).
const VIEW_MAX_BUDGET: usize = 128;
const VIEW_MAX_DEPTH: usize = 12;

#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Fact {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Bandwidth {
    pub label: String,
    pub gb_per_second: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Point {
    pub n: usize,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Node {
    pub parent: Option<usize>,
    pub rank: u32,
    pub depth: u32,
    pub children: u32,
}

/// A profile as a screen shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProfileView {
    pub name: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub source: String,
    pub system: Vec<Fact>,
    pub bandwidth: Vec<Bandwidth>,
    pub target_model: Option<String>,
    pub draft_model: Option<String>,
    /// Where the target ran while timed, in words ("draft on the GPU; 18 of 80 target layers
    /// resident, 27.4 GB streamed per pass"); `None` without models.
    pub placement: Option<String>,
    pub target_curve: Vec<Point>,
    pub draft_curve: Vec<Point>,
    pub acceptance: Vec<f64>,
    /// `none` or `tree:N`.
    pub plan: String,
    pub budget: usize,
    pub depth: usize,
    pub tree: Vec<Node>,
    pub expected_tokens_per_step: f64,
    pub predicted_tokens_per_second: f64,
    pub plain_tokens_per_second: f64,
    /// What the last generation that planned from this profile measured of its costs, if any did.
    pub live: Option<LiveCheck>,
}

/// A factor between live and profiled pass times beyond which a screen says they disagree: a
/// profile measured on a busy machine (or before a hardware change) misleads `auto` until it
/// corrects itself, every reply.
pub const LIVE_DISAGREEMENT: f64 = 1.25;

/// How a profile's cost curves compared with the pass times `auto` measured while planning from
/// them, in the last generation that did.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LiveCheck {
    /// The largest factor, either way, between a measured pass time and the profile's (1 = agree).
    pub factor: f64,
    /// Whether `factor` is beyond [`LIVE_DISAGREEMENT`].
    pub disagrees: bool,
    /// When it was measured, RFC 3339 UTC.
    pub measured_at: String,
    /// One line for the screen.
    pub summary: String,
}

impl LiveCheck {
    /// The check for a generation that measured `factor` just now.
    pub fn measured_now(factor: f64) -> LiveCheck {
        let measured_at = canopy_hw::profile::now_rfc3339();
        let disagrees = factor > LIVE_DISAGREEMENT;
        let summary = if disagrees {
            format!(
                "live measurements disagree with this profile: the last reply planned from it \
                 timed passes up to {factor:.2}x away from its curves (auto corrected itself); \
                 measure again on a quiet machine"
            )
        } else {
            format!("live measurements agree with this profile (within {factor:.2}x)")
        };
        LiveCheck {
            factor,
            disagrees,
            measured_at,
            summary,
        }
    }
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

fn system(profile: &Profile) -> Vec<Fact> {
    let mut facts = Vec::new();
    if let Some(sys) = &profile.machine {
        let cores = match sys.physical_cores {
            Some(physical) => format!("{physical} cores, {} threads", sys.logical_cores),
            None => format!("{} threads", sys.logical_cores),
        };
        facts.push(fact("CPU", format!("{} ({})", sys.cpu_model, sys.cpu_arch)));
        facts.push(fact("Cores", cores));
        facts.push(fact("RAM", gib(sys.ram_total_bytes)));
        facts.push(fact("RAM available", gib(sys.ram_available_bytes)));
        facts.push(fact(
            "System",
            format!("{} {}", sys.os_name, sys.os_version),
        ));
    }
    facts.push(fact("GPU", profile.gpu.summary()));
    facts
}

fn bandwidths(profile: &Profile) -> Vec<Bandwidth> {
    let mut bars = Vec::new();
    if let Some(host) = &profile.host_memory {
        bars.push(Bandwidth {
            label: "RAM copy".into(),
            gb_per_second: host.copy_gb_per_s.median,
        });
    }
    if let GpuStatus::Found(info) = &profile.gpu {
        if let Some(b) = &info.bandwidths {
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
    }
    bars
}

/// Where the profiled target ran, in words.
fn placement_words(profile: &Profile) -> Option<String> {
    let curves = profile.curves.as_ref()?;
    let placement = measured_placement(profile)?;
    let model = &curves.target.model;
    let layers = model.layers.unwrap_or(0);
    let resident = profile.resident_layers.unwrap_or(0).min(layers);
    let streamed = match layers {
        0 => 0.0,
        l => model.bytes as f64 * (l - resident) as f64 / l as f64 / 1e9,
    };
    Some(match placement {
        canopy_types::Placement::Cpu | canopy_types::Placement::Auto => {
            "CPU only: no GPU was used".to_owned()
        }
        canopy_types::Placement::Gpu => format!("everything on the GPU ({layers} layers)"),
        canopy_types::Placement::Stream => {
            format!("draft on the GPU; all {layers} target layers streamed, {streamed:.1} GB per pass")
        }
        canopy_types::Placement::Partial { .. } => format!(
            "draft on the GPU; {resident} of {layers} target layers resident, {streamed:.1} GB streamed per pass"
        ),
    })
}

impl ProfileView {
    /// The screen's view of `profile`, with the planner's choice for its measurements.
    pub fn of(profile: &Profile) -> ProfileView {
        let points = |c: &canopy_hw::CostCurve| {
            c.points
                .iter()
                .map(|p| Point {
                    n: p.n,
                    seconds: p.seconds.median,
                })
                .collect::<Vec<_>>()
        };
        let curves = profile.curves.as_ref();
        let mut view = ProfileView {
            name: profile.name.clone(),
            created_at: profile.created_at.clone(),
            source: profile.source.clone(),
            system: system(profile),
            bandwidth: bandwidths(profile),
            target_model: curves.map(|c| c.target.model.name.clone()),
            draft_model: curves
                .and_then(|c| c.draft.as_ref())
                .map(|d| d.model.name.clone()),
            placement: placement_words(profile),
            target_curve: curves.map(|c| points(&c.target.curve)).unwrap_or_default(),
            draft_curve: curves
                .and_then(|c| c.draft.as_ref())
                .map(|d| points(&d.curve))
                .unwrap_or_default(),
            acceptance: profile
                .acceptance
                .as_ref()
                .map(|a| a.p.clone())
                .unwrap_or_default(),
            plan: "none".into(),
            budget: 1,
            depth: 0,
            tree: Vec::new(),
            expected_tokens_per_step: 1.0,
            predicted_tokens_per_second: 0.0,
            plain_tokens_per_second: 0.0,
            live: None,
        };
        if let Some(p) = view.target_curve.iter().find(|p| p.n == 1) {
            view.plain_tokens_per_second = 1.0 / p.seconds.max(1e-9);
            view.predicted_tokens_per_second = view.plain_tokens_per_second;
        }
        // Without a measured acceptance vector there is nothing to plan from yet.
        let _ = view.plan_tree();
        view
    }

    fn plan_tree(&mut self) -> Result<(), canopy_plan::PlanError> {
        if self.acceptance.is_empty() || self.draft_curve.is_empty() {
            return Ok(());
        }
        let acc = Acceptance::new(self.acceptance.clone())?;
        let table = |ps: &[Point]| CostTable::new(ps.iter().map(|p| (p.n, p.seconds)).collect());
        let costs = Costs {
            target: table(&self.target_curve)?,
            draft: table(&self.draft_curve)?,
        };
        let limits = Limits::with_budget_depth(VIEW_MAX_BUDGET, VIEW_MAX_DEPTH);
        let choice = canopy_plan::choose(&acc, &costs, &limits)?;
        self.record(&choice.plan);
        self.predicted_tokens_per_second = choice.predicted_tokens_per_second;
        self.plain_tokens_per_second = choice.plain_tokens_per_second;
        Ok(())
    }

    fn record(&mut self, plan: &TreePlan) {
        self.budget = plan.nodes.len();
        self.depth = plan
            .nodes
            .iter()
            .map(|n| n.depth as usize)
            .max()
            .unwrap_or(0);
        self.expected_tokens_per_step = plan.expected_tokens;
        self.plan = if self.budget <= 1 {
            "none".to_owned()
        } else {
            format!("tree:{}", self.budget)
        };
        self.tree = plan
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
}

/// The placement a profile's target curve was measured in.
pub fn measured_placement(profile: &Profile) -> Option<Placement> {
    if let Some(p) = profile.placement {
        return Some(p);
    }
    let curves = profile.curves.as_ref()?;
    Some(placement_of(
        &curves.target.placement,
        curves.target.model.layers,
        profile.gpu.info().is_some(),
    ))
}

/// The engine placement of a target split as `split` on a machine with or without a GPU.
pub fn placement_of(split: &LayerSplit, layers: Option<u32>, has_gpu: bool) -> Placement {
    match (has_gpu, split.resident_layers) {
        (false, _) => Placement::Cpu,
        (true, 0) => Placement::Stream,
        (true, r) if layers.is_some_and(|l| r >= l) => Placement::Gpu,
        (true, r) => Placement::Partial { layers: r },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_curves(target: &[(usize, f64)], draft: &[(usize, f64)], acc: &[f64]) -> ProfileView {
        let profile = canopy_hw::reference_profile("cpu-only").unwrap().unwrap();
        let mut view = ProfileView::of(&profile);
        let pts = |v: &[(usize, f64)]| {
            v.iter()
                .map(|&(n, seconds)| Point { n, seconds })
                .collect::<Vec<_>>()
        };
        view.target_curve = pts(target);
        view.draft_curve = pts(draft);
        view.acceptance = acc.to_vec();
        view.plan_tree().unwrap();
        view
    }

    #[test]
    fn a_flat_target_curve_and_a_good_draft_give_a_tree() {
        let target: Vec<_> = [1, 2, 4, 8, 16, 32, 64, 128]
            .iter()
            .map(|&n| (n, 0.5 + n as f64 * 1e-4))
            .collect();
        let draft: Vec<_> = [1, 2, 4, 8, 16, 32].iter().map(|&n| (n, 0.005)).collect();
        let p = with_curves(&target, &draft, &[0.7, 0.15, 0.05]);
        assert!(p.budget > 8, "{}", p.budget);
        assert!(p.plan.starts_with("tree:"));
        assert!(p.predicted_tokens_per_second > 2.0 * p.plain_tokens_per_second);
        assert_eq!(p.tree.len(), p.budget);
        assert_eq!(p.tree[0].parent, None);
    }

    #[test]
    fn a_steep_target_curve_keeps_plain_decoding() {
        let target: Vec<_> = [1, 2, 4, 8].iter().map(|&n| (n, 0.01 * n as f64)).collect();
        let draft: Vec<_> = [1, 2, 4, 8].iter().map(|&n| (n, 0.01)).collect();
        let p = with_curves(&target, &draft, &[0.1]);
        assert_eq!(p.plan, "none");
        assert!((p.predicted_tokens_per_second - 100.0).abs() < 1e-6);
    }

    #[test]
    fn the_machine_is_described() {
        let profile = canopy_hw::reference_profile("cpu-only").unwrap().unwrap();
        let view = ProfileView::of(&profile);
        assert!(view.system.iter().any(|f| f.key == "GPU"));
        assert_eq!(view.placement, None);
    }
}
