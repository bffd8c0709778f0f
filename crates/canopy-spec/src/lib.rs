//! canopy-spec
