//! canopy-worker
