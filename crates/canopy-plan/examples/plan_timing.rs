//! Times `optimal_tree` for the limits given on the command line:
//! `plan_timing BUDGET DEPTH BRANCH LEAVES` (acceptance: a decreasing vector summing to 0.9).

use std::time::Instant;

use canopy_plan::{optimal_tree, Acceptance, Limits};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let [budget, max_depth, max_branch, max_leaves] = args[..] else {
        eprintln!("usage: plan_timing BUDGET DEPTH BRANCH LEAVES");
        std::process::exit(2);
    };
    let raw: Vec<f64> = (0..max_branch.max(1))
        .map(|k| 0.6f64.powi(k as i32))
        .collect();
    let sum: f64 = raw.iter().sum();
    let acc = Acceptance::new(raw.iter().map(|x| x / sum * 0.9).collect()).expect("valid vector");
    let limits = Limits {
        budget,
        max_depth,
        max_branch,
        max_leaves,
    };
    let start = Instant::now();
    match optimal_tree(&acc, &limits) {
        Ok(plan) => println!(
            "{:.3} s: {} nodes, depth {}, {} leaves, {:.4} expected tokens",
            start.elapsed().as_secs_f64(),
            plan.budget(),
            plan.depth(),
            plan.leaves(),
            plan.expected_tokens
        ),
        Err(err) => println!("{:.3} s: {err}", start.elapsed().as_secs_f64()),
    }
}
