//! Lookup candidates next to the draft's tree: their acceptance and how many of them a step
//! verifies.
//!
//! Lookup (matching the conversation's latest tokens against what came before) proposes a small
//! trie of continuations at no model cost. A step's tree hangs that trie under the root, its
//! candidates tried before the draft's children, and the draft's tree beside it: lookup nodes cost
//! a target token each in the pass and no draft pass.
//!
//! # Value and cost of a merged step
//!
//! A lookup node of depth `d` (counted from the root) and rank `r` among its lookup siblings is
//! accepted, given its parent was, with probability [`LookupAcceptance::get`]`(d, r)`, its own
//! positional acceptance measured as the conversation runs; its *weight* is the product along its
//! path. The draft's candidates at the root are reached only when every lookup candidate there is
//! rejected, with probability `1 − A`, `A` the sum of the root-level lookup weights; the draft's
//! acceptance vector is measured on exactly those visits, so with `E_d` the draft tree's expected
//! tokens and `W` the lookup nodes' total weight, the step produces
//!
//! `E = 1 + W + (1 − A)·(E_d − 1)`
//!
//! tokens and costs `t(n) + R·t′(n) + D + (E − 1)·d′`, where `n` counts the nodes of both, `t` is
//! the target's pass and `t′` its marginal cost of a token, `R` the expected accepted tokens off the
//! tree's first-child chain (decoded again at the head of the next pass, see
//! [`TreePlan::expected_redecoded`]), `D` the draft's level passes and `d′` the draft's marginal cost
//! of catching up with an accepted token it did not decode (when there is a draft model).
//!
//! [`choose_step`] takes the draft trees of a ladder ([`crate::choose_ladder`]) and every prefix of
//! the lookup nodes in decreasing weight (a prefix is a trie: a child weighs at most its parent)
//! and returns the pair with the most tokens per second; plain decoding is always a candidate.
//! (Candidates matched after the draft tree's leaves, known only once the draft has drawn them,
//! are left to the policy's per-node rule: one pays when its weight beats the cost of its token at
//! the step's rate.)

use serde::{Deserialize, Serialize};

use crate::{Acceptance, CostTable, PlanError, TreePlan};

/// One lookup candidate of a step's trie. Nodes come parents first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupNode {
    /// The parent lookup node, `None` for a node hung under the root.
    pub parent: Option<usize>,
    /// 1 for the first lookup child of its parent, 2 for the next, …
    pub rank: u32,
    /// 1 under the root, parent's depth + 1 below.
    pub depth: u32,
}

/// Positional acceptance of lookup candidates, by depth and rank: `get(d, r)` is the probability
/// that the rank-`r` lookup candidate at depth `d` is the one the target accepts, given that its
/// parent was accepted. Depths past the last row use the last row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LookupAcceptance {
    rows: Vec<Acceptance>,
}

impl LookupAcceptance {
    /// One acceptance vector per depth, depth 1 first.
    ///
    /// # Errors
    /// [`PlanError::EmptyAcceptance`] without rows, or a row's error (see [`Acceptance::new`]).
    pub fn new(rows: Vec<Vec<f64>>) -> Result<Self, PlanError> {
        if rows.is_empty() {
            return Err(PlanError::EmptyAcceptance);
        }
        let rows = rows
            .into_iter()
            .map(Acceptance::new)
            .collect::<Result<_, _>>()?;
        Ok(LookupAcceptance { rows })
    }

    /// The vector of every depth, depth 1 first.
    pub fn rows(&self) -> &[Acceptance] {
        &self.rows
    }

    /// The same acceptance `n` positions further on: depth `d` of the result reads depth `d + n`
    /// (the last row stays the last), for candidates that continue a copy already `n` tokens long.
    pub fn skip(&self, n: usize) -> LookupAcceptance {
        let from = n.min(self.rows.len() - 1);
        LookupAcceptance {
            rows: self.rows[from..].to_vec(),
        }
    }

    /// `p(depth, rank)`; depth 0 or rank 0 (the root) is 1.
    pub fn get(&self, depth: usize, rank: usize) -> f64 {
        if depth == 0 {
            return 1.0;
        }
        self.rows[depth.min(self.rows.len()) - 1].get(rank)
    }

    /// The weight of every node (the product of `get` along its path).
    pub fn weights(&self, nodes: &[LookupNode]) -> Vec<f64> {
        let mut w = Vec::with_capacity(nodes.len());
        for node in nodes {
            let above = node.parent.map_or(1.0, |p| w[p]);
            w.push(above * self.get(node.depth as usize, node.rank as usize));
        }
        w
    }
}

/// A draft tree summarised for merging with lookup candidates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DraftOption {
    pub plan: TreePlan,
    /// Expected tokens per step of the draft tree alone (the root counts 1).
    pub expected_tokens: f64,
    /// Expected accepted nodes on the draft's first-choice chain (rank 1 all the way down).
    pub first_chain: f64,
    /// Seconds of the draft's level passes (the catching up is charged per accepted token).
    pub draft_seconds: f64,
}

impl DraftOption {
    /// No draft tree: the root alone.
    pub fn plain() -> Self {
        DraftOption {
            plan: TreePlan::plain(),
            expected_tokens: 1.0,
            first_chain: 0.0,
            draft_seconds: 0.0,
        }
    }

    /// `plan` valued under the draft's acceptance `acc`, its level passes timed by `draft`.
    ///
    /// # Errors
    /// [`PlanError::OutOfRange`] when a level's width lies outside the draft table.
    pub fn new(plan: TreePlan, acc: &Acceptance, draft: &CostTable) -> Result<Self, PlanError> {
        let mut draft_seconds = 0.0;
        for level in plan.levels() {
            draft_seconds += draft.at(level.expand.len())?;
        }
        let mut first_chain = 0.0;
        let mut weight = 1.0;
        let mut node = 0;
        while plan.nodes[node].children > 0 {
            node = plan.children(node).start;
            weight *= acc.get(1);
            first_chain += weight;
        }
        Ok(DraftOption {
            expected_tokens: plan.expected_tokens_with(acc),
            first_chain,
            draft_seconds,
            plan,
        })
    }

    /// Nodes of the draft tree, root included.
    pub fn budget(&self) -> usize {
        self.plan.budget()
    }
}

/// The costs [`choose_step`] charges.
#[derive(Clone, Copy, Debug)]
pub struct StepCosts<'a> {
    /// One target pass over `n` tokens.
    pub target: &'a CostTable,
    /// The draft's cost of one more token in a pass (catching up with accepted tokens), `None`
    /// without a draft model.
    pub draft_marginal: Option<f64>,
    /// The most nodes a step may hold (room in the context, the batch).
    pub max_nodes: usize,
}

/// A step's merged tree: which draft option and which lookup nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct StepChoice {
    /// Index into the options, `None` for no draft tree.
    pub draft: Option<usize>,
    /// The lookup nodes to verify, in node order (a trie: every parent is in).
    pub lookup: Vec<usize>,
    /// Predicted tokens per step.
    pub expected_tokens: f64,
    /// Predicted seconds per step.
    pub step_seconds: f64,
}

impl StepChoice {
    /// Predicted tokens per second.
    pub fn tokens_per_second(&self) -> f64 {
        self.expected_tokens / self.step_seconds
    }
}

/// The merged step with the most predicted tokens per second (see the module docs) among every
/// draft option (or none) and every prefix of the lookup nodes by decreasing weight. Plain decoding
/// is always a candidate; combinations over `costs.max_nodes` nodes or outside the target table are
/// skipped (never extrapolated).
///
/// # Errors
/// [`PlanError::OutOfRange`] when the target table does not cover `n = 1`.
pub fn choose_step(
    options: &[DraftOption],
    lookup: &[LookupNode],
    acc: &LookupAcceptance,
    costs: &StepCosts,
) -> Result<StepChoice, PlanError> {
    let target = costs.target;
    let plain = target.at(1)?;
    let mut best = StepChoice {
        draft: None,
        lookup: Vec::new(),
        expected_tokens: 1.0,
        step_seconds: plain,
    };
    let mut best_k = 0;

    // Lookup nodes by decreasing weight (ties: node order, so parents first); nodes that cannot be
    // accepted are left out.
    let weights = acc.weights(lookup);
    let mut order: Vec<usize> = (0..lookup.len()).filter(|&i| weights[i] > 0.0).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut on_chain = vec![false; lookup.len()];
    for (i, node) in lookup.iter().enumerate() {
        on_chain[i] = node.rank == 1 && node.parent.is_none_or(|p| on_chain[p]);
    }
    // Prefix sums: total weight, root-level weight, first-chain weight.
    let mut prefix = vec![(0.0, 0.0, 0.0)];
    for &i in &order {
        let (w, a, c) = prefix[prefix.len() - 1];
        let wi = weights[i];
        prefix.push((
            w + wi,
            a + if lookup[i].parent.is_none() { wi } else { 0.0 },
            c + if on_chain[i] { wi } else { 0.0 },
        ));
    }

    let none = DraftOption::plain();
    let candidates =
        std::iter::once((None, &none)).chain(options.iter().enumerate().map(|(i, o)| (Some(i), o)));
    for (index, option) in candidates {
        let draft_extra = option.expected_tokens - 1.0;
        for (k, &(w, a, c)) in prefix.iter().enumerate() {
            let n = option.budget() + k;
            if n > costs.max_nodes.max(1) {
                break;
            }
            let Ok(pass) = target.at(n) else { break };
            let expected = 1.0 + w + (1.0 - a) * draft_extra;
            let redecoded = if k == 0 {
                (draft_extra - option.first_chain).max(0.0)
            } else {
                (w - c) + (1.0 - a) * draft_extra
            };
            let mut seconds = pass + option.draft_seconds;
            if n > 1 {
                seconds += redecoded * target.marginal(n);
            }
            if let Some(d) = costs.draft_marginal {
                seconds += (expected - 1.0) * d;
            }
            if expected / seconds > best.tokens_per_second() {
                best = StepChoice {
                    draft: index,
                    lookup: Vec::new(),
                    expected_tokens: expected,
                    step_seconds: seconds,
                };
                best_k = k;
            }
        }
    }
    let mut chosen: Vec<usize> = order[..best_k].to_vec();
    chosen.sort_unstable();
    best.lookup = chosen;
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain;

    fn chain_nodes(len: usize) -> Vec<LookupNode> {
        (0..len)
            .map(|i| LookupNode {
                parent: i.checked_sub(1),
                rank: 1,
                depth: i as u32 + 1,
            })
            .collect()
    }

    fn flat_target() -> CostTable {
        CostTable::new(vec![(1, 0.1), (64, 0.1 * 1.05)]).unwrap()
    }

    fn steep_target() -> CostTable {
        // Every token in the pass costs as much as the first.
        CostTable::new(vec![(1, 0.1), (64, 6.4)]).unwrap()
    }

    #[test]
    fn weights_multiply_along_the_path() {
        let acc = LookupAcceptance::new(vec![vec![0.5, 0.2], vec![0.8]]).unwrap();
        let nodes = vec![
            LookupNode {
                parent: None,
                rank: 1,
                depth: 1,
            },
            LookupNode {
                parent: Some(0),
                rank: 1,
                depth: 2,
            },
            LookupNode {
                parent: Some(1),
                rank: 1,
                depth: 3,
            },
            LookupNode {
                parent: None,
                rank: 2,
                depth: 1,
            },
        ];
        let w = acc.weights(&nodes);
        assert_eq!(w, vec![0.5, 0.4, 0.4 * 0.8, 0.2]);
        assert!(LookupAcceptance::new(vec![]).is_err());
        assert!(LookupAcceptance::new(vec![vec![0.7, 0.4]]).is_err());
    }

    #[test]
    fn a_free_pass_takes_every_useful_lookup_node() {
        let acc = LookupAcceptance::new(vec![vec![0.6], vec![0.9]]).unwrap();
        let target = flat_target();
        let costs = StepCosts {
            target: &target,
            draft_marginal: None,
            max_nodes: 64,
        };
        let c = choose_step(&[], &chain_nodes(8), &acc, &costs).unwrap();
        assert_eq!(c.draft, None);
        assert_eq!(c.lookup, (0..8).collect::<Vec<_>>());
        let w: f64 = acc.weights(&chain_nodes(8)).iter().sum();
        assert!((c.expected_tokens - 1.0 - w).abs() < 1e-12);
        // Room for three nodes: the root and two lookup nodes.
        let costs = StepCosts {
            max_nodes: 3,
            ..costs
        };
        assert_eq!(
            choose_step(&[], &chain_nodes(8), &acc, &costs)
                .unwrap()
                .lookup,
            vec![0, 1]
        );
    }

    #[test]
    fn an_expensive_pass_or_a_poor_match_means_plain_decoding() {
        let target = steep_target();
        let acc = LookupAcceptance::new(vec![vec![0.6], vec![0.9]]).unwrap();
        let costs = StepCosts {
            target: &target,
            draft_marginal: None,
            max_nodes: 64,
        };
        let c = choose_step(&[], &chain_nodes(8), &acc, &costs).unwrap();
        assert_eq!((c.draft, c.lookup.len()), (None, 0));
        assert_eq!(c.step_seconds, 0.1);
        let target = flat_target();
        let never = LookupAcceptance::new(vec![vec![0.0]]).unwrap();
        let costs = StepCosts {
            target: &target,
            ..costs
        };
        let c = choose_step(&[], &chain_nodes(8), &never, &costs).unwrap();
        assert_eq!((c.draft, c.lookup.len()), (None, 0));
    }

    #[test]
    fn a_likely_lookup_chain_displaces_the_draft_tree() {
        let target = flat_target();
        let draft_costs = CostTable::new(vec![(1, 0.002), (16, 0.0024)]).unwrap();
        let dacc = Acceptance::new(vec![0.6, 0.1]).unwrap();
        let option = DraftOption::new(chain(&dacc, 4), &dacc, &draft_costs).unwrap();
        assert!((option.first_chain - (0.6 + 0.36 + 0.216 + 0.1296)).abs() < 1e-12);
        assert!((option.draft_seconds - 0.008).abs() < 1e-12);
        let costs = StepCosts {
            target: &target,
            draft_marginal: Some(0.0001),
            max_nodes: 64,
        };
        // Nothing to look up: the draft chain.
        let c = choose_step(
            std::slice::from_ref(&option),
            &[],
            &LookupAcceptance::new(vec![vec![0.5]]).unwrap(),
            &costs,
        )
        .unwrap();
        assert_eq!((c.draft, c.lookup.len()), (Some(0), 0));
        // A copying conversation: lookup alone, no draft pass.
        let sure = LookupAcceptance::new(vec![vec![0.95]]).unwrap();
        let c = choose_step(
            std::slice::from_ref(&option),
            &chain_nodes(12),
            &sure,
            &costs,
        )
        .unwrap();
        assert_eq!((c.draft, c.lookup.len()), (None, 12));
        // A doubtful first token with a sure continuation: both, the draft beside the lookup
        // chain for when its first token fails.
        let doubtful = LookupAcceptance::new(vec![vec![0.3], vec![0.95]]).unwrap();
        let c = choose_step(
            std::slice::from_ref(&option),
            &chain_nodes(12),
            &doubtful,
            &costs,
        )
        .unwrap();
        assert_eq!((c.draft, c.lookup.len()), (Some(0), 12));
        let w: f64 = doubtful.weights(&chain_nodes(12)).iter().sum();
        let want = 1.0 + w + 0.7 * (option.expected_tokens - 1.0);
        assert!((c.expected_tokens - want).abs() < 1e-12);
    }

    #[test]
    fn prefixes_follow_weight_and_stay_tries() {
        // A root sibling (rank 2) weighs more than the deep end of the first chain.
        let acc = LookupAcceptance::new(vec![vec![0.5, 0.3], vec![0.5]]).unwrap();
        let mut nodes = chain_nodes(4);
        nodes.push(LookupNode {
            parent: None,
            rank: 2,
            depth: 1,
        });
        // Weights: 0.5, 0.25, 0.125, 0.0625, 0.3. Each token adds 15 % to the pass: worth it for
        // the three heaviest (the sibling first), not for the deep end of the chain.
        let target = CostTable::new(vec![(1, 0.1), (16, 0.1 + 15.0 * 0.015)]).unwrap();
        let costs = StepCosts {
            target: &target,
            draft_marginal: None,
            max_nodes: 64,
        };
        let c = choose_step(&[], &nodes, &acc, &costs).unwrap();
        assert_eq!(c.lookup, vec![0, 1, 4]);
    }

    #[test]
    fn skipping_reads_deeper_rows() {
        let acc = LookupAcceptance::new(vec![vec![0.4], vec![0.6], vec![0.9]]).unwrap();
        let on = acc.skip(1);
        assert_eq!((on.get(1, 1), on.get(2, 1), on.get(5, 1)), (0.6, 0.9, 0.9));
        assert_eq!(acc.skip(7).get(1, 1), 0.9);
        assert_eq!(acc.skip(0), acc);
    }
}
