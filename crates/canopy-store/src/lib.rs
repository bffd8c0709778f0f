//! canopy-store
