//! The verification walk (BRIEF §2): it accepts proposed tokens so that the output is distributed
//! exactly as the target's own sampling, and equals the target's greedy output at temperature 0.
//!
//! Both walks ask for the target's verdict at a node only when they reach it: most nodes of a tree
//! are never visited, and their distributions are never computed.
//!
//! # Two kinds of candidates
//!
//! A node's children come from two proposers: *lookup* candidates (continuations of earlier
//! matches in the conversation, [`crate::lookup`]), deterministic given the path to the node, and
//! the *draft*'s candidates, drawn without replacement from the draft's distribution `q`. At every
//! node the lookup children come first, in their rank order, then the draft's, drawn from `q` with
//! the lookup children's tokens removed and renormalised (`q′`). The walk at a node, with `P` the
//! target's distribution there:
//!
//! 1. each lookup candidate `x` in turn: accept with probability `P(x)`; on rejection
//!    `P := normalise(P with x removed)`;
//! 2. each draft candidate `x` in draw order: accept with probability `min(1, P(x) / q′(x))`; on
//!    rejection `P := normalise(max(P − q′, 0))` and `q′ := normalise(q′ with x removed)`;
//! 3. all rejected, or no children: the output token is drawn from `P`.
//!
//! Greedy: accept the child equal to the target's argmax, whoever proposed it.
//!
//! *Why the output keeps the target's distribution.* One stage at a time. Let a stage hold the
//! current `P` and a candidate `x` drawn from a distribution `r` (given everything the walk has
//! done at this node so far), accepted with probability `min(1, P(x)/r(x))`, and let whatever
//! follows a rejection output a token distributed as `R = normalise(max(P − r, 0))`. Then the
//! stage outputs `y` with probability `r(y)·min(1, P(y)/r(y)) + (1 − β)·R(y) = min(r(y), P(y)) +
//! max(P(y) − r(y), 0) = P(y)`, where `1 − β = Σ max(P − r, 0)` is the probability of a rejection.
//! The last stage (step 3) outputs `P` itself, so by induction from the last stage back, the node
//! outputs the target's `P`. Both kinds of candidates are such stages:
//!
//! - a lookup candidate is a function of the path, so its `r` is the point mass `δ_x`:
//!   `min(1, P(x)/1) = P(x)`, and `max(P − δ_x, 0)` is `P` with `x` removed;
//! - the draft's candidates were drawn from `q′` without replacement before the walk, with
//!   randomness independent of the walk's coins, so given the earlier candidates and their
//!   rejections, the next one is drawn from `q′` without the earlier ones: the `q′` of step 2.
//!
//! Lookup candidates may hang under any node: under the root (then they come first among its
//! children) or under a leaf of the draft's tree, where the conversation is matched after the
//! leaf's path. What a node is given must depend only on the path to it and on what was fixed
//! before the step (the plan, the settings), never on the contents of other branches: otherwise
//! reaching a node (which depends on its elder siblings' rejections) would say something about
//! what it holds, and the stages above would no longer see candidates drawn as they assume.
//!
//! Removing the lookup tokens from `q` before drawing is what makes the draft's stages exact
//! *after* the lookup stages changed `P`: any `r` works as long as the candidate really is drawn
//! from it. The accepted child's subtree was drawn the same way given its path, so the walk below
//! it outputs the target's distribution of the next token given that path, and the joint law of
//! every token produced is the target's. Treating a lookup candidate as if it had been drawn from
//! the draft's `q`, or leaving `P` unchanged after rejecting it, breaks this; the exactness tests'
//! mutation control shows the chi-square test catching both.

use rand::Rng;

use crate::sampling::Dist;
use crate::Token;

/// Who proposed a node of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// Node 0: the last committed token.
    Root,
    /// Drawn from the draft model.
    Draft,
    /// Taken from a match in the conversation ([`crate::lookup`]).
    Lookup,
}

/// A speculation tree as the walk sees it: node 0 is the root; `children[v]` holds the lookup
/// children first (rank order), then the draft's (draw order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DraftTree {
    pub tokens: Vec<Token>,
    pub children: Vec<Vec<usize>>,
    /// The parent of every node (`None` for the root).
    pub parents: Vec<Option<usize>>,
    /// Who proposed every node.
    pub kinds: Vec<NodeKind>,
}

impl DraftTree {
    /// A tree holding only the root.
    pub fn root(token: Token) -> DraftTree {
        DraftTree {
            tokens: vec![token],
            children: vec![Vec::new()],
            parents: vec![None],
            kinds: vec![NodeKind::Root],
        }
    }

    /// Adds `token` as the next draft child of `parent`; returns the new node's index.
    pub fn push(&mut self, parent: usize, token: Token) -> usize {
        self.add(parent, token, NodeKind::Draft)
    }

    /// Adds `token` as the next lookup child of `parent`, after its lookup children and before its
    /// draft children; returns the new node's index. (An engine lays a tree out in index order, so
    /// lookup children are best added before the draft's.)
    pub fn push_lookup(&mut self, parent: usize, token: Token) -> usize {
        self.add(parent, token, NodeKind::Lookup)
    }

    fn add(&mut self, parent: usize, token: Token, kind: NodeKind) -> usize {
        let id = self.tokens.len();
        self.tokens.push(token);
        self.children.push(Vec::new());
        self.parents.push(Some(parent));
        self.kinds.push(kind);
        let at = match kind {
            NodeKind::Lookup => self.lookup_children(parent),
            _ => self.children[parent].len(),
        };
        self.children[parent].insert(at, id);
        id
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// How many of `v`'s children are lookup candidates (they come first).
    pub fn lookup_children(&self, v: usize) -> usize {
        self.children[v]
            .iter()
            .take_while(|&&c| self.kinds[c] == NodeKind::Lookup)
            .count()
    }

    /// The lookup depth of `v`'s lookup children: 1 below a root or draft node, one more than
    /// `v`'s own below a lookup node.
    pub fn lookup_depth_below(&self, v: usize) -> u32 {
        self.lookup_chain_above(v).0
    }

    /// [`DraftTree::lookup_depth_below`], and whether the lookup nodes from `v` up reach the root.
    fn lookup_chain_above(&self, mut v: usize) -> (u32, bool) {
        let mut depth = 1;
        while self.kinds[v] == NodeKind::Lookup {
            depth += 1;
            match self.parents[v] {
                Some(p) => v = p,
                None => break,
            }
        }
        (depth, self.parents[v].is_none())
    }

    /// Nodes above `v` (0 for the root).
    pub fn depth(&self, mut v: usize) -> usize {
        let mut depth = 0;
        while let Some(p) = self.parents[v] {
            depth += 1;
            v = p;
        }
        depth
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

/// The lookup candidates met at one visited node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupVisit {
    /// Their lookup depth (see [`DraftTree::lookup_depth_below`]).
    pub depth: u32,
    /// How many there were.
    pub children: u32,
    /// Whether only lookup nodes lie between them and the root (else a draft node does).
    pub from_root: bool,
    /// The rank accepted (1-based), `None` when all were rejected.
    pub accepted: Option<u32>,
}

/// The outcome of one walk.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Walk {
    /// Accepted nodes below the root, in order.
    pub path: Vec<usize>,
    /// The token the target adds after the last accepted node (bonus or correction).
    pub bonus: Token,
    /// For every visited node whose draft children were tried (it had some, and no lookup child
    /// was accepted first): (number of draft children, draft rank accepted (1-based) or `None`
    /// when all were rejected). Feeds the draft's acceptance estimate.
    pub visits: Vec<(usize, Option<usize>)>,
    /// For every visited node with lookup children: what became of them. Feeds the lookup
    /// acceptance estimate.
    pub lookup_visits: Vec<LookupVisit>,
    /// Greedy walks, filled by the caller that holds the logits: the target's top-2 margin at the
    /// root and at every accepted node, one per output token.
    pub margins: Vec<f32>,
}

impl Walk {
    /// Records what became of `v`'s children, `accepted` being the index among them.
    fn record(&mut self, tree: &DraftTree, v: usize, accepted: Option<usize>) {
        let kids = tree.children[v].len();
        let lookup = tree.lookup_children(v);
        if lookup > 0 {
            let (depth, from_root) = tree.lookup_chain_above(v);
            self.lookup_visits.push(LookupVisit {
                depth,
                from_root,
                children: lookup as u32,
                accepted: accepted.filter(|&r| r < lookup).map(|r| r as u32 + 1),
            });
        }
        if kids > lookup && accepted.is_none_or(|r| r >= lookup) {
            self.visits
                .push((kids - lookup, accepted.map(|r| r - lookup + 1)));
        }
    }
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
        walk.record(tree, v, hit);
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
    /// The target distribution becomes the residual (`P` without a rejected lookup candidate;
    /// `normalise(max(p − q, 0))` after a draft candidate) and the draft distribution loses the
    /// rejected token.
    Exact,
    /// Broken: the target distribution stays `p` after a draft candidate's rejection.
    #[cfg_attr(not(feature = "verifier-mutants"), allow(dead_code))]
    SkipResidual,
    /// Broken: the draft distribution keeps the rejected token, as if the candidates had been drawn
    /// with replacement.
    #[cfg_attr(not(feature = "verifier-mutants"), allow(dead_code))]
    KeepRejected,
    /// Broken: the target distribution keeps a rejected lookup candidate.
    #[cfg_attr(not(feature = "verifier-mutants"), allow(dead_code))]
    SkipLookupResidual,
    /// Broken: a lookup candidate is verified as if drawn from the node's draft distribution
    /// (accepted with `min(1, P(x)/q(x))`, residual `max(P − q, 0)`), where the node has one.
    #[cfg_attr(not(feature = "verifier-mutants"), allow(dead_code))]
    LookupAsDraft,
}

/// Sampling walk with residual distributions.
///
/// `target(v)` is the target's distribution after node `v`; it is called once for each visited
/// node (the root, then every accepted node), in that order. `draft[v]` is the distribution the
/// draft children of `v` were drawn from (without replacement, in order, after removing the tokens
/// of `v`'s lookup children), `None` for nodes without draft children; the walk takes the entries
/// of the nodes it visits (leaving `None`) and updates them in place instead of copying them.
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
        let lookup = tree.lookup_children(v);
        let mut p = target(v);
        let mut accepted = None;
        let mut q = if kids.len() > lookup || rejection == Rejection::LookupAsDraft {
            draft[v].take()
        } else {
            None
        };
        for (rank, &c) in kids[..lookup].iter().enumerate() {
            let x = tree.tokens[c];
            let as_draft = q.as_ref().filter(|_| rejection == Rejection::LookupAsDraft);
            let ratio = match as_draft {
                Some(q) => {
                    let qx = q.prob(x);
                    if qx > 0.0 {
                        p.prob(x) / qx
                    } else {
                        1.0
                    }
                }
                None => p.prob(x),
            };
            if rng.random::<f64>() < ratio.min(1.0) {
                accepted = Some(rank);
                break;
            }
            match (as_draft, rejection) {
                (Some(q), _) => {
                    p.make_residual(q);
                }
                (None, Rejection::SkipLookupResidual) => {}
                (None, _) => p.remove(x),
            }
        }
        if let (None, true, Some(q)) = (accepted, kids.len() > lookup, q.as_mut()) {
            for (rank, &c) in kids.iter().enumerate().skip(lookup) {
                let x = tree.tokens[c];
                let qx = q.prob(x);
                let ratio = if qx > 0.0 { p.prob(x) / qx } else { 0.0 };
                if rng.random::<f64>() < ratio.min(1.0) {
                    accepted = Some(rank);
                    break;
                }
                if rejection != Rejection::SkipResidual {
                    p.make_residual(q);
                }
                if rejection != Rejection::KeepRejected {
                    q.remove(x);
                }
            }
        }
        if !kids.is_empty() {
            walk.record(tree, v, accepted);
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

    #[test]
    fn a_tree_keeps_lookup_children_before_draft_children() {
        let mut t = DraftTree::root(0);
        let d = t.push(0, 6);
        let l = t.push_lookup(0, 5);
        let l2 = t.push_lookup(l, 9);
        assert_eq!(t.children[0], vec![l, d]);
        assert_eq!(t.lookup_children(0), 1);
        assert_eq!((t.lookup_depth_below(0), t.lookup_depth_below(l)), (1, 2));
        assert_eq!(t.lookup_depth_below(l2), 3);
        assert_eq!(t.lookup_depth_below(d), 1);
        assert_eq!(
            t.kinds,
            vec![
                NodeKind::Root,
                NodeKind::Draft,
                NodeKind::Lookup,
                NodeKind::Lookup
            ]
        );
    }

    #[test]
    fn greedy_walk_records_each_kind_apart() {
        let mut t = DraftTree::root(0);
        let l = t.push_lookup(0, 5);
        t.push_lookup(l, 9);
        let d = t.push(0, 6);
        t.push(0, 7);
        // The target wants 6: the lookup candidate fails, the draft's first is accepted.
        let walk = walk_greedy(&t, |v| if v == 0 { 6 } else { 1 });
        assert_eq!(walk.path, vec![d]);
        assert_eq!(
            walk.lookup_visits,
            vec![LookupVisit {
                depth: 1,
                from_root: true,
                children: 1,
                accepted: None
            }]
        );
        assert_eq!(walk.visits, vec![(2, Some(1))]);
        // The target follows the lookup chain: the draft's candidates are never tried.
        let walk = walk_greedy(&t, |v| if v == 0 { 5 } else { 9 });
        assert_eq!(walk.path, vec![l, l + 1]);
        assert_eq!(walk.bonus, 9);
        assert!(walk.visits.is_empty());
        assert_eq!(
            walk.lookup_visits
                .iter()
                .map(|v| (v.depth, v.accepted))
                .collect::<Vec<_>>(),
            vec![(1, Some(1)), (2, Some(1))]
        );
    }

    /// The first token out of a one-level tree with two lookup candidates (tokens 2 and 0) and one
    /// draft candidate drawn from the draft without them, over many seeds.
    fn first_tokens(rejection: Rejection) -> [f64; 4] {
        use rand::SeedableRng;
        let p = Dist::from_weights([(0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4)]);
        let q_full = Dist::from_weights([(0, 0.4), (1, 0.1), (2, 0.1), (3, 0.4)]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 200_000;
        let mut counts = [0u32; 4];
        for _ in 0..n {
            let mut q = q_full.without(2).without(0);
            let x = q.sample(&mut rng).unwrap();
            let mut t = DraftTree::root(9);
            t.push_lookup(0, 2);
            t.push_lookup(0, 0);
            t.push(0, x);
            if rejection == Rejection::LookupAsDraft {
                // The broken verifier sees the draft's own distribution at the node.
                q = q_full.clone();
            }
            let mut draft = [Some(q), None, None, None];
            let walk = walk_sampling_with(&t, |_| p.clone(), &mut draft, &mut rng, rejection);
            let first = walk.path.first().map_or(walk.bonus, |&v| t.tokens[v]);
            counts[first as usize] += 1;
        }
        counts.map(|c| f64::from(c) / f64::from(n))
    }

    #[test]
    fn lookup_and_draft_candidates_together_keep_the_target_distribution() {
        let want = [0.1, 0.2, 0.3, 0.4];
        let near = |got: [f64; 4]| {
            got.iter()
                .zip(want)
                .all(|(g, w)| (g - w).abs() < 5.0 * (w * (1.0 - w) / 200_000f64).sqrt())
        };
        let got = first_tokens(Rejection::Exact);
        assert!(near(got), "{got:?}");
        for broken in [Rejection::SkipLookupResidual, Rejection::LookupAsDraft] {
            let got = first_tokens(broken);
            assert!(!near(got), "{broken:?} kept the distribution: {got:?}");
        }
    }
}
