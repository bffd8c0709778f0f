//! A memoising front to the planner: plans are pure functions of their inputs, so they are cached by them.

use std::collections::HashMap;

use crate::{Acceptance, Choice, Costs, Limits, PlanError, TreePlan};

pub(crate) type CostKey = (Vec<(usize, u64)>, Vec<(usize, u64)>);

/// Caches [`crate::optimal_tree`] and [`crate::choose`] results keyed by the exact bits of their inputs.
/// Errors are not cached.
#[derive(Default)]
pub struct Planner {
    trees: HashMap<(Vec<u64>, Limits), TreePlan>,
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
        let key = (acc.key(), *limits);
        if let Some(plan) = self.trees.get(&key) {
            return Ok(plan.clone());
        }
        let plan = crate::optimal_tree(acc, limits)?;
        self.trees.insert(key, plan.clone());
        Ok(plan)
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
