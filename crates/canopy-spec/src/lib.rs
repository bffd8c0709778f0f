//! Exact tree speculative decoding, independent of any inference library.
//!
//! - [`sampling`]: turning logits into the target distribution (temperature, top-k, top-p) and
//!   drawing from it.
//! - [`draft`]: choosing a node's children from the draft without replacement (top-k when greedy,
//!   Gumbel-top-k when sampling).
//! - [`verify`]: the verification walk that keeps the target's output distribution exactly.
//! - [`model`]: the [`TreeModel`] trait the engine implements for llama.cpp (and tests implement
//!   with deterministic fakes).
//! - [`driver`]: the generation loop: draft a tree level by level following a plan, verify it in
//!   one target decode, commit the accepted path and the target's bonus token.
//! - [`acceptance`]: estimating the positional acceptance vector of a draft/target pair.
//!
//! Architecture invariant: no IO and no llama.cpp here; everything is a function of token ids,
//! logits and a seeded random number generator.

pub mod acceptance;
pub mod draft;
pub mod driver;
pub mod model;
pub mod policy;
pub mod sampling;
pub mod verify;

pub use driver::{
    generate, Flow, GenConfig, GenError, GenStats, PlanPolicy, Source, StopReason, TokenSink,
};
pub use model::{ModelError, NodeIn, TreeModel};
pub use policy::{AcceptanceTracker, AutoPolicy, FixedPolicy};
pub use sampling::{Dist, SamplingConfig};

/// A token id, as llama.cpp numbers them.
pub type Token = i32;
