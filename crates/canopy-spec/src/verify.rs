//! The verification walk (BRIEF §2): it accepts draft tokens so that the output is distributed
//! exactly as the target's own sampling, and equals the target's greedy output at temperature 0.
//!
//! Both walks ask for the target's verdict at a node only when they reach it: most nodes of a tree
//! are never visited, and their distributions are never computed.

use rand::Rng;

use crate::sampling::Dist;
use crate::Token;

/// A drafted tree as the walk sees it: node 0 is the root, `children[v]` in draw order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DraftTree {
    pub tokens: Vec<Token>,
    pub children: Vec<Vec<usize>>,
    /// The parent of every node (`None` for the root).
    pub parents: Vec<Option<usize>>,
}

impl DraftTree {
    /// A tree holding only the root.
    pub fn root(token: Token) -> DraftTree {
        DraftTree {
            tokens: vec![token],
            children: vec![Vec::new()],
            parents: vec![None],
        }
    }

    /// Adds `token` as the next child of `parent`; returns the new node's index.
    pub fn push(&mut self, parent: usize, token: Token) -> usize {
        let id = self.tokens.len();
        self.tokens.push(token);
        self.children.push(Vec::new());
        self.parents.push(Some(parent));
        self.children[parent].push(id);
        id
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens from below the root down to `v` included (empty for the root): what the tree
    /// adds to the context before the position after `v`.
    pub fn path_tokens(&self, mut v: usize) -> Vec<Token> {
        let mut path = Vec::new();
        while let Some(p) = self.parents[v] {
            path.push(self.tokens[v]);
            v = p;
        }
        path.reverse();
        path
    }
}

/// The outcome of one walk.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Walk {
    /// Accepted nodes below the root, in order.
    pub path: Vec<usize>,
    /// The token the target adds after the last accepted node (bonus or correction).
    pub bonus: Token,
    /// For every visited node that had children: (number of children, rank accepted (1-based) or
    /// `None` when all were rejected). Feeds the acceptance estimate.
    pub visits: Vec<(usize, Option<usize>)>,
    /// Greedy walks, filled by the caller that holds the logits: the target's top-2 margin at the
    /// root and at every accepted node, one per output token.
    pub margins: Vec<f32>,
}

/// Greedy walk: follow the child equal to the target's argmax; end with the target's argmax.
///
/// `target_argmax(v)` is the target's most likely next token after node `v`; it is called once for
/// each visited node (the root, then every accepted node), in that order.
pub fn walk_greedy(tree: &DraftTree, mut target_argmax: impl FnMut(usize) -> Token) -> Walk {
    let mut walk = Walk::default();
    let mut v = 0;
    loop {
        let want = target_argmax(v);
        let kids = &tree.children[v];
        let hit = kids.iter().position(|&c| tree.tokens[c] == want);
        if !kids.is_empty() {
            walk.visits.push((kids.len(), hit.map(|r| r + 1)));
        }
        match hit {
            Some(r) => {
                v = kids[r];
                walk.path.push(v);
            }
            None => {
                walk.bonus = want;
                return walk;
            }
        }
    }
}

/// What the sampling walk does after rejecting a candidate. Only [`Rejection::Exact`] is correct;
/// the others exist for the exactness tests' mutation control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The target distribution becomes the residual `normalise(max(p − q, 0))` and the draft
    /// distribution loses the rejected token.
    Exact,
    /// Broken: the target distribution stays `p`.
    #[cfg_attr(not(feature = "verifier-mutants"), allow(dead_code))]
    SkipResidual,
    /// Broken: the draft distribution keeps the rejected token, as if the candidates had been drawn
    /// with replacement.
    #[cfg_attr(not(feature = "verifier-mutants"), allow(dead_code))]
    KeepRejected,
}

/// Sampling walk with residual distributions.
///
/// `target(v)` is the target's distribution after node `v`; it is called once for each visited
/// node (the root, then every accepted node), in that order. `draft[v]` is the draft distribution
/// the children of `v` were drawn from (without replacement, in order), `None` for leaves; the walk
/// takes the entries of the nodes it visits (leaving `None`) and updates them in place instead of
/// copying them.
pub fn walk_sampling(
    tree: &DraftTree,
    target: impl FnMut(usize) -> Dist,
    draft: &mut [Option<Dist>],
    rng: &mut impl Rng,
) -> Walk {
    walk_sampling_with(tree, target, draft, rng, Rejection::Exact)
}

pub(crate) fn walk_sampling_with(
    tree: &DraftTree,
    mut target: impl FnMut(usize) -> Dist,
    draft: &mut [Option<Dist>],
    rng: &mut impl Rng,
    rejection: Rejection,
) -> Walk {
    let mut walk = Walk::default();
    let mut v = 0;
    loop {
        let kids = &tree.children[v];
        let mut p = target(v);
        let mut accepted = None;
        if let (false, Some(mut q)) = (kids.is_empty(), draft[v].take()) {
            for (rank, &c) in kids.iter().enumerate() {
                let x = tree.tokens[c];
                let qx = q.prob(x);
                let ratio = if qx > 0.0 { p.prob(x) / qx } else { 0.0 };
                if rng.random::<f64>() < ratio.min(1.0) {
                    accepted = Some(rank);
                    break;
                }
                if rejection != Rejection::SkipResidual {
                    p.make_residual(&q);
                }
                if rejection != Rejection::KeepRejected {
                    q.remove(x);
                }
            }
            walk.visits.push((kids.len(), accepted.map(|r| r + 1)));
        }
        match accepted {
            Some(r) => {
                v = kids[r];
                walk.path.push(v);
            }
            None => {
                walk.bonus = p.sample(rng).unwrap_or(tree.tokens[v]);
                return walk;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tokens_climb_to_the_root() {
        let mut t = DraftTree::root(7);
        let a = t.push(0, 1);
        let b = t.push(a, 2);
        t.push(0, 3);
        assert_eq!(t.path_tokens(0), Vec::<Token>::new());
        assert_eq!(t.path_tokens(b), vec![1, 2]);
    }

    #[test]
    fn greedy_walk_asks_only_for_visited_nodes() {
        let mut t = DraftTree::root(0);
        let a = t.push(0, 5);
        t.push(0, 6);
        t.push(a, 9);
        let mut asked = Vec::new();
        let walk = walk_greedy(&t, |v| {
            asked.push(v);
            if v == 0 {
                5
            } else {
                4
            }
        });
        assert_eq!(walk.path, vec![a]);
        assert_eq!(walk.bonus, 4);
        assert_eq!(asked, vec![0, a]);
    }
}
