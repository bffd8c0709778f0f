//! Prints the cost model's predictions for a Llama-2-70B target on the reference profiles: the
//! figures quoted in docs/prediction.md. Model-based predictions, not measurements.
//!
//! Run: `cargo run -p canopy-hw --example predict70b`

use canopy_hw::model::recommend_placement;
use canopy_hw::{reference_profile, LayerSplit, ModelSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Llama-2-70B: 69.0 B parameters in 80 layers; Llama-2-7B: 6.74 B in 32.
    let targets = [("Q4_K_M", 41_400_000_000u64), ("fp16", 138_000_000_000)];
    let drafts = [("Q4_K_M", 4_080_000_000u64), ("fp16", 13_500_000_000)];
    for profile_name in [
        "rtx4090-pcie4",
        "rtx3090-pcie4",
        "rtx2080ti-pcie3",
        "rtx5090-pcie5",
        "cpu-only",
    ] {
        let profile = reference_profile(profile_name).ok_or("unknown profile")??;
        let m = &profile.cost_model;
        println!("== {profile_name}");
        for ((quant, bytes), (_, draft_bytes)) in targets.iter().zip(drafts) {
            let target = ModelSpec {
                bytes: *bytes,
                params: 69_000_000_000,
                layers: 80,
            };
            let draft = ModelSpec {
                bytes: draft_bytes,
                params: 6_740_000_000,
                layers: 32,
            };
            let llama_default = LayerSplit {
                resident_layers: 0,
                op_offload_min_batch: 32,
            };
            let forced_gpu = LayerSplit {
                resident_layers: 0,
                op_offload_min_batch: 1,
            };
            let chosen = recommend_placement(m, &target, draft.bytes, None);
            println!(
                "  70B {quant} ({:.1} GB), 7B draft {:.2} GB",
                *bytes as f64 / 1e9,
                draft.bytes as f64 / 1e9
            );
            let plain_cpu = m.target_pass(&target, &llama_default, 1).total_s;
            let plain_gpu = m.target_pass(&target, &forced_gpu, 1).total_s;
            println!("    plain decoding, host weights on the CPU (n=1 below the threshold): {plain_cpu:.3} s/token");
            if m.gpu.is_some() {
                println!("    plain decoding, weights streamed over PCIe (threshold 1):        {plain_gpu:.3} s/token");
                println!(
                    "    chosen placement: {} resident layers, GGML_OP_OFFLOAD_MIN_BATCH={}",
                    chosen.resident_layers, chosen.op_offload_min_batch
                );
                println!(
                    "    plain decoding in the chosen placement (n=1):                     {:.3} s/token",
                    m.target_pass(&target, &chosen, 1).total_s
                );
            }
            for n in [16, 64, 128, 256, 512, 768, 1024] {
                let t = m.target_pass(&target, &chosen, n);
                println!(
                    "    tree pass n={n:<4} {:.3} s  ({:?}: transfer {:.3}, gpu {:.3}, cpu {:.3})",
                    t.total_s, t.path, t.transfer_s, t.gpu_s, t.cpu_s
                );
            }
            println!(
                "    draft level k=1 {:.4} s, k=16 {:.4} s, k=128 {:.4} s",
                m.draft_level(&draft, 1),
                m.draft_level(&draft, 16),
                m.draft_level(&draft, 128)
            );
        }
    }
    Ok(())
}
