//! The hardware profile wizard: detect → bandwidth → cost curves → acceptance → plan. The
//! measuring and saving are the application core's ([`canopy_core::Core::run_profile`]); this module
//! streams its stages to the window as [`ProfileView`]s.

use canopy_core::{Profile, ProfileObserver, ProfileSpec, ProfileStage, ProfileView};
use canopy_types::Placement;
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::{AppState, Task};

/// The wizard's steps: the core's stages and the plan chosen from them.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Detect,
    Bandwidth,
    Costs,
    Acceptance,
    Plan,
}

impl From<ProfileStage> for Step {
    fn from(stage: ProfileStage) -> Step {
        match stage {
            ProfileStage::Detect => Step::Detect,
            ProfileStage::Bandwidth => Step::Bandwidth,
            ProfileStage::Costs => Step::Costs,
            ProfileStage::Acceptance => Step::Acceptance,
        }
    }
}

#[derive(Clone, Debug, Serialize, ts_rs::TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProfileEvent {
    Step {
        step: Step,
        fraction: f64,
        note: String,
    },
    StepDone {
        step: Step,
        profile: Box<ProfileView>,
    },
}

/// The newest saved profile (made here or by `canopy profile`).
#[tauri::command]
pub fn latest_profile(state: State<'_, AppState>) -> Option<ProfileView> {
    let core = state.core();
    core.latest_profile().map(|p| core.profile_view(&p))
}

#[tauri::command]
pub fn cancel_profile(state: State<'_, AppState>) {
    state.inner.profile_cancel.cancel();
}

struct Forward<'c>(&'c Channel<ProfileEvent>);

impl Forward<'_> {
    fn step(&self, step: Step, fraction: f64, note: &str) {
        let _ = self.0.send(ProfileEvent::Step {
            step,
            fraction,
            note: note.to_owned(),
        });
    }

    fn done(&self, step: Step, profile: &Profile) {
        let _ = self.0.send(ProfileEvent::StepDone {
            step,
            profile: Box::new(ProfileView::of(profile)),
        });
    }
}

impl ProfileObserver for Forward<'_> {
    fn progress(&mut self, stage: ProfileStage, done: usize, total: usize, note: &str) {
        self.step(stage.into(), done as f64 / total.max(1) as f64, note);
    }

    fn finished(&mut self, stage: ProfileStage, profile: &Profile, note: &str) {
        self.step(stage.into(), 1.0, note);
        self.done(stage.into(), profile);
    }
}

/// Runs the profile for the library models `target` and `draft` (both or neither) in `placement`;
/// every finished step is streamed with the profile so far, and the final profile is saved where
/// `canopy` finds it too. Cancelling stops at the next safe point and saves nothing.
#[tauri::command]
pub async fn run_profile(
    state: State<'_, AppState>,
    quick: bool,
    target: Option<String>,
    draft: Option<String>,
    placement: Option<Placement>,
    on_event: Channel<ProfileEvent>,
) -> CommandResult<ProfileView> {
    let target = target.filter(|t| !t.is_empty());
    let draft = draft.filter(|d| !d.is_empty());
    if let (Some(t), Some(d)) = (&target, &draft) {
        state.core().check_pair(t, d)?;
    }
    let resolve = |id: &String| state.core().resolve_model(id);
    let spec = ProfileSpec {
        target: target.as_ref().map(resolve).transpose()?,
        draft: draft.as_ref().map(resolve).transpose()?,
        quick,
        placement: placement.unwrap_or_default(),
        origin: "the Canopy app".into(),
        ..ProfileSpec::default()
    };
    let guard = state.start(Task::Profile)?;
    let app = state.inner().clone();
    let result = tauri::async_runtime::spawn_blocking(move || {
        let cancel = &app.inner.profile_cancel;
        cancel.reset();
        let mut forward = Forward(&on_event);
        let (profile, _) = app.core().run_profile(&spec, &mut forward, cancel)?;
        let view = ProfileView::of(&profile);
        let note = match (&view.draft_model, view.budget) {
            (None, _) => "choose a target and a draft to plan for".to_owned(),
            (Some(_), b) if b <= 1 => "plain decoding is fastest here".to_owned(),
            (Some(_), b) => format!("{b} nodes, depth {}", view.depth),
        };
        forward.step(Step::Plan, 1.0, &note);
        forward.done(Step::Plan, &profile);
        Ok::<_, CommandError>(view)
    })
    .await
    .map_err(CommandError::internal)?;
    drop(guard);
    result
}
