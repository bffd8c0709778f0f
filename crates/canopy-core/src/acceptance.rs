//! Measuring a draft/target pair's positional acceptance, for the command line's planning tools
//! (the profile wizard measures it as part of a profile).

use canopy_worker::{AcceptanceRequest, AcceptanceResult, CancelFlag, Event, Job, JobResult};

use crate::error::{CoreError, CoreResult};
use crate::Core;

impl Core {
    /// Measures how often the draft's k-th candidate is the target's token, over `request`'s
    /// prompts (the target on the CPU, as a profile measures it).
    ///
    /// # Errors
    /// A user error for bad numbers, missing or mismatched models, before any model is loaded
    /// where it can be; a worker failure as [`CoreError::Worker`].
    pub fn measure_acceptance(
        &self,
        request: AcceptanceRequest,
        cancel: &CancelFlag,
        on_event: &mut dyn FnMut(&Event),
    ) -> CoreResult<AcceptanceResult> {
        request.check().map_err(CoreError::User)?;
        for (path, what) in [(&request.target, "target"), (&request.draft, "draft")] {
            if !path.is_file() {
                return Err(CoreError::user(format!(
                    "{what} model {} does not exist",
                    path.display()
                )));
            }
        }
        match self
            .engine()
            .run(Job::Acceptance(request), None, cancel, on_event)?
        {
            JobResult::Acceptance(result) => Ok(result),
            other => Err(CoreError::internal(format!(
                "the worker answered an acceptance job with {other:?}"
            ))),
        }
    }
}
