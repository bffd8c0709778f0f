//! The leaf-limited problem at large budgets, by Lagrangian relaxation of both counting limits.
//!
//! A tree is a set `S` of nodes of the infinite tree of candidates (every node has children of ranks
//! `1..=branch`, down to depth `depth`), closed under taking the parent and the previous sibling; a node's
//! weight `w(v)` is the product of `p[rank]` on its path and the tree's value is `sum over S of w(v)`.
//! Its leaves are `1 + R(S)`, `R` the number of nodes of rank >= 2 (every node with `b` children adds
//! `b - 1` leaves). So the problem is
//!
//! `max sum_S w(v)` over closed `S` with `|S| <= budget` and `R(S) <= leaves - 1`.
//!
//! Pricing a node at `alpha` and a rank->=2 node at `lambda` more leaves a closure problem without side
//! limits, and the closure order is itself a tree (a node needs its previous sibling, a first child
//! needs its parent: the left-child right-sibling tree), so it is solved exactly by one pass,
//! `f(v) = w(v) - alpha - lambda [rank >= 2] + max(0, f(first child)) + max(0, f(next sibling))`,
//! visiting only nodes whose subtrees can pay for themselves. For every `alpha, lambda >= 0`,
//!
//! `value(best feasible tree) <= Phi(alpha, lambda) = f(root) + alpha * budget + lambda * (leaves - 1)`,
//!
//! so the least `Phi` met is a proven upper bound. Bisection on `alpha` (the budget's subgradient
//! `budget - |S|`) inside bisection on `lambda` (the leaves' `leaves - 1 - R(S)`) approaches the dual
//! optimum; every feasible closure met on the way is completed greedily (the heaviest next child that
//! fits both limits) and the best completed tree is returned with the bound.
//!
//! A penalty on leaves cannot go into the size-indexed program of [`crate::dp`] instead: that program
//! scales a subtree's value by its root's path probability, and the penalty of a leaf does not scale.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::dp::Dims;
use crate::{Acceptance, TreePlan};

/// One node of a closure, in the order the pass visits it.
#[derive(Clone, Copy, Debug)]
struct Rec {
    parent: u32,
    rank: u32,
    depth: u32,
    weight: f64,
}

/// One evaluation of the dual function.
#[derive(Clone, Copy, Debug)]
struct Eval {
    /// `Phi(alpha, lambda)`, an upper bound on the best feasible value.
    phi: f64,
    /// `|S|`.
    size: usize,
    /// `R(S)`: nodes of rank >= 2 (the closure has `R + 1` leaves).
    extra: usize,
}

/// A leaf-limited plan and the proven bound on the optimum it approaches.
#[derive(Clone, Debug)]
pub(crate) struct Relaxed {
    pub plan: TreePlan,
    pub upper_bound: f64,
    /// The leaf price of the least bound found: a hint for a neighbouring problem.
    pub lambda: f64,
}

/// How many dual evaluations a solve may spend and how close it must get.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Effort {
    /// Bisection steps on `lambda`.
    pub lambda_steps: usize,
    /// Bisection steps on `alpha` per `lambda`.
    pub alpha_steps: usize,
    /// Stop once `(bound - value) / bound` is below this.
    pub gap: f64,
}

impl Effort {
    /// For [`crate::optimal_tree`]: as close as the duality gap allows.
    pub const PRECISE: Effort = Effort {
        lambda_steps: 48,
        alpha_steps: 48,
        gap: 1e-6,
    };
    /// For [`crate::choose`], which solves many budgets and depths: near enough to rank them.
    pub const COARSE: Effort = Effort {
        lambda_steps: 24,
        alpha_steps: 36,
        gap: 1e-4,
    };
}

pub(crate) struct Relaxation {
    dims: Dims,
    leaves: usize,
    /// `p[r]` for `r in 0..=branch` (`p[0] = 1`).
    p: Vec<f64>,
    /// `tail[r] = sum of p[s] for s in r..=branch`, and `tail[branch + 1] = 0`.
    tail: Vec<f64>,
    /// `top[r] = max of p[s] for s in r..=branch`, and `top[branch + 1] = 0`.
    top: Vec<f64>,
    /// `reach[l]`: the most any tree of depth <= `l` is worth, `1 + tail[1] * reach[l - 1]`.
    reach: Vec<f64>,
    /// `chain[l] = 1 + p[1] + ... + p[1]^l`: the most a node and its first children down `l` levels are worth.
    chain: Vec<f64>,
    arena: Vec<Rec>,
    alpha: f64,
    lambda: f64,
    /// The best leaf price found by [`Relaxation::solve`].
    price: f64,
    /// `min over alpha of Phi` at `price`.
    price_phi: f64,
    visits: usize,
    cap: usize,
    aborted: bool,
}

impl Relaxation {
    pub fn new(acc: &Acceptance, dims: Dims, leaves: usize) -> Relaxation {
        let b = dims.branch;
        let p: Vec<f64> = (0..=b).map(|r| acc.get(r)).collect();
        let mut tail = vec![0.0f64; b + 2];
        let mut top = vec![0.0f64; b + 2];
        for r in (1..=b).rev() {
            tail[r] = tail[r + 1] + p[r];
            top[r] = top[r + 1].max(p[r]);
        }
        let mut reach = vec![1.0; dims.depth + 1];
        let mut chain = vec![1.0; dims.depth + 1];
        for l in 1..=dims.depth {
            reach[l] = 1.0 + tail[1] * reach[l - 1];
            chain[l] = 1.0 + p[1] * chain[l - 1];
        }
        Relaxation {
            dims,
            leaves,
            p,
            tail,
            top,
            reach,
            chain,
            arena: Vec::new(),
            alpha: 1.0,
            lambda: 0.0,
            price: 0.0,
            price_phi: f64::INFINITY,
            visits: 0,
            // Generous: a closure near the budget visits a few times its size.
            cap: 256 * dims.budget + 100_000,
            aborted: false,
        }
    }

    /// Whether the children of a node of `weight`, each with `below` levels under it, may add value
    /// (`f(first child) > 0`). Sound: `false` only when that `f` is at most 0.
    ///
    /// Every node below weighs at most `weight * top[1]`; all of them together, `weight * tail[1] *
    /// reach[below]`. Sharper when rank->=2 nodes cannot pay their price: a rank->=2 node of weight `z`
    /// heads a first-child chain worth at most `z * chain[l]`, so if no such head below is worth
    /// `lambda`, heads add nothing and the first child's own chain is all there is.
    #[inline]
    fn children_may_pay(&self, weight: f64, below: usize) -> bool {
        let (alpha, lambda) = (self.alpha, self.lambda);
        if weight * self.top[1] <= alpha || weight * self.tail[1] * self.reach[below] <= alpha {
            return false;
        }
        let heads_worthless = weight * self.top[2] * self.chain[below] <= lambda;
        !(heads_worthless && weight * self.p[1] * self.chain[below] <= alpha)
    }

    /// Whether the siblings of ranks `next..` under a parent of `parent_weight`, each with `below` levels
    /// under it, may add value (`f(sibling of rank next) > 0`). Sound as [`Self::children_may_pay`]:
    /// each sibling costs `alpha + lambda`, and when no head inside them pays, each is worth at most
    /// `parent_weight * p[s] * chain[below]`.
    #[inline]
    fn siblings_may_pay(&self, parent_weight: f64, next: usize, below: usize) -> bool {
        let (alpha, lambda) = (self.alpha, self.lambda);
        let most = parent_weight * self.top[next];
        if most <= alpha || parent_weight * self.tail[next] * self.reach[below] <= alpha + lambda {
            return false;
        }
        let inner = if below == 0 {
            0.0
        } else {
            self.chain[below - 1]
        };
        let heads_worthless = most * self.top[2] * inner <= lambda;
        !(heads_worthless && most * self.chain[below] <= alpha + lambda)
    }

    /// `f` of the node of `weight` at `depth` with `rank` under a parent of `parent_weight`; the nodes of
    /// its best closure (its subtree and its later siblings') are left at the end of the arena.
    fn visit(
        &mut self,
        weight: f64,
        parent_weight: f64,
        depth: usize,
        rank: usize,
        parent: u32,
    ) -> f64 {
        self.visits += 1;
        if self.visits > self.cap {
            self.aborted = true;
            return f64::NEG_INFINITY;
        }
        let me = self.arena.len() as u32;
        self.arena.push(Rec {
            parent,
            rank: rank as u32,
            depth: depth as u32,
            weight,
        });
        let mut f = weight - self.alpha - if rank >= 2 { self.lambda } else { 0.0 };
        if depth < self.dims.depth && self.children_may_pay(weight, self.dims.depth - depth - 1) {
            let Some(g) = self.visit_kept_if_paying(weight * self.p[1], weight, depth + 1, 1, me)
            else {
                return f64::NEG_INFINITY;
            };
            f += g;
        }
        if rank >= 1 && rank < self.dims.branch {
            let next = rank + 1;
            if self.siblings_may_pay(parent_weight, next, self.dims.depth - depth) {
                let weight = parent_weight * self.p[next];
                let Some(g) = self.visit_kept_if_paying(weight, parent_weight, depth, next, parent)
                else {
                    return f64::NEG_INFINITY;
                };
                f += g;
            }
        }
        f
    }

    /// [`Relaxation::visit`], keeping the visited closure in the arena only when its `f` is positive:
    /// what it adds to its caller (0 when dropped), or `None` once the visit cap is hit.
    fn visit_kept_if_paying(
        &mut self,
        weight: f64,
        parent_weight: f64,
        depth: usize,
        rank: usize,
        parent: u32,
    ) -> Option<f64> {
        let mark = self.arena.len();
        let g = self.visit(weight, parent_weight, depth, rank, parent);
        if self.aborted {
            return None;
        }
        if g > 0.0 {
            Some(g)
        } else {
            self.arena.truncate(mark);
            Some(0.0)
        }
    }

    /// The dual function at `(alpha, lambda)`, `alpha > 0`; `None` when the closure grows past the visit
    /// cap (then `alpha` or `lambda` is far too small). The closure is left in the arena.
    fn eval(&mut self, alpha: f64, lambda: f64) -> Option<Eval> {
        self.alpha = alpha;
        self.lambda = lambda;
        self.visits = 0;
        self.aborted = false;
        self.arena.clear();
        let f = self.visit(1.0, 0.0, 0, 0, u32::MAX);
        if self.aborted {
            return None;
        }
        let extra = self.arena.iter().filter(|r| r.rank >= 2).count();
        Some(Eval {
            phi: f + alpha * self.dims.budget as f64 + lambda * (self.leaves - 1) as f64,
            size: self.arena.len(),
            extra,
        })
    }

    /// Solves within `effort`; `floor_bound` is a bound already known (the unconstrained optimum).
    /// `hint`, the leaf price of a neighbouring problem, narrows the search for the price to within a
    /// factor 16 of it (the bound stays sound, only possibly less tight).
    pub fn solve(
        &mut self,
        acc: &Acceptance,
        floor_bound: f64,
        effort: Effort,
        hint: Option<f64>,
    ) -> Relaxed {
        self.price_phi = f64::INFINITY;
        let mut search = Search {
            bound: floor_bound,
            best: None,
        };
        // The root completed greedily is feasible (first children add no leaf): a tree to start from.
        let root = Rec {
            parent: u32::MAX,
            rank: 0,
            depth: 0,
            weight: 1.0,
        };
        search.offer_plan(self.complete(&[root], acc));
        // g(lambda) = min over alpha of Phi is convex, so unimodal in log(lambda) too: golden-section
        // search on log(lambda), from no price at all to a price no rank->=2 node can pay.
        let g = |me: &mut Relaxation, search: &mut Search, lambda: f64| {
            let (_, _, phi) = me.fit_budget(lambda, effort, search, acc);
            if phi < me.price_phi {
                (me.price, me.price_phi) = (lambda, phi);
            }
            phi
        };
        let (mut a, mut b) = match hint {
            Some(lambda) if lambda > 0.0 => ((lambda / 16.0).ln(), (lambda * 16.0).ln()),
            _ => {
                g(self, &mut search, 0.0);
                (1e-12f64.ln(), (self.reach[self.dims.depth] * 2.0).ln())
            }
        };
        const INV_PHI: f64 = 0.618_033_988_749_894_9;
        let mut c = b - INV_PHI * (b - a);
        let mut d = a + INV_PHI * (b - a);
        let mut gc = g(self, &mut search, c.exp());
        let mut gd = g(self, &mut search, d.exp());
        for _ in 0..effort.lambda_steps {
            if search.gap() < effort.gap || b - a < 1e-9 {
                break;
            }
            if gc <= gd {
                (b, d, gd) = (d, c, gc);
                c = b - INV_PHI * (b - a);
                gc = g(self, &mut search, c.exp());
            } else {
                (a, c, gc) = (c, d, gd);
                d = a + INV_PHI * (b - a);
                gd = g(self, &mut search, d.exp());
            }
        }
        Relaxed {
            lambda: self.price,
            ..search.finish()
        }
    }

    /// For fixed `lambda`, the least `alpha` whose closure fits the budget, by bisection in log space.
    /// Records every bound and every feasible closure in `search`; returns the fitting evaluation, its
    /// `alpha` and the least `Phi` met (about `min over alpha of Phi(alpha, lambda)`).
    fn fit_budget(
        &mut self,
        lambda: f64,
        effort: Effort,
        search: &mut Search,
        acc: &Acceptance,
    ) -> (Eval, f64, f64) {
        let n = self.dims.budget;
        let (mut lo, mut hi) = (1e-18f64, 1.0f64);
        let mut fit = self
            .eval(hi, lambda)
            .expect("the root alone never reaches the cap");
        search.offer_bound(fit.phi);
        let mut least = fit.phi;
        let mut fit_alpha = hi;
        let mut fit_tree: Option<Vec<Rec>> = None;
        for _ in 0..effort.alpha_steps {
            let mid = (lo * hi).sqrt();
            match self.eval(mid, lambda) {
                Some(e) => {
                    search.offer_bound(e.phi);
                    least = least.min(e.phi);
                    if e.size <= n {
                        hi = mid;
                        fit = e;
                        fit_alpha = mid;
                        fit_tree = Some(self.arena.clone());
                        if e.size == n {
                            break;
                        }
                    } else {
                        lo = mid;
                    }
                }
                None => lo = mid,
            }
            if hi / lo < 1.0 + 1e-10 {
                break;
            }
        }
        if fit.extra < self.leaves {
            let records = match fit_tree {
                Some(t) => t,
                None => {
                    self.eval(fit_alpha, lambda);
                    self.arena.clone()
                }
            };
            let plan = self.complete(&records, acc);
            search.offer_plan(plan);
        }
        (fit, fit_alpha, least)
    }

    /// Completes a feasible closure greedily: the heaviest next child (a first child of a leaf, which
    /// adds no leaf, or the next sibling of a last child, which adds one) that fits, until the budget is
    /// spent or nothing adds value.
    fn complete(&self, records: &[Rec], acc: &Acceptance) -> TreePlan {
        let (n, depth_limit, branch) = (self.dims.budget, self.dims.depth, self.dims.branch);
        let mut nodes: Vec<(f64, u32, Vec<u32>)> = records
            .iter()
            .map(|r| (r.weight, r.depth, Vec::new()))
            .collect();
        for (i, r) in records.iter().enumerate().skip(1) {
            nodes[r.parent as usize].2.push(i as u32);
        }
        let mut leaves = nodes.iter().filter(|v| v.2.is_empty()).count();
        let mut heap = BinaryHeap::new();
        let offer = |heap: &mut BinaryHeap<Candidate>, nodes: &[(f64, u32, Vec<u32>)], v: usize| {
            let (weight, depth, kids) = &nodes[v];
            let rank = kids.len() + 1;
            if rank <= branch && (rank > 1 || (*depth as usize) < depth_limit) {
                let w = weight * self.p[rank];
                if w > 0.0 {
                    heap.push(Candidate {
                        weight: w,
                        parent: v as u32,
                        rank: rank as u32,
                    });
                }
            }
        };
        for v in 0..nodes.len() {
            offer(&mut heap, &nodes, v);
        }
        while nodes.len() < n {
            let Some(c) = heap.pop() else { break };
            let v = c.parent as usize;
            if nodes[v].2.len() + 1 != c.rank as usize {
                continue;
            }
            if c.rank >= 2 {
                if leaves >= self.leaves {
                    continue;
                }
                leaves += 1;
            }
            let u = nodes.len();
            let depth = nodes[v].1 + 1;
            nodes.push((c.weight, depth, Vec::new()));
            nodes[v].2.push(u as u32);
            offer(&mut heap, &nodes, u);
            offer(&mut heap, &nodes, v);
        }
        let mut counts = Vec::with_capacity(nodes.len());
        let mut queue = vec![0u32];
        let mut i = 0;
        while i < queue.len() {
            let kids = &nodes[queue[i] as usize].2;
            counts.push(kids.len() as u32);
            queue.extend_from_slice(kids);
            i += 1;
        }
        TreePlan::from_children_counts(&counts, acc).expect("a closure is one tree")
    }
}

/// A child that may be added to a tree being completed, ordered by weight.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    weight: f64,
    parent: u32,
    rank: u32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Heaviest first; among equals the earlier parent and the lower rank, so the result is
        // deterministic.
        self.weight
            .total_cmp(&other.weight)
            .then(other.parent.cmp(&self.parent))
            .then(other.rank.cmp(&self.rank))
    }
}

/// The best tree and the least bound met so far.
struct Search {
    bound: f64,
    best: Option<TreePlan>,
}

impl Search {
    fn offer_bound(&mut self, phi: f64) {
        self.bound = self.bound.min(phi);
    }

    fn offer_plan(&mut self, plan: TreePlan) {
        if self
            .best
            .as_ref()
            .is_none_or(|b| plan.expected_tokens > b.expected_tokens)
        {
            self.best = Some(plan);
        }
    }

    fn gap(&self) -> f64 {
        match &self.best {
            Some(b) => (self.bound - b.expected_tokens) / self.bound,
            None => 1.0,
        }
    }

    fn finish(self) -> Relaxed {
        let plan = self.best.expect("the completed root is always offered");
        let upper_bound = self.bound.max(plan.expected_tokens);
        Relaxed {
            plan,
            upper_bound,
            lambda: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::{LeafTable, Table};

    /// On problems small enough for the exact leaf-limited program, the relaxation's tree is within its
    /// reported gap of the exact optimum, and its bound is never below it.
    #[test]
    fn relaxation_matches_the_exact_program_within_its_gap() {
        let vectors: [&[f64]; 4] = [
            &[0.6, 0.1, 0.05, 0.03, 0.02, 0.01],
            &[0.5, 0.2, 0.1, 0.05, 0.03, 0.02],
            &[0.8, 0.1, 0.05],
            &[0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        ];
        let cases = [
            (64, 8, 6, 8),
            (96, 6, 6, 16),
            (128, 5, 4, 24),
            (80, 10, 6, 40),
        ];
        let mut worst: f64 = 0.0;
        for p in vectors {
            let acc = Acceptance::new(p.to_vec()).unwrap();
            for (budget, depth, branch, leaves) in cases {
                let dims = Dims::new(&acc, budget, depth, branch);
                let free = Table::build(&acc, dims).value(dims.depth, dims.budget);
                let exact = LeafTable::build(&acc, dims, leaves).value(dims.depth, budget, leaves);
                let relaxed =
                    Relaxation::new(&acc, dims, leaves).solve(&acc, free, Effort::PRECISE, None);
                let value = relaxed.plan.expected_tokens;
                let tol = 1e-12 * exact;
                assert!(relaxed.plan.leaves() <= leaves && relaxed.plan.budget() <= budget);
                assert!(value <= exact + tol, "{value} above the optimum {exact}");
                assert!(
                    relaxed.upper_bound >= exact - tol,
                    "bound {} below the optimum {exact}",
                    relaxed.upper_bound
                );
                let gap = (relaxed.upper_bound - value) / relaxed.upper_bound;
                assert!(exact - value <= gap * relaxed.upper_bound + tol);
                worst = worst.max((exact - value) / exact);
            }
        }
        assert!(worst < 1e-2, "worst loss against the exact optimum {worst}");
    }
}
