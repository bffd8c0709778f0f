//! canopy-models
