//! The limits of Canopy's tree engine over llama.cpp, defined once: the engine builds its trees
//! within them, and `simulate`, `plan` and `auto` plan within the same ones.

use crate::{optimal_tree, Acceptance, Limits, PlanError, TreePlan, LLAMA_MAX_LEAVES};

/// What one verification pass of the engine can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineLimits {
    /// Leaves one pass verifies (llama.cpp's sequences, one kept for the prefix).
    pub max_leaves: usize,
    /// Children of one node: the most the draft proposes at a node.
    pub max_branch: usize,
    /// The deepest tree any plan builds (`chain:K` takes at most this, `tree:N` is capped here);
    /// also the most accepted tokens one commit can hand to the next pass.
    pub max_depth: usize,
    /// The deepest tree `auto` plans.
    pub auto_max_depth: usize,
}

/// The engine's limits.
pub const ENGINE: EngineLimits = EngineLimits {
    max_leaves: LLAMA_MAX_LEAVES,
    max_branch: 16,
    max_depth: 255,
    auto_max_depth: 24,
};

// One of llama.cpp's 256 sequences is the prefix's; `auto` plans within what any plan may build.
const _: () = assert!(ENGINE.max_leaves < 256 && ENGINE.auto_max_depth <= ENGINE.max_depth);

impl EngineLimits {
    /// The limits of a fixed `tree:N` (`n` ≥ 1).
    pub fn fixed_tree(&self, n: usize) -> Limits {
        Limits {
            budget: n,
            max_depth: n.saturating_sub(1).min(self.max_depth),
            max_branch: self.max_branch,
            max_leaves: self.max_leaves,
        }
    }

    /// The tree `tree:N` runs for `acc`: the optimal one within [`EngineLimits::fixed_tree`].
    ///
    /// # Errors
    /// As [`optimal_tree`], for `n` of 0 or above the planner's budget.
    pub fn fixed_tree_plan(&self, acc: &Acceptance, n: usize) -> Result<TreePlan, PlanError> {
        optimal_tree(acc, &self.fixed_tree(n))
    }

    /// The limits `auto` plans within, for trees of at most `budget` tokens.
    pub fn auto(&self, budget: usize) -> Limits {
        Limits {
            budget,
            max_depth: self.auto_max_depth,
            max_branch: self.max_branch,
            max_leaves: self.max_leaves,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_set_is_valid_and_within_llama_cpp() {
        for n in [1, 2, 16, 256, 1024] {
            ENGINE.fixed_tree(n).validate().unwrap();
            ENGINE.auto(n).validate().unwrap();
        }
        assert_eq!(
            ENGINE.fixed_tree(1).max_depth,
            0,
            "tree:1 is plain decoding"
        );
    }

    #[test]
    fn a_fixed_tree_respects_the_engine() {
        let acc = Acceptance::new(vec![0.6, 0.1, 0.04, 0.02]).unwrap();
        let plan = ENGINE.fixed_tree_plan(&acc, 64).unwrap();
        assert_eq!(plan.budget(), 64);
        assert!(plan.leaves() <= ENGINE.max_leaves);
        assert!(plan.depth() <= 63);
    }
}
