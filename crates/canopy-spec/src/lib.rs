//! Exact tree speculative decoding, independent of any inference library.
//!
//! - [`sampling`]: turning logits into the distribution the user asked for (penalties, top-k,
//!   top-p, min-p, temperature, in llama.cpp's order), each position with its own penalty window.
//! - [`dist`]: that distribution over token ids (dense or sparse) and the operations the walk needs
//!   (lookup, removal, residual, sampling), each touching only the entries it must.
//! - [`draft`]: choosing a node's children from the draft without replacement (top-k when greedy,
//!   Gumbel-top-k when sampling).
//! - [`lookup`]: candidates matched in the conversation itself (prompt lookup, n-grams), at no
//!   model cost, from an index updated as tokens are committed.
//! - [`verify`]: the verification walk that keeps the target's output distribution exactly, with
//!   lookup candidates (point masses) tried before the draft's at every node.
//! - [`model`]: the [`TreeModel`] trait the engine implements for llama.cpp (and tests implement
//!   with deterministic fakes).
//! - [`driver`]: the generation loop: build each step's tree (lookup candidates under the root,
//!   the draft's tree drafted level by level beside them), verify it in one target decode, commit
//!   the accepted path and the target's bonus token.
//! - [`policy`]: what each step's tree holds: a fixed plan, or `auto`, which values the draft's
//!   and lookup's candidates each with its own measured acceptance and corrects its cost curves
//!   with the measured pass times.
//! - [`acceptance`]: estimating the positional acceptance vector of a draft/target pair.
//! - `mutants` (only with the `verifier-mutants` feature, which this crate's own tests turn on):
//!   deliberately broken verifiers for the mutation control of the exactness tests.
//!
//! Architecture invariant: no IO and no llama.cpp here; everything is a function of token ids,
//! logits and a seeded random number generator.

pub mod acceptance;
pub mod dist;
pub mod draft;
pub mod driver;
pub mod lookup;
pub mod model;
#[cfg(feature = "verifier-mutants")]
pub mod mutants;
pub mod policy;
pub mod sampling;
pub mod verify;

pub use driver::{
    draft_batch, generate, Flow, GenConfig, GenError, GenStats, PlanPolicy, Source, StepInput,
    StepPlan, StepReport, StopReason, TokenSink, DRAFT_CHAIN_MAX,
};
pub use lookup::{LookupConfig, LookupError, LookupIndex, LookupProposal};
pub use model::{ModelError, NodeIn, TreeModel};
pub use policy::{
    largest_tree, policy_for, AcceptanceTracker, AutoPolicy, FixedPolicy, LiveCosts, LookupTracker,
    PolicyError, StepCounts, DEFAULT_ACCEPTANCE, PRIOR_WEIGHT,
};
pub use sampling::{Dist, Penalties, SamplingConfig, TokenCounts};
pub use verify::{LookupVisit, NodeKind, Walk};

/// A token id, as llama.cpp numbers them.
pub type Token = i32;
