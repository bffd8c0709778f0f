//! canopy-gguf
