//! canopy-hw
