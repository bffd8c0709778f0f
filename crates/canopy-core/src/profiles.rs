//! Saved hardware profiles: one schema ([`canopy_hw::Profile`]), one store, one matching rule.
//!
//! A profile is saved one way: as a JSON file in the data folder's `profiles` folder, which
//! `--profile NAME`, every front end and people read. Profiles an earlier Canopy kept in the chat
//! store are moved there once. `auto` plans only from a profile measured for the same target and
//! draft files in the same placement.

use std::path::{Path, PathBuf};

use canopy_hw::Profile;
use canopy_types::Placement;

use crate::error::{CoreError, CoreResult};
use crate::profile_view::{measured_placement, LiveCheck, ProfileView};
use crate::Core;

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Whether `profile` holds curves measured for these files in `placement`, with the target split
/// over the same RPC helpers (none for a local target).
pub fn measured_for(
    profile: &Profile,
    target: &Path,
    draft: &Path,
    placement: Placement,
    rpc: &[String],
) -> bool {
    let Some(curves) = &profile.curves else {
        return false;
    };
    let same = |model: &canopy_hw::ModelRef, want: &Path| {
        model.path.as_deref().map(canonical).as_deref() == Some(&canonical(want))
    };
    same(&curves.target.model, target)
        && curves.draft.as_ref().is_some_and(|d| same(&d.model, draft))
        && measured_placement(profile) == Some(placement)
        && curves.target.rpc_helpers() == rpc
        && same_cpu_variant(profile, canopy_hw::cpu_variant::expected().as_deref())
}

/// Whether `profile` was measured with the CPU variant `here` (llama.cpp's kernels, and so its pass
/// times, differ between variants: a profile measured with AMX kernels is not this machine's cost
/// when they are off). Profiles written before the variant was recorded match any.
pub fn same_cpu_variant(profile: &Profile, here: Option<&str>) -> bool {
    match profile
        .machine
        .as_ref()
        .and_then(|m| m.cpu_variant.as_deref())
    {
        Some(measured) => Some(measured) == here,
        None => true,
    }
}

impl Core {
    /// Every saved profile (unreadable files skipped), newest first.
    pub fn saved_profiles(&self) -> Vec<Profile> {
        self.legacy_profiles_moved
            .call_once(|| self.move_legacy_profiles());
        let mut found: Vec<Profile> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.profiles_dir()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "json") {
                    if let Ok(profile) = canopy_hw::load_profile(&path) {
                        found.push(profile);
                    }
                }
            }
        }
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        found
    }

    /// Writes each profile an earlier Canopy kept in the chat store as `<name>.json` in the
    /// profiles folder (the newest of a name, unless that file exists), then forgets the rows;
    /// rows that could not be moved stay for the next start.
    fn move_legacy_profiles(&self) {
        let Ok(store) = self.store() else {
            return;
        };
        let Ok(rows) = store.legacy_profiles() else {
            return;
        };
        let mut all_moved = !rows.is_empty();
        for (_, json) in &rows {
            let Ok(profile) = Profile::from_json(json, Path::new("<chat history>")) else {
                all_moved = false;
                continue;
            };
            let path = self.profile_file(&profile.name);
            if !path.exists() && profile.save(&path).is_err() {
                all_moved = false;
            }
        }
        if all_moved {
            let _ = store.forget_legacy_profiles();
        }
    }

    fn profile_file(&self, name: &str) -> PathBuf {
        self.profiles_dir().join(format!("{name}.json"))
    }

    /// The newest saved profile measured for these target and draft files in `placement` over
    /// the RPC helpers `rpc`.
    pub fn profile_for(
        &self,
        target: &Path,
        draft: &Path,
        placement: Placement,
        rpc: &[String],
    ) -> Option<Profile> {
        self.saved_profiles()
            .into_iter()
            .find(|p| measured_for(p, target, draft, placement, rpc))
    }

    /// The screen's view of `profile`, with what live measurements said of it.
    pub fn profile_view(&self, profile: &Profile) -> ProfileView {
        ProfileView {
            live: self.live_check(&profile.name),
            ..ProfileView::of(profile)
        }
    }

    /// What the last generation planned from profile `name` measured of its costs.
    pub fn live_check(&self, name: &str) -> Option<LiveCheck> {
        let json = self.store().ok()?.get_setting(&live_key(name)).ok()??;
        serde_json::from_str(&json).ok()
    }

    /// Records what a generation planned from profile `name` measured; a store that cannot be
    /// written loses only this note.
    pub(crate) fn record_live_check(&self, name: &str, factor: f64) {
        let check = LiveCheck::measured_now(factor);
        if let (Ok(store), Ok(json)) = (self.store(), serde_json::to_string(&check)) {
            let _ = store.set_setting(&live_key(name), &json);
        }
    }

    /// The newest saved profile, whatever it measured.
    pub fn latest_profile(&self) -> Option<Profile> {
        self.saved_profiles().into_iter().next()
    }

    /// A profile by name (saved or reference) or JSON file path.
    ///
    /// # Errors
    /// A user error naming the profiles that exist when none matches.
    pub fn find_profile(&self, spec: &str) -> CoreResult<Profile> {
        if let Some(p) = self.saved_profiles().into_iter().find(|p| p.name == spec) {
            return Ok(p);
        }
        canopy_hw::find_profile(spec, &self.profiles_dir())
            .map_err(|e| CoreError::user(e.to_string()))
    }

    /// Saves `profile` as `<profiles dir>/<name>.json`, returning that file.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save_profile(&self, profile: &Profile) -> CoreResult<PathBuf> {
        let path = self.profile_file(&profile.name);
        profile
            .save(&path)
            .map_err(|e| CoreError::internal(format!("saving the profile: {e}")))?;
        Ok(path)
    }
}

fn live_key(profile: &str) -> String {
    format!("profile.live.{profile}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_used_only_with_the_cpu_variant_it_was_measured_with() {
        let name = canopy_hw::REFERENCE_PROFILES[0].0;
        let mut p = canopy_hw::reference_profile(name)
            .expect("a reference profile")
            .expect("it parses");
        p.machine = Some(canopy_hw::system_facts());
        let here = p.machine.as_ref().unwrap().cpu_variant.clone();
        assert!(same_cpu_variant(&p, here.as_deref()));
        if let Some(m) = p.machine.as_mut() {
            m.cpu_variant = Some("sapphirerapids".into());
        }
        assert!(same_cpu_variant(&p, Some("sapphirerapids")));
        assert!(
            !same_cpu_variant(&p, Some("zen4")),
            "AMX timings are not zen4's"
        );
        assert!(!same_cpu_variant(&p, None));
        // Written before the variant was recorded: usable anywhere.
        if let Some(m) = p.machine.as_mut() {
            m.cpu_variant = None;
        }
        assert!(same_cpu_variant(&p, Some("zen4")));
    }
}
