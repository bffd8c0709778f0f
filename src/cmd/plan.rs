//! `canopy plan`: the optimal speculation tree for an acceptance vector, and with measured costs the
//! budget and depth that maximise predicted tokens per second.

use std::path::PathBuf;

use canopy_core::{PlanOutcome, PlanQuery, TreePlan, LLAMA_MAX_LEAVES};
use serde_json::{json, Value};

use crate::engine::{core, core_error};
use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Positional acceptance vector p[1],p[2],...: probability that the k-th draft candidate is accepted
    /// (default with --profile: the profile's measured vector).
    #[arg(long, value_name = "P1,P2,...")]
    acceptance: Option<String>,
    /// Tokens in one target pass, counting the root (1 = plain decoding).
    #[arg(long, default_value_t = 128)]
    budget: usize,
    /// The most speculated tokens on any path.
    #[arg(long, default_value_t = 16)]
    max_depth: usize,
    /// The most children of a node (default: the length of the acceptance vector).
    #[arg(long)]
    max_branch: Option<usize>,
    /// The most leaves (llama.cpp verifies at most 255 per pass).
    #[arg(long, default_value_t = LLAMA_MAX_LEAVES)]
    max_leaves: usize,
    /// Measured pass times, JSON `{"target": [[n, seconds], ...], "draft": [[k, seconds], ...]}`:
    /// choose budget and depth within the limits for the most tokens per second.
    #[arg(long, value_name = "FILE")]
    costs: Option<PathBuf>,
    /// A hardware profile (name or file) whose measured curves to use instead of --costs.
    #[arg(long, value_name = "NAME|PATH", conflicts_with = "costs")]
    profile: Option<String>,
    /// Print JSON instead of a summary and a picture.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CliResult {
    let query = PlanQuery {
        acceptance: args
            .acceptance
            .as_deref()
            .map(parse_acceptance)
            .transpose()?,
        profile: args.profile,
        costs_file: args.costs,
        budget: args.budget,
        max_depth: args.max_depth,
        max_branch: args.max_branch,
        max_leaves: args.max_leaves,
    };
    let outcome = core()?.plan_tree(&query).map_err(core_error)?;
    if args.json {
        let text = serde_json::to_string_pretty(&to_json(&outcome)).map_err(anyhow::Error::from)?;
        println!("{text}");
    } else {
        print!("{}", render_text(&outcome));
    }
    Ok(())
}

/// Parses `0.62,0.11,0.05` into numbers (the core checks them); one-line errors name the bad
/// entry.
fn parse_acceptance(text: &str) -> CliResult<Vec<f64>> {
    let mut p = Vec::new();
    for (i, field) in text.split(',').enumerate() {
        let field = field.trim();
        let value: f64 = field.parse().map_err(|_| {
            CliError::user(format!(
                "--acceptance: entry p[{}] = {field:?} is not a number",
                i + 1
            ))
        })?;
        p.push(value);
    }
    Ok(p)
}

fn to_json(outcome: &PlanOutcome) -> Value {
    let plan = &outcome.plan;
    let nodes: Vec<Value> = plan
        .nodes
        .iter()
        .map(|n| json!({"parent": n.parent, "rank": n.rank, "depth": n.depth}))
        .collect();
    let levels: Vec<Value> = plan
        .levels()
        .iter()
        .map(|l| json!({"depth": l.depth, "expand": l.expand.iter().map(|&(n, c)| json!([n, c])).collect::<Vec<_>>()}))
        .collect();
    let mut out = json!({
        "expected_tokens": plan.expected_tokens,
        "upper_bound": outcome.upper_bound.max(plan.expected_tokens),
        "gap": outcome.gap(),
        "budget_used": plan.budget(),
        "depth": plan.depth(),
        "leaves": plan.leaves(),
        "nodes": nodes,
        "levels": levels,
    });
    if let Some(choice) = &outcome.choice {
        out["predicted_tokens_per_second"] = json!(choice.predicted_tokens_per_second);
        out["plain_tokens_per_second"] = json!(choice.plain_tokens_per_second);
        out["speedup"] = json!(choice.speedup);
        out["step_seconds"] = json!(choice.step_seconds);
    }
    out
}

/// Widest row of the picture, in characters.
const PICTURE_WIDTH: usize = 72;

fn render_text(outcome: &PlanOutcome) -> String {
    let (plan, limits) = (&outcome.plan, &outcome.limits);
    let vector: Vec<String> = outcome.acceptance.iter().map(|p| format!("{p}")).collect();
    let mut out = format!(
        "{:.4} expected tokens per pass: {} nodes, depth {}, {} leaves\n",
        plan.expected_tokens,
        plan.budget(),
        plan.depth(),
        plan.leaves()
    );
    let gap = outcome.gap();
    out += &if gap > 0.0 {
        let percent = gap * 100.0;
        let percent = if percent < 1e-3 {
            format!("{percent:.1e}%")
        } else {
            format!("{percent:.3}%")
        };
        format!(
            "within {percent} of the optimum (proven bound {:.4} expected tokens)\n",
            outcome.upper_bound
        )
    } else {
        "optimal\n".to_owned()
    };
    out += &format!(
        "acceptance {}; limits: budget {}, max depth {}, max branch {}, max leaves {}\n",
        vector.join(", "),
        limits.budget,
        limits.max_depth,
        limits.max_branch,
        limits.max_leaves
    );
    if let Some(c) = &outcome.choice {
        out += &format!(
            "predicted {:.3} tokens/s vs {:.3} plain: speed-up {:.2}x, {:.4} s per step\n",
            c.predicted_tokens_per_second, c.plain_tokens_per_second, c.speedup, c.step_seconds
        );
    }
    out += "\n";
    out += &picture(plan);
    out
}

/// One row per depth: `*` a node that gets children, `.` a leaf; siblings are grouped, groups are
/// separated by a space. Rows wider than the picture are cut with the count of nodes left out.
fn picture(plan: &TreePlan) -> String {
    let mut out =
        String::from("depth  nodes  expanded  children of each parent (* expanded, . leaf)\n");
    for depth in 0..=plan.depth() {
        let at_depth: Vec<usize> = (0..plan.nodes.len())
            .filter(|&i| plan.nodes[i].depth as usize == depth)
            .collect();
        let expanded = at_depth
            .iter()
            .filter(|&&i| plan.nodes[i].children > 0)
            .count();
        let mut row = String::new();
        let mut shown = 0;
        for (k, &i) in at_depth.iter().enumerate() {
            let node = &plan.nodes[i];
            let starts_group = k > 0 && node.rank == 1;
            let glyph = if node.children > 0 { '*' } else { '.' };
            if row.len() + 2 > PICTURE_WIDTH {
                break;
            }
            if starts_group {
                row.push(' ');
            }
            row.push(glyph);
            shown += 1;
        }
        if shown < at_depth.len() {
            row += &format!(" ... (+{})", at_depth.len() - shown);
        }
        out += &format!("{depth:>5}  {:>5}  {expanded:>8}  {row}\n", at_depth.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_plan::Acceptance;

    fn user_message(err: CliError) -> String {
        match err {
            CliError::User(msg) => msg,
            CliError::Failure(e) => panic!("expected a user error, got {e:#}"),
        }
    }

    #[test]
    fn parses_acceptance_and_names_bad_entries() {
        assert_eq!(
            parse_acceptance("0.62, 0.11,0.05").unwrap(),
            [0.62, 0.11, 0.05]
        );
        let msg = user_message(parse_acceptance("0.5,abc").err().unwrap());
        assert!(msg.contains("p[2]") && msg.contains("abc"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn json_has_the_documented_fields() {
        let acc = Acceptance::new(parse_acceptance("0.62,0.11,0.05").unwrap()).unwrap();
        let limits = canopy_core::Limits {
            budget: 8,
            max_depth: 3,
            max_branch: 3,
            max_leaves: 255,
        };
        let plan = canopy_plan::optimal_tree(&acc, &limits).unwrap();
        let value = to_json(&PlanOutcome {
            acceptance: acc.as_slice().to_vec(),
            limits,
            plan: plan.clone(),
            upper_bound: plan.expected_tokens,
            choice: None,
        });
        assert_eq!(value["budget_used"], 8);
        assert_eq!(value["depth"], plan.depth());
        assert_eq!(value["leaves"], plan.leaves());
        assert!((value["expected_tokens"].as_f64().unwrap() - plan.expected_tokens).abs() < 1e-12);
        assert_eq!(
            value["nodes"][0],
            json!({"parent": null, "rank": 0, "depth": 0})
        );
        assert_eq!(value["nodes"].as_array().unwrap().len(), 8);
        assert!(value.get("speedup").is_none());
        assert_eq!(value["gap"], 0.0);
    }

    #[test]
    fn picture_groups_siblings_and_cuts_wide_rows() {
        let acc = Acceptance::new(vec![0.5, 0.3]).unwrap();
        let plan = TreePlan::from_children_counts(&[2, 2, 1, 0, 0, 0], &acc).unwrap();
        let text = picture(&plan);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[1].ends_with("  *"), "{text}");
        assert!(rows[2].ends_with("  **"), "{text}");
        assert!(rows[3].ends_with("  .. ."), "{text}");
        let wide = TreePlan::from_children_counts(
            &[200].into_iter().chain([0; 200]).collect::<Vec<_>>(),
            &acc,
        )
        .unwrap();
        let text = picture(&wide);
        assert!(text.contains("(+"), "{text}");
        assert!(text.lines().all(|l| l.len() < PICTURE_WIDTH + 40));
    }
}
