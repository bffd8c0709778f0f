//! Validated inputs of the planner: the positional acceptance vector and the limits on a tree.

use serde::{Deserialize, Serialize};

use crate::PlanError;

/// Tolerance on `sum(p) <= 1`, for vectors estimated in floating point.
pub const SUM_TOLERANCE: f64 = 1e-9;

/// The largest budget the planner accepts (its tables grow with budget × depth × branch).
pub const MAX_BUDGET: usize = 8192;

/// The most leaves llama.cpp can verify in one pass (`LLAMA_MAX_SEQ` = 256 sequences, one kept for the prefix).
pub const LLAMA_MAX_LEAVES: usize = 255;

/// Positional acceptance vector `p[1..]`: `p[k]` is the probability that the k-th child drawn from the
/// draft without replacement is the one the target accepts, given that its parent was accepted.
///
/// Invariant: every entry is finite and >= 0 and the entries sum to at most `1 + 1e-9`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Acceptance {
    p: Vec<f64>,
}

impl Acceptance {
    /// Validates `p` (`p[0]` here is `p[1]` of the brief).
    ///
    /// Fails when `p` is empty, when an entry is negative, NaN or infinite, or when the entries sum to
    /// more than `1 + 1e-9`; the error names the offending entry (counting from 1) and its value.
    pub fn new(p: Vec<f64>) -> Result<Self, PlanError> {
        if p.is_empty() {
            return Err(PlanError::EmptyAcceptance);
        }
        let mut sum = 0.0;
        for (i, &value) in p.iter().enumerate() {
            if !value.is_finite() || value < 0.0 {
                return Err(PlanError::InvalidAcceptance {
                    index: i + 1,
                    value,
                });
            }
            sum += value;
            if sum > 1.0 + SUM_TOLERANCE {
                let total = p.iter().sum();
                return Err(PlanError::AcceptanceSumAboveOne {
                    sum: total,
                    index: i + 1,
                    value,
                });
            }
        }
        Ok(Acceptance { p })
    }

    /// The entries, `p[1]` first.
    pub fn as_slice(&self) -> &[f64] {
        &self.p
    }

    /// `p[rank]` for `rank >= 1`; 0 beyond the end of the vector.
    pub fn get(&self, rank: usize) -> f64 {
        match rank {
            0 => 1.0,
            r => self.p.get(r - 1).copied().unwrap_or(0.0),
        }
    }

    /// The highest rank whose probability is positive (0 when every entry is 0): children of higher rank
    /// can add nothing to a tree.
    pub fn useful_ranks(&self) -> usize {
        self.p.iter().rposition(|&v| v > 0.0).map_or(0, |i| i + 1)
    }

    /// The bit patterns of the entries, a hashable key for caches.
    pub fn key(&self) -> Vec<u64> {
        self.p.iter().map(|v| v.to_bits()).collect()
    }
}

impl<'de> Deserialize<'de> for Acceptance {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let p = Vec::<f64>::deserialize(deserializer)?;
        Acceptance::new(p).map_err(serde::de::Error::custom)
    }
}

/// Limits on the shape of a speculation tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// Tokens in one target pass, counting the root (the last committed token). 1 = plain decoding.
    pub budget: usize,
    /// The most speculated tokens on any root-to-leaf path (the root is depth 0).
    pub max_depth: usize,
    /// The most children of any node.
    pub max_branch: usize,
    /// The most leaves (nodes without children; the root alone is one leaf).
    pub max_leaves: usize,
}

impl Limits {
    /// Builds and validates limits; see [`Limits::validate`].
    pub fn new(
        budget: usize,
        max_depth: usize,
        max_branch: usize,
        max_leaves: usize,
    ) -> Result<Self, PlanError> {
        let limits = Limits {
            budget,
            max_depth,
            max_branch,
            max_leaves,
        };
        limits.validate()?;
        Ok(limits)
    }

    /// Limits that only bound the budget and the depth (any branching, llama.cpp's leaf limit).
    pub fn with_budget_depth(budget: usize, max_depth: usize) -> Self {
        Limits {
            budget,
            max_depth,
            max_branch: usize::MAX,
            max_leaves: LLAMA_MAX_LEAVES,
        }
    }

    /// Fails when `budget` is 0 or above [`MAX_BUDGET`], or `max_leaves` is 0.
    /// `max_depth` or `max_branch` of 0 are allowed and mean plain decoding.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.budget == 0 {
            return Err(PlanError::InvalidLimit {
                name: "budget",
                value: 0,
                reason: "the budget counts the root, so it is at least 1 (1 = plain decoding)",
            });
        }
        if self.budget > MAX_BUDGET {
            return Err(PlanError::InvalidLimit {
                name: "budget",
                value: self.budget,
                reason: "the planner accepts budgets up to 8192",
            });
        }
        if self.max_leaves == 0 {
            return Err(PlanError::InvalidLimit {
                name: "max_leaves",
                value: 0,
                reason: "every tree has at least one leaf (the root alone is a leaf)",
            });
        }
        Ok(())
    }
}
