//! When the GPU's memory runs short: the worker reports it (the models and contexts left less free
//! than [`canopy_hw::runtime_floor`], or llama.cpp could not allocate, or died of CUDA running out
//! of memory mid-pass), and `auto` decides the placement again with more kept free
//! ([`canopy_hw::replan`]) and runs the request again. The extra reserve stays for every later
//! decision of this process, so a conversation pays for a shortfall once.
//!
//! A placement chosen by hand is not changed: the user gets one line that says what to choose.
//! A shortfall after text was streamed is not retried (the text cannot be taken back); the next
//! request plans with the larger reserve.

use canopy_hw::PlacementDecision;
use canopy_worker::WorkerError;

use crate::error::{CoreError, CoreResult};
use crate::request::{kv_cache_budget, Prepared};
use crate::Core;

/// A request re-plans after at most this many shortfalls; the next one is reported.
const MAX_SHORTFALLS: usize = 4;

impl Core {
    /// GPU memory that runs of this process have shown must stay free beyond the placement
    /// rule's margin (0 until the GPU's memory runs short).
    pub fn gpu_reserve(&self) -> u64 {
        *self.gpu_reserve.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The GPU memory the worker must find free once the models and contexts are loaded: the
    /// rule's floor where this machine's GPU is used, else 0 (not checked). Not for targets split
    /// over RPC helpers, whose devices llama.cpp places.
    pub(crate) fn gpu_floor(&self, decision: &PlacementDecision, rpc: &[String]) -> u64 {
        let uses_gpu = decision.placement.uses_gpu() || decision.draft_on_gpu;
        match self.gpu().info() {
            Some(info) if uses_gpu && rpc.is_empty() => canopy_hw::runtime_floor(&info.facts),
            _ => 0,
        }
    }

    /// `prepared` (an automatic placement decided before a later shortfall grew the reserve)
    /// decided again with the reserve as it is now, so that a server's or a chat's later requests
    /// do not run into the same shortfall.
    pub(crate) fn refresh_placement(&self, prepared: &mut Prepared) {
        let reserve = self.gpu_reserve();
        if !prepared.decision.automatic || prepared.sizes.reserve == reserve {
            return;
        }
        let sizes = prepared.sizes.clone();
        let decision = self.decide_placement(
            canopy_types::Placement::Auto,
            &sizes.target,
            sizes.draft.as_ref(),
            sizes.context,
        );
        self.use_decision(prepared, decision, reserve);
    }

    /// After `err`, a shortfall of GPU memory (the `shortfalls`-th of this request): `prepared`
    /// re-planned to run again, or the error to report.
    pub(crate) fn after_gpu_memory(
        &self,
        prepared: &mut Prepared,
        err: WorkerError,
        generated: bool,
        shortfalls: usize,
    ) -> CoreResult<()> {
        let short_by = match &err {
            WorkerError::GpuMemory { short_by_bytes, .. } => *short_by_bytes,
            _ => None,
        };
        let placement = prepared.decision.placement;
        if !prepared.decision.automatic {
            return Err(CoreError::user(format!(
                "{}: the GPU's memory ran short with placement {placement}, chosen by hand: choose {}",
                err_line(&err),
                smaller_by_hand(&prepared.decision)
            )));
        }
        let Some(info) = self.gpu().info() else {
            return Err(err.into());
        };
        let sizes = &prepared.sizes;
        let Some((next, reserve)) = canopy_hw::replan(
            placement,
            &info.facts,
            &sizes.target,
            sizes.draft.as_ref(),
            sizes.context,
            self.gpu_reserve().max(sizes.reserve),
            short_by,
        ) else {
            return Err(err.into());
        };
        *self.gpu_reserve.lock().unwrap_or_else(|p| p.into_inner()) = reserve;
        if generated || shortfalls > MAX_SHORTFALLS {
            let why = match generated {
                true => "after the reply began",
                false => "again after re-planning",
            };
            return Err(CoreError::user(format!(
                "{}: the GPU's memory ran short {why}; the next request keeps {} MiB more free and runs with placement {next}",
                err_line(&err),
                reserve >> 20
            )));
        }
        let target = &sizes.target;
        let decision = self.decide_with(target, &|facts, threshold| {
            canopy_hw::decide_replanned(next, facts, target, threshold)
        });
        self.use_decision(prepared, decision, reserve);
        Ok(())
    }

    /// Puts `decision` into `prepared`, with what depends on it: the KV cache budget, the floor,
    /// and no profile's cost curves (they were measured in the other placement; the worker
    /// calibrates).
    fn use_decision(&self, prepared: &mut Prepared, decision: PlacementDecision, reserve: u64) {
        let decision = self.with_measured_threshold(decision, &prepared.request.target);
        let sizes = &prepared.sizes;
        let request = &mut prepared.request;
        if decision.placement != request.placement {
            request.costs = None;
            prepared.profile = None;
        }
        request.placement = decision.placement;
        request.kv_cache_bytes = kv_cache_budget(
            &decision,
            &sizes.target,
            sizes.draft.as_ref(),
            sizes.context,
        );
        request.gpu_floor_bytes = self.gpu_floor(&decision, &request.rpc);
        prepared.decision = decision;
        prepared.sizes.reserve = reserve;
    }
}

/// The worker's error in one line (a crash's line names the signal and llama.cpp's last word).
fn err_line(err: &WorkerError) -> String {
    err.to_string()
        .split("; the next request starts a new worker")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// What to choose instead of a placement chosen by hand.
fn smaller_by_hand(decision: &PlacementDecision) -> String {
    match decision.resident_layers {
        0 => "placement cpu, or auto".to_owned(),
        n => format!(
            "fewer resident layers (for example layers:{}) or placement auto",
            n - (n / 4).max(1)
        ),
    }
}
