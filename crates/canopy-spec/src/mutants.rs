//! Deliberately wrong verifiers, for the mutation control of the exactness tests: each breaks
//! exactness in a way a careless implementation could, and the chi-square tests that pass the real
//! verifier must reject it. Built only with the `verifier-mutants` feature, which this crate's own
//! tests turn on.

use crate::driver::{generate_with, GenConfig, GenError, GenStats, PlanPolicy, TokenSink};
use crate::model::TreeModel;
use crate::verify::Rejection;
use crate::Token;

/// A broken treatment of a rejected candidate in the sampling walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutant {
    /// The target distribution is not replaced by the residual after a rejection.
    SkipResidual,
    /// The draft distribution keeps the rejected token, as if the candidates had been drawn with
    /// replacement.
    KeepRejected,
    /// The target distribution keeps a rejected lookup candidate (no residual after a lookup
    /// rejection).
    SkipLookupResidual,
    /// A lookup candidate is verified as if it had been drawn from the node's draft distribution
    /// `q` (accepted with `min(1, P(x)/q(x))`, residual `max(P − q, 0)`), where the node has one.
    LookupAsDraft,
}

/// [`generate`](crate::generate) with the verifier broken as `mutant` says.
///
/// # Errors
/// As [`generate`](crate::generate).
pub fn generate(
    target: &mut dyn TreeModel,
    draft: Option<&mut dyn TreeModel>,
    prompt: &[Token],
    cfg: &GenConfig,
    policy: &mut dyn PlanPolicy,
    sink: &mut dyn TokenSink,
    mutant: Mutant,
) -> Result<GenStats, GenError> {
    let rejection = match mutant {
        Mutant::SkipResidual => Rejection::SkipResidual,
        Mutant::KeepRejected => Rejection::KeepRejected,
        Mutant::SkipLookupResidual => Rejection::SkipLookupResidual,
        Mutant::LookupAsDraft => Rejection::LookupAsDraft,
    };
    generate_with(target, draft, prompt, cfg, policy, sink, rejection)
}
