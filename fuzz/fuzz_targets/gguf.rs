//! Feeds arbitrary bytes to the GGUF validator: it must refuse or accept, never panic, hang or
//! allocate beyond what the input justifies. When it accepts, the summary must be computable too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = canopy_gguf::validate_bytes(data) {
        for t in header.tensors() {
            assert!(t.data_start + t.n_bytes <= data.len() as u64);
        }
        let _ = canopy_gguf::ModelInfo::from_header(&header);
        let _ = canopy_gguf::Vocabulary::from_header(&header).fingerprint();
    }
});
