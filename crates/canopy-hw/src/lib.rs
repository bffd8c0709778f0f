//! Hardware profiler: what this machine is and what a pass of the engine costs on it.
//!
//! * [`system`]: CPU, RAM and OS facts (`sysinfo`) and measured host memory bandwidth.
//! * [`gpu`]: GPU facts and PCIe/device bandwidths through the CUDA driver, behind the `cuda`
//!   feature and loaded at run time.
//! * [`curves`]: engine cost curves measured through a [`PassTimer`] the engine provides.
//! * [`model`]: the analytic cost model for hardware Canopy cannot measure (reference profiles,
//!   targets larger than this machine), and the choice of op-offload threshold and resident layers.
//! * [`profile`]: the schema-versioned JSON profile and the built-in reference profiles.
//!
//! Architecture invariant: this crate knows nothing of llama.cpp; engine timings come in through
//! [`PassTimer`].

pub mod curves;
mod error;
pub mod gpu;
pub mod model;
pub mod placement;
pub mod profile;
mod stats;
pub mod system;

pub mod cpu_variant;
pub use curves::{
    crossover, interpolate, measure_curves, CostCurve, CurveGrid, CurveKind, CurvePoint, CurveStep,
    GridTimes, MeasuredCurves, OffloadPaths, PassTimer,
};
pub use error::{HwError, TimerError};
pub use gpu::{probe_gpu, GpuBandwidths, GpuFacts, GpuInfo, GpuProbeOptions, GpuStatus};
pub use model::{
    choose_resident_layers, recommend_placement, CostModel, GpuCostModel, LayerSplit, ModelSpec,
    PassBreakdown, PassPath, PredictedCosts,
};
pub use placement::{
    decide as decide_placement, decide_replanned, replan, runtime_floor, with_reserve, Footprint,
    PlacementDecision,
};
pub use profile::{
    find_profile, load_profile, reference_profile, AcceptanceRecord, CostPoints, ModelCurve,
    ModelRef, Profile, ProfileCurves, ProfileKind, RpcRecord, REFERENCE_PROFILES, SCHEMA_VERSION,
};
pub use stats::Spread;
pub use system::{
    measure_host_bandwidth, system_facts, HostBandwidth, HostBandwidthOptions, SystemFacts,
};
