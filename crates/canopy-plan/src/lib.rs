//! canopy-plan
