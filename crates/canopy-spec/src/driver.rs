//! The generation loop.

use std::time::Instant;

use canopy_plan::{LookupAcceptance, TreePlan};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::draft::{greedy_children, sampled_children};
use crate::lookup::{LookupConfig, LookupIndex, LookupProposal};
use crate::model::{ModelError, NodeIn, TreeModel};
use crate::sampling::{
    argmax_and_margin, distribution_after, penalised, Dist, SamplingConfig, TokenCounts,
};
use crate::verify::{walk_greedy, walk_sampling_with, DraftTree, NodeKind, Rejection, Walk};
use crate::Token;

pub use canopy_types::{Source, StopReason};

/// What the consumer of tokens wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop(StopReason),
}

/// Receives output tokens one at a time; decides about end of sequence and stop strings.
pub trait TokenSink {
    /// Takes one output token. Returning `Stop` ends generation (the token is not counted as
    /// output when the reason is `Eos` or `Stop`).
    fn push(&mut self, token: Token, source: Source) -> Flow;
    /// Checked between steps.
    fn cancelled(&self) -> bool;
}

/// Chooses the tree of every step and learns from the outcome: the one speculation policy, which
/// decides for every step how much to take from the draft model and how much from lookup.
pub trait PlanPolicy {
    /// The lookup drafter's settings, or `None` (the default) to speculate without it. Asked once,
    /// when a generation starts: the driver then indexes the prompt and every committed token.
    fn lookup(&self) -> Option<LookupConfig> {
        None
    }
    /// The tree of the next step. The driver prunes it to fit the context and the tokens still
    /// wanted (lookup nodes first), and ignores its draft part without a draft model.
    fn next_step(&mut self, input: &StepInput<'_>) -> StepPlan;
    /// After drafting, for a leaf of the step's draft plan (`plan_node`, an index into
    /// [`StepPlan::draft`]) that the draft filled, when [`StepPlan::lookup_under_leaves`] asked for
    /// it: which of the lookup candidates matched after the leaf's path to hang under it (indices
    /// into `proposal`, parents first). None by default. It takes `&self`: what a leaf gets must
    /// depend only on its own path and on what was decided before drafting, never on other
    /// branches (the walk's exactness needs it, see [`crate::verify`]).
    fn lookup_under(&self, plan_node: usize, proposal: &LookupProposal) -> Vec<usize> {
        let _ = (plan_node, proposal);
        Vec::new()
    }
    /// Called after every step with what happened and what it cost.
    fn observe(&mut self, report: &StepReport<'_>);
    /// A short description such as `tree:64 (depth 7)`.
    fn describe(&self) -> String;
    /// How far the pass times measured so far are from the cost curves the policy started from,
    /// as the largest factor either way (1 = they agree); `None` (the default) for a policy that
    /// plans from no curves.
    fn cost_disagreement(&self) -> Option<f64> {
        None
    }
    /// Lookup's acceptance as measured so far, for a later generation to start from; `None` (the
    /// default) for a policy that does not measure it.
    fn lookup_acceptance(&self) -> Option<LookupAcceptance> {
        None
    }
    /// Starts lookup's acceptance from what an earlier generation measured
    /// ([`PlanPolicy::lookup_acceptance`]) instead of the built-in prior. Ignored by default.
    fn start_lookup_from(&mut self, measured: &LookupAcceptance) {
        let _ = measured;
    }
}

/// What a policy knows before a step.
#[derive(Clone, Copy, Debug)]
pub struct StepInput<'a> {
    /// Whether a draft model takes part (without one, only lookup can speculate).
    pub has_draft: bool,
    /// The lookup candidates at the root (empty without lookup or without a match).
    pub lookup: &'a LookupProposal,
}

/// The tree of one step: the draft's shape (node 0 is the root), the lookup candidates hung under
/// the root, tried before the draft's children, and whether to look up after the draft's leaves.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPlan {
    pub draft: TreePlan,
    /// Indices into the step's [`LookupProposal`], parents before children; a node whose parent
    /// is not listed is dropped.
    pub lookup: Vec<usize>,
    /// Whether to match the path to every leaf of the draft's tree and ask
    /// [`PlanPolicy::lookup_under`] what to hang there.
    pub lookup_under_leaves: bool,
}

impl StepPlan {
    /// Plain decoding: the root alone.
    pub fn plain() -> StepPlan {
        StepPlan {
            draft: TreePlan::plain(),
            lookup: Vec::new(),
            lookup_under_leaves: false,
        }
    }
}

/// What one step did and cost, for the policy to learn from.
#[derive(Clone, Copy, Debug)]
pub struct StepReport<'a> {
    /// The verification walk (the draft's and lookup's visits).
    pub walk: &'a Walk,
    /// Tokens in the target's pass (the tree, root included).
    pub target_tokens: usize,
    /// Seconds of the target's pass and the walk.
    pub verify_secs: f64,
    /// Tokens of every draft pass of the step, in order (empty when the draft did not run).
    pub draft_passes: &'a [usize],
    /// Seconds of those passes and the drawing of the draft's candidates.
    pub draft_secs: f64,
    /// The tokens the step committed: the accepted path, then the target's own token.
    pub committed: &'a [Token],
}

/// Settings of one generation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenConfig {
    pub sampling: SamplingConfig,
    pub max_tokens: usize,
    pub seed: u64,
}

/// Statistics of one generation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenStats {
    /// Output tokens.
    pub tokens: usize,
    pub prefill_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Target passes after prefill.
    pub steps: usize,
    /// `accepted_histogram[k]` = steps that accepted k draft tokens.
    pub accepted_histogram: Vec<u64>,
    pub draft_secs: f64,
    pub verify_secs: f64,
    /// Largest tree budget and depth used.
    pub max_budget: usize,
    pub max_depth: usize,
    pub stop_reason: Option<StopReason>,
    /// Greedy decoding only: for every output token, the target's top-1 minus top-2 logit at the
    /// position that chose it (how near a tie the choice was).
    #[serde(default)]
    pub margins: Vec<f32>,
    /// Lookup candidates verified, and of those accepted.
    #[serde(default)]
    pub lookup_tokens: usize,
    #[serde(default)]
    pub lookup_accepted: usize,
}

impl GenStats {
    /// Mean accepted draft tokens per target pass.
    pub fn mean_accepted_per_step(&self) -> f64 {
        let total: u64 = self
            .accepted_histogram
            .iter()
            .enumerate()
            .map(|(k, &n)| k as u64 * n)
            .sum();
        if self.steps == 0 {
            0.0
        } else {
            total as f64 / self.steps as f64
        }
    }
}

/// Failure of a generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("target model: {0}")]
    Target(ModelError),
    #[error("draft model: {0}")]
    Draft(ModelError),
}

/// Keeps the nodes of `plan` with depth ≤ `max_depth`, then its first `max_budget` nodes in
/// breadth-first order (a breadth-first prefix of a tree is a tree).
pub fn prune(plan: &TreePlan, max_budget: usize, max_depth: usize) -> TreePlan {
    let mut keep = vec![usize::MAX; plan.nodes.len()];
    let mut nodes = Vec::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        if nodes.len() >= max_budget.max(1) || n.depth as usize > max_depth {
            continue;
        }
        let parent = match n.parent {
            Some(p) if keep[p] == usize::MAX => continue,
            Some(p) => Some(keep[p]),
            None => None,
        };
        keep[i] = nodes.len();
        let mut node = n.clone();
        node.parent = parent;
        node.children = 0;
        if let Some(p) = parent {
            let parent_node: &mut canopy_plan::PlanNode = &mut nodes[p];
            parent_node.children += 1;
        }
        nodes.push(node);
    }
    TreePlan {
        nodes,
        expected_tokens: f64::NAN,
    }
}

struct Emitter<'a> {
    sink: &'a mut dyn TokenSink,
    produced: usize,
    max_tokens: usize,
    margins: Vec<f32>,
}

impl Emitter<'_> {
    fn emit(&mut self, token: Token, source: Source, margin: Option<f32>) -> Option<StopReason> {
        match self.sink.push(token, source) {
            Flow::Continue => {
                self.produced += 1;
                self.margins.extend(margin);
                (self.produced >= self.max_tokens).then_some(StopReason::MaxTokens)
            }
            Flow::Stop(reason) => Some(reason),
        }
    }
}

/// Generates up to `cfg.max_tokens` tokens after `prompt`.
///
/// Every step the policy chooses a tree: lookup candidates (when [`PlanPolicy::lookup`] gives
/// settings, matched in the prompt and output so far at no model cost) hung under the root, and
/// the draft's tree (with a draft model) beside them, drafted level by level (one draft decode per
/// level), with more lookup candidates under its leaves where the policy wants them
/// ([`PlanPolicy::lookup_under`]). The tree is verified in one target decode and the accepted path plus the target's bonus
/// token are committed in both models. With neither (no draft model and no lookup match, or a plain
/// plan), a step is one plain target decode. The output is the target's: identical tokens at
/// temperature 0 (given batch-invariant logits), the same distribution when sampling (see
/// [`crate::verify`] for the proof with both kinds of candidates).
///
/// # Errors
/// Model failures, tagged with the model that failed. Running out of context is not an error: it
/// ends generation with [`StopReason::ContextFull`].
pub fn generate(
    target: &mut dyn TreeModel,
    draft: Option<&mut dyn TreeModel>,
    prompt: &[Token],
    cfg: &GenConfig,
    policy: &mut dyn PlanPolicy,
    sink: &mut dyn TokenSink,
) -> Result<GenStats, GenError> {
    generate_with(target, draft, prompt, cfg, policy, sink, Rejection::Exact)
}

/// [`generate`] with the sampling walk's treatment of a rejection as a parameter (only
/// [`Rejection::Exact`] is correct; the mutation control of the exactness tests uses the others).
pub(crate) fn generate_with(
    target: &mut dyn TreeModel,
    mut draft: Option<&mut dyn TreeModel>,
    prompt: &[Token],
    cfg: &GenConfig,
    policy: &mut dyn PlanPolicy,
    sink: &mut dyn TokenSink,
    rejection: Rejection,
) -> Result<GenStats, GenError> {
    let (&root, context) = prompt.split_last().ok_or(GenError::EmptyPrompt)?;
    let mut stats = GenStats {
        prefill_tokens: prompt.len(),
        ..GenStats::default()
    };
    let started = Instant::now();
    target.prefill(context).map_err(GenError::Target)?;
    if let Some(d) = draft.as_deref_mut() {
        d.prefill(context).map_err(GenError::Draft)?;
    }
    stats.prefill_secs = started.elapsed().as_secs_f64();

    let decode_started = Instant::now();
    let index = policy.lookup().map(|config| {
        let mut index = LookupIndex::new(config);
        index.extend(prompt);
        index
    });
    let mut run = Run {
        vocab: target.n_vocab(),
        target,
        draft,
        cfg,
        policy,
        rejection,
        rng: ChaCha20Rng::seed_from_u64(cfg.seed),
        root,
        history: prompt.to_vec(),
        index,
        draft_pending: vec![root],
        stats,
        out: Emitter {
            sink,
            produced: 0,
            max_tokens: cfg.max_tokens,
            margins: Vec::new(),
        },
    };
    let stop = loop {
        if let Some(reason) = run.stopped() {
            break reason;
        }
        if let Some(reason) = run.step()? {
            break reason;
        }
    };
    let mut stats = run.stats;
    stats.tokens = run.out.produced;
    stats.margins = run.out.margins;
    stats.decode_secs = decode_started.elapsed().as_secs_f64();
    stats.stop_reason = Some(stop);
    Ok(stats)
}

/// One generation's state between steps.
struct Run<'a, 'd> {
    target: &'a mut dyn TreeModel,
    draft: Option<&'a mut (dyn TreeModel + 'd)>,
    cfg: &'a GenConfig,
    policy: &'a mut dyn PlanPolicy,
    rejection: Rejection,
    rng: ChaCha20Rng,
    vocab: usize,
    /// The last committed token, decoded by neither model yet.
    root: Token,
    /// The context so far: prompt and output, ending with the root (the penalties' window).
    history: Vec<Token>,
    index: Option<LookupIndex>,
    /// Tokens committed in the target but not yet decoded by the draft (the root is always last).
    draft_pending: Vec<Token>,
    stats: GenStats,
    out: Emitter<'a>,
}

/// A verified step: the target's walk over the tree and what the step's passes took.
struct Verified {
    walk: Walk,
    tree: DraftTree,
    draft_secs: f64,
    verify_secs: f64,
    draft_passes: Vec<usize>,
}

impl Run<'_, '_> {
    /// Why generation ends before the next step, if it does.
    fn stopped(&mut self) -> Option<StopReason> {
        if self.out.produced >= self.cfg.max_tokens {
            return Some(StopReason::MaxTokens);
        }
        if self.out.sink.cancelled() {
            return Some(StopReason::Cancelled);
        }
        let room = self.target.n_ctx().saturating_sub(self.target.n_past());
        (room == 0).then_some(StopReason::ContextFull)
    }

    /// Chooses, drafts, verifies and commits one step; the stop reason when its output ends
    /// generation.
    fn step(&mut self) -> Result<Option<StopReason>, GenError> {
        let room = self.target.n_ctx().saturating_sub(self.target.n_past());
        let wanted = self.cfg.max_tokens - self.out.produced;
        let proposal = self
            .index
            .as_ref()
            .map_or_else(LookupProposal::empty, |ix| ix.propose(&[]));
        let step = self.policy.next_step(&StepInput {
            has_draft: self.draft.is_some(),
            lookup: &proposal,
        });
        let mut limit = room.min(self.target.max_batch());
        if let Some(d) = self.draft.as_deref() {
            let draft_room = d
                .n_ctx()
                .saturating_sub(d.n_past() + self.draft_pending.len());
            limit = limit.min(draft_room + 1);
        }
        let max_depth = wanted.saturating_sub(1);
        let tree = lookup_tree(
            self.root,
            &proposal,
            &step.lookup,
            limit,
            max_depth,
            self.vocab,
        );
        let lookup_nodes = tree.len() - 1;
        let plan = match self.draft {
            Some(_) => prune(&step.draft, limit - lookup_nodes, max_depth),
            None => TreePlan::plain(),
        };
        let verified = if plan.nodes.len() > 1 && self.draft.is_some() {
            let spare = limit - lookup_nodes - plan.nodes.len();
            let under_leaves = step.lookup_under_leaves.then_some((spare, max_depth));
            self.speculate(tree, &plan, under_leaves)?
        } else {
            self.verify_only(tree)?
        };
        self.commit(verified)
    }

    /// Drafts `plan` under the lookup nodes of `tree` (and, with `under_leaves` = (spare nodes,
    /// depth limit), lookup candidates under its leaves), verifies it, and commits the accepted
    /// nodes in the draft.
    fn speculate(
        &mut self,
        tree: DraftTree,
        plan: &TreePlan,
        under_leaves: Option<(usize, usize)>,
    ) -> Result<Verified, GenError> {
        let d = self
            .draft
            .as_deref_mut()
            .expect("speculate is called with a draft model");
        let mut draft_passes = Vec::new();
        let t0 = Instant::now();
        let mut drafted = draft_tree(
            d,
            &mut self.draft_pending,
            plan,
            &self.cfg.sampling,
            &self.history,
            self.vocab,
            &mut self.rng,
            tree,
            &mut draft_passes,
        )
        .map_err(GenError::Draft)?;
        let t1 = Instant::now();
        if let (Some(ix), Some((spare, max_depth))) = (self.index.as_ref(), under_leaves) {
            hang_lookup_under_leaves(
                &mut drafted,
                plan,
                ix,
                &*self.policy,
                spare,
                max_depth,
                self.vocab,
            );
        }
        let t2 = Instant::now();
        let walk = verify_tree(
            self.target,
            &drafted.tree,
            &mut drafted.q,
            &self.cfg.sampling,
            &self.history,
            self.rejection,
            &mut self.rng,
        )?;
        let verify_secs = t2.elapsed().as_secs_f64();
        // Commit in the draft: its pending chain plus the accepted nodes it decoded.
        let mut draft_path: Vec<usize> = (0..drafted.chain_len).collect();
        let mut rest = Vec::new();
        for &v in &walk.path {
            match drafted.draft_index[v] {
                Some(i) if rest.is_empty() => draft_path.push(i),
                _ => rest.push(drafted.tree.tokens[v]),
            }
        }
        d.commit(&draft_path).map_err(GenError::Draft)?;
        self.draft_pending = rest;
        self.draft_pending.push(walk.bonus);
        Ok(Verified {
            walk,
            tree: drafted.tree,
            draft_secs: (t1 - t0).as_secs_f64(),
            verify_secs,
            draft_passes,
        })
    }

    /// Verifies `tree` (lookup nodes, or the root alone for plain decoding) with no draft pass.
    fn verify_only(&mut self, tree: DraftTree) -> Result<Verified, GenError> {
        let t0 = Instant::now();
        let mut q = vec![None; tree.len()];
        let walk = verify_tree(
            self.target,
            &tree,
            &mut q,
            &self.cfg.sampling,
            &self.history,
            self.rejection,
            &mut self.rng,
        )?;
        let verify_secs = t0.elapsed().as_secs_f64();
        if self.draft.is_some() {
            self.draft_pending
                .extend(walk.path.iter().map(|&v| tree.tokens[v]));
            self.draft_pending.push(walk.bonus);
        }
        Ok(Verified {
            walk,
            tree,
            draft_secs: 0.0,
            verify_secs,
            draft_passes: Vec::new(),
        })
    }

    /// Reports the step to the policy, commits the accepted path in the target and emits it
    /// with the bonus token.
    fn commit(&mut self, step: Verified) -> Result<Option<StopReason>, GenError> {
        let Verified {
            walk,
            tree,
            draft_secs,
            verify_secs,
            draft_passes,
        } = step;
        let stats = &mut self.stats;
        stats.draft_secs += draft_secs;
        stats.verify_secs += verify_secs;
        stats.max_budget = stats.max_budget.max(tree.len());
        let depth = (0..tree.len()).map(|v| tree.depth(v)).max().unwrap_or(0);
        stats.max_depth = stats.max_depth.max(depth);
        stats.lookup_tokens += tree
            .kinds
            .iter()
            .filter(|&&k| k == NodeKind::Lookup)
            .count();
        let committed: Vec<Token> = walk
            .path
            .iter()
            .map(|&v| tree.tokens[v])
            .chain(std::iter::once(walk.bonus))
            .collect();
        self.policy.observe(&StepReport {
            walk: &walk,
            target_tokens: tree.len(),
            verify_secs,
            draft_passes: &draft_passes,
            draft_secs,
            committed: &committed,
        });
        stats.steps += 1;
        let accepted = walk.path.len();
        if stats.accepted_histogram.len() <= accepted {
            stats.accepted_histogram.resize(accepted + 1, 0);
        }
        stats.accepted_histogram[accepted] += 1;

        // Keep the target's KV cache equal to decoding the committed tokens one by one.
        let mut target_path = vec![0];
        target_path.extend(&walk.path);
        self.target.commit(&target_path).map_err(GenError::Target)?;
        self.root = walk.bonus;
        let sources = walk.path.iter().map(|&v| match tree.kinds[v] {
            NodeKind::Lookup => Source::Lookup,
            _ => Source::Draft,
        });
        let emitted: Vec<(Token, Source)> = committed
            .iter()
            .copied()
            .zip(sources.chain(std::iter::once(Source::Target)))
            .collect();
        stats.lookup_accepted += emitted.iter().filter(|t| t.1 == Source::Lookup).count();
        self.history.extend(&committed);
        if let Some(ix) = self.index.as_mut() {
            ix.extend(&committed);
        }
        let mut margins = walk
            .margins
            .iter()
            .map(|&m| Some(m))
            .chain(std::iter::repeat(None));
        Ok(emitted
            .into_iter()
            .find_map(|(t, s)| self.out.emit(t, s, margins.next().flatten())))
    }
}

/// The step's tree before drafting: the root, then the lookup nodes the policy chose (so that
/// they come first among the root's children, in the walk and in an engine's layout), each
/// within `limit` nodes and `max_depth`, and a token of the vocabulary.
fn lookup_tree(
    root: Token,
    proposal: &LookupProposal,
    chosen: &[usize],
    limit: usize,
    max_depth: usize,
    vocab: usize,
) -> DraftTree {
    let mut tree = DraftTree::root(root);
    let mut at = vec![None; proposal.len()];
    for &i in chosen {
        let Some(node) = proposal.shape().get(i) else {
            continue;
        };
        let parent = match node.parent {
            None => Some(0),
            Some(p) => at.get(p).copied().flatten(),
        };
        let token = proposal.tokens()[i];
        let fits = tree.len() < limit && (node.depth as usize) <= max_depth;
        if let (Some(parent), true, true) = (parent, fits, (0..vocab as Token).contains(&token)) {
            at[i] = Some(tree.push_lookup(parent, token));
        }
    }
    tree
}

/// A tree drafted for one step.
struct Drafted {
    tree: DraftTree,
    /// The distribution every node's draft children were drawn from (sampling only).
    q: Vec<Option<Dist>>,
    /// Pending-tree index in the draft model of each tree node it decoded.
    draft_index: Vec<Option<usize>>,
    /// Length of the pending chain decoded before the tree (its last node is the root).
    chain_len: usize,
    /// The tree node of every plan node (`None` when the draft had fewer candidates than planned).
    at: Vec<Option<usize>>,
}

/// Longest chain of accepted tokens the draft decodes as part of a tree; a longer one goes into
/// its prefix first (one prefill).
pub const DRAFT_CHAIN_MAX: usize = 64;

/// The batch a draft model's context needs for trees of at most `largest` tokens: its widest
/// level (each node of a level that gets children has a leaf of its own below it, so at most
/// [`ENGINE`](canopy_plan::ENGINE)'s leaves), or its first decode of a step: the pending chain (at
/// most [`DRAFT_CHAIN_MAX`]) after the accepted tokens it decodes again (at most the chain and
/// the tree's depth). The target needs a batch of the whole tree; the draft decodes a level at a
/// time, and on a GPU every token of batch costs a row of logits in the compute buffer. Never
/// below one row per sequence (the leaves and the prefix): llama.cpp reserves that many outputs.
pub fn draft_batch(largest: usize) -> usize {
    let limits = canopy_plan::ENGINE;
    let sequences = limits.max_leaves + 1;
    let first = 2 * DRAFT_CHAIN_MAX + largest.min(limits.max_depth) + 1;
    sequences.max(first)
}

/// Grows the tree of `plan` under the root of `tree` (which may already hold lookup nodes) level by
/// level: one draft decode per level, over the nodes of that level that get children. A node's
/// draft children are drawn without the tokens of the children it already has (its lookup
/// candidates, tried first). Only ids below `vocab` (the target's vocabulary size) are proposed.
/// `passes` receives the tokens of every draft decode.
#[allow(clippy::too_many_arguments)]
fn draft_tree(
    draft: &mut dyn TreeModel,
    pending: &mut Vec<Token>,
    plan: &TreePlan,
    sampling: &SamplingConfig,
    history: &[Token],
    vocab: usize,
    rng: &mut ChaCha20Rng,
    mut tree: DraftTree,
    passes: &mut Vec<usize>,
) -> Result<Drafted, ModelError> {
    // A long pending chain (after plain or lookup steps) goes into the prefix first, and so does
    // what would not fit the draft's batch beside the tokens it decodes again (its backlog).
    let chain_max = DRAFT_CHAIN_MAX.min(draft.max_batch()).max(1);
    if pending.len() > chain_max {
        let cut = pending.len() - chain_max;
        draft.prefill(&pending[..cut])?;
        passes.push(cut);
        pending.drain(..cut);
    }
    let chain_len = pending.len();
    let nodes: Vec<NodeIn> = pending
        .iter()
        .enumerate()
        .map(|(i, &token)| NodeIn {
            token,
            parent: i.checked_sub(1),
            logits: i + 1 == chain_len,
        })
        .collect();
    draft.decode(&nodes)?;
    passes.push(chain_len);
    let mut next_draft_index = chain_len;

    let n = plan.nodes.len();
    let mut q = vec![None; tree.len()];
    let mut draft_index = vec![None; tree.len()];
    draft_index[0] = Some(chain_len - 1);
    // plan node -> tree node (None when the draft had fewer candidates than planned).
    let mut at: Vec<Option<usize>> = vec![None; n];
    at[0] = Some(0);
    // Logits rows of the last draft decode: tree node -> row.
    let mut rows: Vec<(usize, usize)> = vec![(0, 0)];
    for level in plan.levels() {
        let mut next_rows = Vec::new();
        let mut decode = Vec::new();
        for &(plan_node, count) in &level.expand {
            let Some(v) = at[plan_node] else { continue };
            let Some(&(_, row)) = rows.iter().find(|r| r.0 == v) else {
                continue;
            };
            let logits = draft.logits(row);
            let logits = &logits[..logits.len().min(vocab)];
            let recent = window(sampling, history, &tree, v);
            let taken: Vec<Token> = tree.children[v].iter().map(|&c| tree.tokens[c]).collect();
            let count = count as usize;
            let kids = if sampling.is_greedy() {
                let mut kids = greedy_children(
                    &penalised(logits, &sampling.penalties, &recent),
                    count + taken.len(),
                );
                kids.retain(|t| !taken.contains(t));
                kids.truncate(count);
                kids
            } else {
                let mut dist = distribution_after(logits, sampling, &recent);
                for &t in &taken {
                    dist.remove(t);
                }
                let kids = sampled_children(&dist, count, rng);
                q[v] = Some(dist);
                kids
            };
            for (plan_child, token) in plan.children(plan_node).zip(kids) {
                let c = tree.push(v, token);
                q.push(None);
                draft_index.push(None);
                at[plan_child] = Some(c);
                if plan.nodes[plan_child].children > 0 {
                    let parent = draft_index[v];
                    decode.push(NodeIn {
                        token,
                        parent,
                        logits: true,
                    });
                    draft_index[c] = Some(next_draft_index);
                    next_draft_index += 1;
                    next_rows.push((c, next_rows.len()));
                }
            }
        }
        if decode.is_empty() {
            break;
        }
        draft.decode(&decode)?;
        passes.push(decode.len());
        rows = next_rows;
    }
    Ok(Drafted {
        tree,
        q,
        draft_index,
        chain_len,
        at,
    })
}

/// Hangs lookup candidates under the draft's leaves: for every leaf of `plan` the draft filled,
/// the candidates matched after its path that `policy` picks, at most `spare / leaves of the plan`
/// under each (a share fixed before drafting) and none deeper than `max_depth`. What a leaf gets
/// depends only on its own path, as the walk's exactness requires (see [`crate::verify`]).
fn hang_lookup_under_leaves(
    drafted: &mut Drafted,
    plan: &TreePlan,
    index: &LookupIndex,
    policy: &dyn PlanPolicy,
    spare: usize,
    max_depth: usize,
    vocab: usize,
) {
    let cap = spare / plan.leaves().max(1);
    if cap == 0 {
        return;
    }
    for (p, node) in plan.nodes.iter().enumerate().skip(1) {
        let (0, Some(v)) = (node.children, drafted.at[p]) else {
            continue;
        };
        let room = max_depth.saturating_sub(node.depth as usize);
        if room == 0 {
            continue;
        }
        let proposal = index.propose(&drafted.tree.path_tokens(v));
        if proposal.is_empty() {
            continue;
        }
        let chosen = policy.lookup_under(p, &proposal);
        let mut at = vec![None; proposal.len()];
        let mut added = 0;
        for i in chosen {
            let Some(shape) = proposal.shape().get(i) else {
                continue;
            };
            let parent = match shape.parent {
                None => Some(v),
                Some(q) => at.get(q).copied().flatten(),
            };
            let token = proposal.tokens()[i];
            let fits = added < cap && (shape.depth as usize) <= room;
            if let (Some(parent), true, true) = (parent, fits, (0..vocab as Token).contains(&token))
            {
                at[i] = Some(drafted.tree.push_lookup(parent, token));
                drafted.q.push(None);
                drafted.draft_index.push(None);
                added += 1;
            }
        }
    }
}

/// The penalty window of the position after tree node `v` (empty when the penalties are off).
fn window(sampling: &SamplingConfig, history: &[Token], tree: &DraftTree, v: usize) -> TokenCounts {
    if sampling.has_penalties() {
        let last_n = sampling.penalties.last_n as usize;
        TokenCounts::window(history, &tree.path_tokens(v), last_n)
    } else {
        TokenCounts::default()
    }
}

/// Decodes the whole tree in the target in one pass and walks it, computing the target's verdict
/// (argmax or distribution) only at the nodes the walk reaches.
fn verify_tree(
    target: &mut dyn TreeModel,
    tree: &DraftTree,
    q: &mut [Option<Dist>],
    sampling: &SamplingConfig,
    history: &[Token],
    rejection: Rejection,
    rng: &mut ChaCha20Rng,
) -> Result<Walk, GenError> {
    let nodes: Vec<NodeIn> = tree
        .tokens
        .iter()
        .zip(&tree.parents)
        .map(|(&token, &parent)| NodeIn {
            token,
            parent,
            logits: true,
        })
        .collect();
    target.decode(&nodes).map_err(GenError::Target)?;
    let target = &*target;
    Ok(if sampling.is_greedy() {
        let mut margins = Vec::new();
        let mut walk = walk_greedy(tree, |v| {
            let recent = window(sampling, history, tree, v);
            let logits = penalised(target.logits(v), &sampling.penalties, &recent);
            let (best, margin) = argmax_and_margin(&logits);
            margins.push(margin);
            best
        });
        walk.margins = margins;
        walk
    } else {
        let dist = |v| {
            let recent = window(sampling, history, tree, v);
            distribution_after(target.logits(v), sampling, &recent)
        };
        walk_sampling_with(tree, dist, q, rng, rejection)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use canopy_plan::{Acceptance, ENGINE};

    /// Every decode of a drafted tree fits the draft's batch: each level's nodes that get
    /// children, for narrow and wide trees of every size a plan builds.
    #[test]
    fn the_draft_batch_holds_every_level_of_every_tree() {
        for p in [vec![0.9, 0.05], vec![0.6, 0.1, 0.04, 0.02], vec![0.05; 16]] {
            let acc = Acceptance::new(p).unwrap();
            for n in [1, 2, 4, 16, 97, 256, 1024] {
                let plan = ENGINE.fixed_tree_plan(&acc, n).unwrap();
                let batch = draft_batch(n);
                assert!(batch > 2 * DRAFT_CHAIN_MAX + plan.depth(), "tree:{n}");
                for level in plan.levels() {
                    let decoded: usize = level
                        .expand
                        .iter()
                        .map(|&(node, _)| {
                            plan.children(node)
                                .filter(|&c| plan.nodes[c].children > 0)
                                .count()
                        })
                        .sum();
                    assert!(decoded <= batch, "tree:{n}: {decoded} > {batch}");
                }
            }
        }
        // Far below the target's batch for large trees (1024 + 255 tokens).
        assert_eq!(draft_batch(1024), 384);
        assert_eq!(draft_batch(16), 256);
    }
}
