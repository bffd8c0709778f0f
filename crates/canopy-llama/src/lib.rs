//! canopy-llama
