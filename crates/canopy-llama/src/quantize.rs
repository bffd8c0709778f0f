//! Re-quantizing a GGUF model with llama.cpp (for example to make a smaller draft).

use std::ffi::CString;
use std::path::Path;

/// Quantization types offered by [`quantize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
}

impl QuantType {
    /// Parses `q4_0`, `q4_1`, `q5_0`, `q5_1` or `q8_0`.
    pub fn parse(s: &str) -> Option<QuantType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "q4_0" => QuantType::Q4_0,
            "q4_1" => QuantType::Q4_1,
            "q5_0" => QuantType::Q5_0,
            "q5_1" => QuantType::Q5_1,
            "q8_0" => QuantType::Q8_0,
            _ => return None,
        })
    }

    fn ftype(self) -> llama_cpp_sys_2::llama_ftype {
        match self {
            QuantType::Q4_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_0,
            QuantType::Q4_1 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_1,
            QuantType::Q5_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q5_0,
            QuantType::Q5_1 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q5_1,
            QuantType::Q8_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q8_0,
        }
    }
}

/// Writes `output`, a copy of `input` with its weights quantized to `kind` (re-quantizing an
/// already quantized model is allowed; quality drops accordingly). The input must be a valid GGUF.
///
/// # Errors
/// When the input is not a valid GGUF file, a path is not UTF-8, or llama.cpp fails.
pub fn quantize(input: &Path, output: &Path, kind: QuantType) -> Result<(), String> {
    canopy_gguf::validate(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let cpath = |p: &Path| {
        p.to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| format!("unsupported path {}", p.display()))
    };
    let (inp, out) = (cpath(input)?, cpath(output)?);
    // SAFETY: plain C calls with valid NUL-terminated paths and a params struct from llama.cpp's
    // own defaults, which outlives the call.
    let rc = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = kind.ftype();
        params.allow_requantize = true;
        params.nthread = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
        llama_cpp_sys_2::llama_model_quantize(inp.as_ptr(), out.as_ptr(), &params)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "llama.cpp could not quantize {} (code {rc})",
            input.display()
        ))
    }
}
