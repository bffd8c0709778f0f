//! Errors of the planner: each variant carries the facts needed to fix the input.

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The acceptance vector has no entries.
    #[error("the acceptance vector is empty: give at least p[1]")]
    EmptyAcceptance,
    /// An acceptance entry is negative, NaN or infinite (`index` counts from 1, as in `p[1]`).
    #[error("acceptance entry p[{index}] = {value} is invalid: every entry must be a finite number >= 0")]
    InvalidAcceptance { index: usize, value: f64 },
    /// The entries add up to more than 1; `index` is the first entry at which the running sum passes 1.
    #[error(
        "acceptance entries sum to {sum}, more than 1: the running sum passes 1 at p[{index}] = {value} \
         (the entries are probabilities of exclusive events)"
    )]
    AcceptanceSumAboveOne { sum: f64, index: usize, value: f64 },
    /// A planning limit is out of its allowed range.
    #[error("invalid limit {name} = {value}: {reason}")]
    InvalidLimit {
        name: &'static str,
        value: usize,
        reason: &'static str,
    },
    /// A cost table has no points.
    #[error("the {table} cost table has no points")]
    EmptyCostTable { table: &'static str },
    /// A cost table point is unusable (n of 0, or a time that is not finite and > 0).
    #[error("{table} cost point n = {n}: {seconds} s is invalid ({reason})")]
    InvalidCostPoint {
        table: &'static str,
        n: usize,
        seconds: f64,
        reason: &'static str,
    },
    /// A cost table measures the same n twice.
    #[error("the {table} cost table has two points for n = {n}")]
    DuplicateCostPoint { table: &'static str, n: usize },
    /// A cost was asked for outside the measured range; extrapolation must be asked for explicitly.
    #[error("n = {n} is outside the measured range {min}..={max} of the {table} cost table")]
    OutOfRange {
        table: &'static str,
        n: usize,
        min: usize,
        max: usize,
    },
}
