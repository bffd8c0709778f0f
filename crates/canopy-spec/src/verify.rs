//! The verification walk (BRIEF §2): it accepts draft tokens so that the output is distributed
//! exactly as the target's own sampling, and equals the target's greedy output at temperature 0.

use rand::Rng;

use crate::sampling::Dist;
use crate::Token;

/// A drafted tree as the walk sees it: node 0 is the root, `children[v]` in draw order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DraftTree {
    pub tokens: Vec<Token>,
    pub children: Vec<Vec<usize>>,
}

impl DraftTree {
    /// A tree holding only the root.
    pub fn root(token: Token) -> DraftTree {
        DraftTree {
            tokens: vec![token],
            children: vec![Vec::new()],
        }
    }

    /// Adds `token` as the next child of `parent`; returns the new node's index.
    pub fn push(&mut self, parent: usize, token: Token) -> usize {
        let id = self.tokens.len();
        self.tokens.push(token);
        self.children.push(Vec::new());
        self.children[parent].push(id);
        id
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
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
/// `target_argmax[v]` is the target's most likely next token after node `v`.
pub fn walk_greedy(tree: &DraftTree, target_argmax: &[Token]) -> Walk {
    let mut walk = Walk::default();
    let mut v = 0;
    loop {
        let want = target_argmax[v];
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

/// Sampling walk with residual distributions.
///
/// `target[v]` is the target's distribution after node `v`; `draft[v]` the draft distribution the
/// children of `v` were drawn from (without replacement, in order), `None` for leaves.
pub fn walk_sampling(
    tree: &DraftTree,
    target: &[Dist],
    draft: &[Option<Dist>],
    rng: &mut impl Rng,
) -> Walk {
    let mut walk = Walk::default();
    let mut v = 0;
    loop {
        let kids = &tree.children[v];
        let mut p = target[v].clone();
        let mut accepted = None;
        if let (false, Some(q0)) = (kids.is_empty(), draft[v].as_ref()) {
            let mut q = q0.clone();
            for (rank, &c) in kids.iter().enumerate() {
                let x = tree.tokens[c];
                let qx = q.prob(x);
                let ratio = if qx > 0.0 { p.prob(x) / qx } else { 0.0 };
                if rng.random::<f64>() < ratio.min(1.0) {
                    accepted = Some(rank);
                    break;
                }
                if let Some(r) = p.residual(&q) {
                    p = r;
                }
                q = q.without(x);
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
