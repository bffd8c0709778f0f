//! A memoising front to the planner: plans are pure functions of their inputs, so they are cached by them.

use std::collections::HashMap;

use crate::{Acceptance, BoundedPlan, Choice, Costs, Limits, PlanError, TreePlan};

pub(crate) type CostKey = (Vec<(usize, u64)>, Vec<(usize, u64)>);

/// Caches [`crate::optimal_tree_bounded`] and [`crate::choose`] results keyed by the exact bits of their inputs.
/// Errors are not cached.
#[derive(Default)]
pub struct Planner {
    trees: HashMap<(Vec<u64>, Limits), BoundedPlan>,
    choices: HashMap<(Vec<u64>, Limits, CostKey), Choice>,
}

impl Planner {
    pub fn new() -> Self {
        Self::default()
    }

    /// [`crate::optimal_tree`], computed once per distinct input. Fails as it does.
    pub fn optimal_tree(
        &mut self,
        acc: &Acceptance,
        limits: &Limits,
    ) -> Result<TreePlan, PlanError> {
        self.optimal_tree_bounded(acc, limits).map(|b| b.plan)
    }

    /// [`crate::optimal_tree_bounded`], computed once per distinct input. Fails as it does.
    pub fn optimal_tree_bounded(
        &mut self,
        acc: &Acceptance,
        limits: &Limits,
    ) -> Result<BoundedPlan, PlanError> {
        let key = (acc.key(), *limits);
        if let Some(bounded) = self.trees.get(&key) {
            return Ok(bounded.clone());
        }
        let bounded = crate::optimal_tree_bounded(acc, limits)?;
        self.trees.insert(key, bounded.clone());
        Ok(bounded)
    }

    /// [`crate::choose`], computed once per distinct input. Fails as it does.
    pub fn choose(
        &mut self,
        acc: &Acceptance,
        costs: &Costs,
        limits: &Limits,
    ) -> Result<Choice, PlanError> {
        let key = (acc.key(), *limits, costs.key());
        if let Some(choice) = self.choices.get(&key) {
            return Ok(choice.clone());
        }
        let choice = crate::choose(acc, costs, limits)?;
        self.choices.insert(key, choice.clone());
        Ok(choice)
    }

    /// Number of cached results (trees and choices).
    pub fn cached(&self) -> usize {
        self.trees.len() + self.choices.len()
    }
}
