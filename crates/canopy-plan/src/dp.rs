//! The dynamic program of Sequoia (arXiv 2402.12374) over tree size, depth and rank.
//!
//! A tree's value is `1 + sum over the root's children c (rank r) of p[r] * value(subtree of c)`, so the
//! best tree of at most `m` nodes and depth `l` is built from best subtrees of depth `l - 1`:
//!
//! * `T[l][b][m]`: best value with at most `m` nodes, depth <= `l`, whose root has exactly `b` children;
//!   `T[l][1][m] = 1 + p[1] * G[l-1][m-1]` and
//!   `T[l][b][m] = max over y of T[l][b-1][y] + p[b] * G[l-1][m-y]` (rank `b`, the last child, gets `m - y`).
//! * `G[l][m] = max(G[l][m-1], max_b T[l][b][m])`, `G[l][1] = G[0][m] = 1`.
//!
//! Sizes mean "at most", so `G` is non-decreasing in `m`, and a tree is rebuilt from back-pointers with
//! the fewest nodes that reach the optimum (ties go to smaller trees and to fewer nodes under later ranks).
//! Work is `depth × branch × budget² / 2` multiply-adds; the inner max-plus loop runs in four lanes.
//!
//! A leaf limit adds a dimension: [`LeafTable`] keeps `H[l][m][k]` (at most `k` leaves) with the same
//! recurrences, the leaves of the children adding up. It costs `depth × branch × budget² × leaves² / 4`,
//! so it only runs when the unconstrained optimum has too many leaves (a limit of `L` leaves cannot bind
//! below `L + 2` nodes) and its work is at most [`EXACT_LEAF_WORK`]; above that [`crate::relax`] plans.

use crate::{Acceptance, TreePlan};

/// The most inner steps the exact leaf-limited program is given (about 3 ns each in a release build on
/// the 2-core build machine); larger problems go to the relaxation.
pub(crate) const EXACT_LEAF_WORK: f64 = 3e7;

/// Effective dimensions of a planning problem after removing limits that cannot matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    pub budget: usize,
    pub depth: usize,
    pub branch: usize,
}

impl Dims {
    pub fn new(acc: &Acceptance, budget: usize, max_depth: usize, max_branch: usize) -> Dims {
        let budget = budget.max(1);
        let depth = max_depth.min(budget - 1);
        let branch = max_branch.min(acc.useful_ranks()).min(budget - 1);
        if depth == 0 || branch == 0 {
            return Dims {
                budget,
                depth: 0,
                branch: 0,
            };
        }
        Dims {
            budget,
            depth,
            branch,
        }
    }
}

/// `max over i of a[i] + c * r[i]` and the last index reaching it (`a` and `r` have equal length >= 1).
#[inline]
fn max_plus(a: &[f64], r: &[f64], c: f64) -> (f64, usize) {
    debug_assert_eq!(a.len(), r.len());
    let mut lanes = [f64::NEG_INFINITY; 4];
    let chunks = a.len() / 4 * 4;
    for (ca, cr) in a[..chunks].chunks_exact(4).zip(r[..chunks].chunks_exact(4)) {
        for k in 0..4 {
            lanes[k] = lanes[k].max(ca[k] + c * cr[k]);
        }
    }
    let mut best = lanes[0].max(lanes[1]).max(lanes[2].max(lanes[3]));
    for i in chunks..a.len() {
        best = best.max(a[i] + c * r[i]);
    }
    let at = (0..a.len())
        .rev()
        .find(|&i| a[i] + c * r[i] == best)
        .unwrap_or(a.len() - 1);
    (best, at)
}

/// The unconstrained program for all depths `0..=dims.depth` and sizes `1..=dims.budget` at once.
///
/// Pruning that keeps it exact: if `p[b] <= p[i]` for every `i < b`, some optimal tree gives the rank-`b`
/// child no more nodes than any earlier sibling. (In an optimal tree every subtree is optimal for its
/// size, so its value is `G` of its size, non-decreasing in size; swapping a larger later subtree with a
/// smaller earlier one changes the value by `(p[i] - p[b]) * (G(big) - G(small)) >= 0`, and each swap
/// makes the size vector lexicographically larger, so swapping ends.) Then rank `b` gets at most
/// `(m - 1) / b` nodes, and for a non-increasing vector the work falls from `branch` to about
/// `ln(branch) + 0.6` times `depth × budget² / 2`.
pub(crate) struct Table {
    dims: Dims,
    /// `G[l][m]`, row length `budget + 1`.
    g: Vec<f64>,
    /// For `G[l][m]`: `(b, m_exact)`, the root's child count and the size at which this value was reached.
    choice: Vec<(u32, u32)>,
    /// For `T[l][b][m]`, `b >= 2`: `y`, the size given to the root and its first `b - 1` subtrees.
    split: Vec<u16>,
}

impl Table {
    pub fn build(acc: &Acceptance, dims: Dims) -> Table {
        let n = dims.budget;
        let row = n + 1;
        let mut g = vec![1.0; (dims.depth + 1) * row];
        let mut choice = vec![(0u32, 1u32); (dims.depth + 1) * row];
        let mut split = vec![0u16; dims.depth * dims.branch * row];
        let mut reversed = vec![0.0; row];
        let mut prev = vec![f64::NEG_INFINITY; row];
        let mut cur = vec![f64::NEG_INFINITY; row];
        let mut best = vec![f64::NEG_INFINITY; row];
        let mut best_b = vec![0u32; row];
        for l in 1..=dims.depth {
            let (below, here) = g.split_at_mut(l * row);
            let gp = &below[(l - 1) * row..];
            for (i, slot) in reversed.iter_mut().enumerate() {
                *slot = gp[n - i];
            }
            let p1 = acc.get(1);
            prev.fill(f64::NEG_INFINITY);
            best.fill(f64::NEG_INFINITY);
            for m in 2..=n {
                prev[m] = 1.0 + p1 * gp[m - 1];
                best[m] = prev[m];
                best_b[m] = 1;
            }
            let mut lowest = p1;
            for b in 2..=dims.branch {
                let pb = acc.get(b);
                let dominated = pb <= lowest;
                lowest = lowest.min(pb);
                cur.fill(f64::NEG_INFINITY);
                let base = ((l - 1) * dims.branch + (b - 1)) * row;
                for m in b + 1..=n {
                    // y in lo..m: T[b-1][y] + p[b] * G[l-1][m-y], and G[l-1][m-y] = reversed[n-m+y].
                    // When p[b] is no larger than any earlier rank's, some optimal tree gives rank b the
                    // smallest subtree (see `Table`), so at most (m - 1) / b nodes.
                    let lo = if dominated { b.max(m - (m - 1) / b) } else { b };
                    let (value, at) = max_plus(&prev[lo..m], &reversed[n - m + lo..n], pb);
                    cur[m] = value;
                    split[base + m] = (lo + at) as u16;
                    if value > best[m] {
                        best[m] = value;
                        best_b[m] = b as u32;
                    }
                }
                std::mem::swap(&mut prev, &mut cur);
            }
            let gl = &mut here[..row];
            let cl = &mut choice[l * row..(l + 1) * row];
            for m in 2..=n {
                if best[m] > gl[m - 1] {
                    gl[m] = best[m];
                    cl[m] = (best_b[m], m as u32);
                } else {
                    gl[m] = gl[m - 1];
                    cl[m] = cl[m - 1];
                }
            }
        }
        Table {
            dims,
            g,
            choice,
            split,
        }
    }

    /// Best value with at most `m` nodes and depth at most `l`.
    pub fn value(&self, l: usize, m: usize) -> f64 {
        self.g[l * (self.dims.budget + 1) + m]
    }

    /// The `(b, m_exact)` choice behind `value(l, m)`; equal choices mean equal trees.
    pub fn choice(&self, l: usize, m: usize) -> (u32, u32) {
        self.choice[l * (self.dims.budget + 1) + m]
    }

    /// The nodes of the tree behind `value(l, m)` and, in `expanded`, how many nodes get children at each
    /// depth (`expanded.len()` is the tree's depth). Cheaper than [`Table::plan`]: nothing is allocated
    /// once the buffers have grown.
    pub fn profile(
        &self,
        l: usize,
        m: usize,
        expanded: &mut Vec<usize>,
        queue: &mut Vec<(usize, usize)>,
    ) -> usize {
        let row = self.dims.budget + 1;
        expanded.clear();
        queue.clear();
        queue.push((l, m));
        let mut i = 0;
        while i < queue.len() {
            let (nl, nm) = queue[i];
            i += 1;
            let (b, me) = if nl == 0 { (0, 1) } else { self.choice(nl, nm) };
            let b = b as usize;
            if b == 0 {
                continue;
            }
            let depth = l - nl;
            if expanded.len() <= depth {
                expanded.resize(depth + 1, 0);
            }
            expanded[depth] += 1;
            let first = queue.len();
            queue.resize(first + b, (nl - 1, 0));
            let mut rest = me as usize;
            for r in (2..=b).rev() {
                let y = self.split[((nl - 1) * self.dims.branch + (r - 1)) * row + rest] as usize;
                queue[first + r - 1].1 = rest - y;
                rest = y;
            }
            queue[first].1 = rest - 1;
        }
        queue.len()
    }

    /// Rebuilds the tree behind `value(l, m)`.
    pub fn plan(&self, acc: &Acceptance, l: usize, m: usize) -> TreePlan {
        let row = self.dims.budget + 1;
        let mut specs = vec![(l, m)];
        let mut counts = Vec::new();
        let mut sizes = Vec::new();
        let mut i = 0;
        while i < specs.len() {
            let (l, m) = specs[i];
            i += 1;
            let (b, me) = if l == 0 { (0, 1) } else { self.choice(l, m) };
            let b = b as usize;
            counts.push(b as u32);
            sizes.clear();
            sizes.resize(b, 0);
            let mut rest = me as usize;
            for r in (2..=b).rev() {
                let y = self.split[((l - 1) * self.dims.branch + (r - 1)) * row + rest] as usize;
                sizes[r - 1] = rest - y;
                rest = y;
            }
            if b >= 1 {
                sizes[0] = rest - 1;
            }
            specs.extend(sizes.iter().map(|&s| (l - 1, s)));
        }
        TreePlan::from_children_counts(&counts, acc).expect("back-pointers describe one tree")
    }
}

/// The program with a leaf dimension: `H[l][m][k]`, at most `m` nodes and at most `k` leaves.
pub(crate) struct LeafTable {
    dims: Dims,
    leaves: usize,
    /// `H[l][m][k]`, index `(l * (budget + 1) + m) * (leaves + 1) + k`.
    h: Vec<f64>,
    /// For `H[l][m][k]`: `(b, m_exact, k_exact)`.
    choice: Vec<(u32, u32, u32)>,
    /// For `T[l][b][m][k]`, `b >= 2`: `(y, j)` given to the root and its first `b - 1` subtrees.
    split: Vec<(u16, u16)>,
}

impl LeafTable {
    /// Estimated inner steps of [`LeafTable::build`].
    pub fn work(dims: Dims, leaves: usize) -> f64 {
        let n = dims.budget as f64;
        let k = leaves.min(dims.budget) as f64;
        dims.depth as f64 * dims.branch.saturating_sub(1).max(1) as f64 * n * n * k * k / 4.0
    }

    /// Callers check [`LeafTable::work`] against [`EXACT_LEAF_WORK`] first: the time grows as its square.
    pub fn build(acc: &Acceptance, dims: Dims, leaves: usize) -> LeafTable {
        let n = dims.budget;
        let kl = leaves.min(n);
        let (row, col) = (n + 1, kl + 1);
        let plane = row * col;
        let mut h = vec![1.0; (dims.depth + 1) * plane];
        let mut choice = vec![(0u32, 1u32, 1u32); (dims.depth + 1) * plane];
        let mut split = vec![(0u16, 0u16); dims.depth * dims.branch * plane];
        let mut prev = vec![f64::NEG_INFINITY; plane];
        let mut cur = vec![f64::NEG_INFINITY; plane];
        let mut best = vec![f64::NEG_INFINITY; plane];
        let mut best_b = vec![0u32; plane];
        let mut reversed = vec![0.0; col];
        for l in 1..=dims.depth {
            let (below, here) = h.split_at_mut(l * plane);
            let hp = &below[(l - 1) * plane..];
            let p1 = acc.get(1);
            prev.fill(f64::NEG_INFINITY);
            best.fill(f64::NEG_INFINITY);
            for m in 2..=n {
                for k in 1..=kl {
                    let v = 1.0 + p1 * hp[(m - 1) * col + k];
                    prev[m * col + k] = v;
                    best[m * col + k] = v;
                    best_b[m * col + k] = 1;
                }
            }
            for b in 2..=dims.branch {
                let pb = acc.get(b);
                cur.fill(f64::NEG_INFINITY);
                let base = ((l - 1) * dims.branch + (b - 1)) * plane;
                for m in b + 1..=n {
                    for k in b..=kl {
                        let mut top = f64::NEG_INFINITY;
                        let mut arg = (0u16, 0u16);
                        for y in b..m {
                            // j in (b-1)..k: T[b-1][y][j] + p[b] * H[l-1][m-y][k-j].
                            let child = &hp[(m - y) * col..(m - y + 1) * col];
                            for (i, slot) in reversed[..k].iter_mut().enumerate() {
                                *slot = child[k - i];
                            }
                            // reversed[i] = H[m-y][k-i]; j = i.
                            let a = &prev[y * col + (b - 1)..y * col + k];
                            let (v, at) = max_plus(a, &reversed[b - 1..k], pb);
                            if v > top {
                                top = v;
                                arg = (y as u16, (b - 1 + at) as u16);
                            }
                        }
                        cur[m * col + k] = top;
                        split[base + m * col + k] = arg;
                        if top > best[m * col + k] {
                            best[m * col + k] = top;
                            best_b[m * col + k] = b as u32;
                        }
                    }
                }
                std::mem::swap(&mut prev, &mut cur);
            }
            let hl = &mut here[..plane];
            let cl = &mut choice[l * plane..(l + 1) * plane];
            for m in 2..=n {
                for k in 1..=kl {
                    let at = m * col + k;
                    let mut value = best[at];
                    let mut pick = (best_b[at], m as u32, k as u32);
                    let fewer_nodes = (m - 1) * col + k;
                    if hl[fewer_nodes] >= value {
                        value = hl[fewer_nodes];
                        pick = cl[fewer_nodes];
                    }
                    if k > 1 && hl[at - 1] >= value {
                        value = hl[at - 1];
                        pick = cl[at - 1];
                    }
                    hl[at] = value;
                    cl[at] = pick;
                }
            }
        }
        LeafTable {
            dims,
            leaves: kl,
            h,
            choice,
            split,
        }
    }

    fn index(&self, l: usize, m: usize, k: usize) -> usize {
        (l * (self.dims.budget + 1) + m) * (self.leaves + 1) + k
    }

    /// Best value with at most `m` nodes, `k` leaves and depth `l`.
    pub fn value(&self, l: usize, m: usize, k: usize) -> f64 {
        self.h[self.index(l, m, k.min(self.leaves))]
    }

    /// Rebuilds the tree behind `value(l, m, k)`.
    pub fn plan(&self, acc: &Acceptance, l: usize, m: usize, k: usize) -> TreePlan {
        let plane = (self.dims.budget + 1) * (self.leaves + 1);
        let mut specs = vec![(l, m, k.min(self.leaves))];
        let mut counts = Vec::new();
        let mut sizes = Vec::new();
        let mut i = 0;
        while i < specs.len() {
            let (l, m, k) = specs[i];
            i += 1;
            let (b, me, ke) = if l == 0 {
                (0, 1, 1)
            } else {
                self.choice[self.index(l, m, k)]
            };
            let b = b as usize;
            counts.push(b as u32);
            sizes.clear();
            sizes.resize(b, (0, 0));
            let (mut rest_m, mut rest_k) = (me as usize, ke as usize);
            for r in (2..=b).rev() {
                let at = ((l - 1) * self.dims.branch + (r - 1)) * plane
                    + rest_m * (self.leaves + 1)
                    + rest_k;
                let (y, j) = self.split[at];
                let (y, j) = (y as usize, j as usize);
                sizes[r - 1] = (rest_m - y, rest_k - j);
                rest_m = y;
                rest_k = j;
            }
            if b >= 1 {
                sizes[0] = (rest_m - 1, rest_k);
            }
            specs.extend(sizes.iter().map(|&(s, q)| (l - 1, s, q)));
        }
        TreePlan::from_children_counts(&counts, acc).expect("back-pointers describe one tree")
    }
}
