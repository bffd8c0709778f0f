//! The Sequoia speculation-tree planner (arXiv 2402.12374): provably optimal trees from a positional
//! acceptance vector, and the budget and depth that maximise tokens per second on measured hardware.
//!
//! Pure: no IO, no model. Architecture Invariant: this crate knows nothing of llama.cpp; the engine
//! turns a [`TreePlan`] into batches.
//!
//! * [`optimal_tree`]: the tree of at most `budget` nodes with the most expected tokens per pass, under
//!   limits on depth, children per node and leaves.
//! * [`choose`]: the budget and depth with the most predicted tokens per second, given [`Costs`].
//! * [`chain`] and [`fixed_budget`]: baselines.
//! * [`Planner`]: the same, cached by input.

mod acceptance;
mod cost;
mod dp;
mod error;
mod planner;
mod tree;

pub use acceptance::{Acceptance, Limits, LLAMA_MAX_LEAVES, MAX_BUDGET, SUM_TOLERANCE};
pub use cost::{choose, Choice, CostTable, Costs};
pub use dp::MAX_LEAF_WORK;
pub use error::PlanError;
pub use planner::Planner;
pub use tree::{Level, PlanNode, TreePlan};

use dp::{Dims, LeafTable, Table};

/// The tree with the most expected tokens per pass among trees with at most `limits.budget` nodes,
/// depth at most `limits.max_depth`, at most `limits.max_branch` children per node and at most
/// `limits.max_leaves` leaves. Among optimal trees it prefers fewer nodes.
///
/// Fails when the limits are invalid, or with [`PlanError::LeafLimitTooCostly`] when the leaf limit binds
/// and exact planning under it would exceed [`MAX_LEAF_WORK`] steps.
pub fn optimal_tree(acc: &Acceptance, limits: &Limits) -> Result<TreePlan, PlanError> {
    limits.validate()?;
    let dims = Dims::new(acc, limits.budget, limits.max_depth, limits.max_branch);
    if dims.depth == 0 {
        return Ok(TreePlan::plain());
    }
    let table = Table::build(acc, dims);
    let plan = table.plan(acc, dims.depth, dims.budget);
    debug_assert!(
        (plan.expected_tokens - table.value(dims.depth, dims.budget)).abs()
            < 1e-9 * plan.expected_tokens
    );
    if plan.leaves() <= limits.max_leaves {
        return Ok(plan);
    }
    let leafy = LeafTable::build(acc, dims, limits.max_leaves)?;
    let plan = leafy.plan(acc, dims.depth, dims.budget, limits.max_leaves);
    debug_assert!(
        (plan.expected_tokens - leafy.value(dims.depth, dims.budget, limits.max_leaves)).abs()
            < 1e-9 * plan.expected_tokens
    );
    Ok(plan)
}

/// The best tree with at most `budget` nodes under the other `limits` (whose own budget is ignored).
/// Fails as [`optimal_tree`] does.
pub fn fixed_budget(
    acc: &Acceptance,
    budget: usize,
    limits: &Limits,
) -> Result<TreePlan, PlanError> {
    optimal_tree(acc, &Limits { budget, ..*limits })
}

/// The root followed by `k` tokens in a line, each the draft's first candidate.
pub fn chain(acc: &Acceptance, k: usize) -> TreePlan {
    let mut counts = vec![1; k];
    counts.push(0);
    TreePlan::from_children_counts(&counts, acc).expect("a chain is a tree")
}
