//! Canopy's application core: the one boundary every front end (the `canopy` command, the desktop
//! app, the HTTP server) calls. A rule written here holds everywhere; a rule written in a front end
//! holds nowhere else, so front ends only translate (flags, Tauri channels, JSON) and call this.
//!
//! Services, each usable in-process and testable with a fake inference engine:
//! - requests: a [`ModelChoice`] becomes a checked [`canopy_worker::GenerateRequest`] with its
//!   placement resolved for this machine and, for `auto`, the matching profile's measurements
//!   ([`Core::prepare`]);
//! - chat turns: store the user's message, generate with the conversation's own models, save the
//!   reply as it streams, return the statistics ([`Core::reply`]);
//! - profiling: measure this machine and a model pair and save one profile schema
//!   ([`Core::run_profile`]);
//! - the model library: registry access and draft pairing with a cache ([`Core::check_pair`]);
//! - serving: a model set prepared once, each request run with only its own half
//!   ([`Core::prepare_served`], [`Core::run_served`]).
//!
//! *Architecture Invariant:* knows nothing of clap, Tauri or HTTP; never runs a model in its own
//! process (inference goes through [`Inference`]).

mod acceptance;
mod chat;
mod engine;
mod error;
mod history;
mod hub;
mod library;
mod planning;
mod profile_view;
mod profiles;
mod profiling;
mod prompts;
mod registry;
mod replan;
mod request;
mod served;
mod settings;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use canopy_hw::GpuStatus;
use canopy_models::Library;
use canopy_store::Store;

pub use chat::{clean_title, stats_of, title_from, ChatObserver, TurnOutcome, MAX_MESSAGE_CHARS};
pub use engine::{Inference, WorkerEngine};
pub use error::{CoreError, CoreResult, ErrorKind};
pub use history::{ExportFormat, MAX_SEARCH_CHARS};
pub use hub::{HubDraftView, HubFileView, HubRepoView, HubTokenStatus};
pub use library::{DownloadSource, Downloaded, ModelView, PairView};
pub use profile_view::{measured_placement, placement_of};
pub use profile_view::{Bandwidth, Fact, LiveCheck, Node, Point, ProfileView, LIVE_DISAGREEMENT};
pub use profiles::measured_for;
pub use profiling::{
    ProfileObserver, ProfileSpec, ProfileStage, ACCEPTANCE_POSITIONS, ACCEPTANCE_WIDTH,
};
pub use prompts::load_prompts;
pub use registry::{FitReport, LibraryListing, MetadataEntryView, ModelDetails};

/// A placement's decision and a saved profile, as the core's services return them.
pub use canopy_hw::{PlacementDecision, Profile};
pub use planning::{PlanOutcome, PlanQuery, Replay, SimulateQuery, Simulation};

/// The planner's and the cost model's plain data, as the planning tools return them.
pub use canopy_hw::{LayerSplit, ModelSpec};
pub use canopy_plan::{Choice, Limits, PlanNode, TreePlan, LLAMA_MAX_LEAVES};
pub use request::{ModelChoice, Prepared};
pub use served::Served;
pub use settings::{ChatSettings, ModelPair, ServerSettings, MAX_REPLY_TOKENS};

/// The model library's records, as the core's services return them.
pub use canopy_gguf::ModelInfo;
pub use canopy_models::hub::HubDownload;
pub use canopy_models::pairing::fmt_params;
pub use canopy_models::{
    fmt_bytes, Badge, Catalog, DeleteFile, DownloadEvent, DownloadRequest, FitEstimate, HashEvent,
    HashJob, HashState, HubEvent, ImportMode, Listing, MachineFacts, ModelId, ModelRecord,
    ModelsError, Pairing, Role, ScanReport, Verdict,
};

/// The chat history's records, as the core's services return them.
pub use canopy_store::{
    utc_datetime, Conversation, ConversationId, GenerationStats, Message, MessageId, MessageStatus,
    SearchHit, StoreError,
};

/// The plain data a front end exchanges with inference through the core: requests, their
/// results and streamed events, and the flag that cancels them.
pub use canopy_worker::{
    AcceptanceRequest, AcceptanceResult, CancelFlag, ChatMessage, Event, GenerateRequest,
    GenerateResult, Prompt, WorkerError, DEFAULT_CONTEXT, MAX_ACCEPTANCE_WIDTH,
};

/// The application: data folders, the chat store, the model library and the inference engine.
pub struct Core {
    data_dir: PathBuf,
    store: OnceLock<Result<Mutex<Store>, String>>,
    library: OnceLock<Result<Mutex<Library>, String>>,
    engine: Mutex<Box<dyn Inference>>,
    gpu: OnceLock<GpuStatus>,
    /// Bandwidths measured by this process (a profile run), the best figures the cost model has.
    measured: Mutex<Option<(canopy_hw::HostBandwidth, GpuStatus)>>,
    pairs: library::PairCache,
    /// Set once profiles an earlier Canopy kept in the chat store have been moved to files.
    legacy_profiles_moved: std::sync::Once,
    /// GPU memory kept free beyond the placement rule's margin, grown when it ran short
    /// ([`Core::gpu_reserve`]).
    gpu_reserve: Mutex<u64>,
}

impl Core {
    /// The application over `data_dir` (chat history, library and profiles live there), running
    /// inference through `engine`. Nothing is opened until first used.
    pub fn new(data_dir: PathBuf, engine: Box<dyn Inference>) -> Core {
        Core {
            data_dir,
            store: OnceLock::new(),
            library: OnceLock::new(),
            engine: Mutex::new(engine),
            gpu: OnceLock::new(),
            measured: Mutex::new(None),
            pairs: library::PairCache::default(),
            legacy_profiles_moved: std::sync::Once::new(),
            gpu_reserve: Mutex::new(0),
        }
    }

    /// `$CANOPY_HOME`, else the platform data directory followed by `canopy`.
    ///
    /// # Errors
    /// When neither exists (no home directory).
    pub fn default_data_dir() -> CoreResult<PathBuf> {
        canopy_store::data_dir().map_err(|e| CoreError::Unavailable(e.to_string()))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn models_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }

    pub fn profiles_dir(&self) -> PathBuf {
        self.data_dir.join("profiles")
    }

    /// The chat store, locked for a short operation. It never leaves the core: front ends use
    /// its services.
    ///
    /// # Errors
    /// [`CoreError::Unavailable`] when it could not be opened (the reason is kept and repeated).
    pub(crate) fn store(&self) -> CoreResult<MutexGuard<'_, Store>> {
        let opened = self.store.get_or_init(|| {
            Store::open(&self.store_path())
                .map(Mutex::new)
                .map_err(|e| format!("the chat history could not be opened: {e}"))
        });
        match opened {
            Ok(store) => Ok(store.lock().unwrap_or_else(|p| p.into_inner())),
            Err(why) => Err(CoreError::Unavailable(why.clone())),
        }
    }

    fn store_path(&self) -> PathBuf {
        self.data_dir.join("canopy.db")
    }

    /// A connection of its own, for a long write (a streaming reply) that must not hold the
    /// shared store's lock.
    fn own_store(&self) -> CoreResult<Store> {
        Ok(Store::open(&self.store_path())?)
    }

    /// The model registry, locked for one service call; it never leaves the core.
    ///
    /// # Errors
    /// [`CoreError::Unavailable`] when it could not be opened.
    pub(crate) fn library(&self) -> CoreResult<MutexGuard<'_, Library>> {
        let opened = self.library.get_or_init(|| {
            Library::open(&self.data_dir.join("library.db"), &self.models_dir())
                .map(Mutex::new)
                .map_err(|e| format!("the model library could not be opened: {e}"))
        });
        match opened {
            Ok(library) => Ok(library.lock().unwrap_or_else(|p| p.into_inner())),
            Err(why) => Err(CoreError::Unavailable(why.clone())),
        }
    }

    /// The inference engine, locked for one job. It never leaves the core: front ends run jobs
    /// through its services.
    pub(crate) fn engine(&self) -> MutexGuard<'_, Box<dyn Inference>> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the inference worker (waiting for a running job); the next job starts a fresh one
    /// (with freshly loaded models and an empty cache).
    pub fn restart_worker(&self) {
        self.engine().shutdown();
    }

    /// This machine's GPU as the CUDA driver reports it (probed once, without timing copies).
    pub fn gpu(&self) -> &GpuStatus {
        self.gpu.get_or_init(|| {
            let options = canopy_hw::GpuProbeOptions {
                measure_bandwidth: false,
                ..canopy_hw::GpuProbeOptions::quick()
            };
            canopy_hw::probe_gpu(&options, &mut |_, _| {}).unwrap_or_else(|e| GpuStatus::NotFound {
                reason: e.to_string(),
            })
        })
    }

    /// Uses `gpu` instead of probing (tests, and front ends that probed already).
    pub fn set_gpu(&self, gpu: GpuStatus) {
        let _ = self.gpu.set(gpu);
    }

    /// The cost model placement decisions use, from the best measurements there are: this
    /// process's own (a profile run measured them), else the newest saved profile measured on
    /// this machine with this GPU, else the model's defaults (`measured` false).
    pub fn cost_model(&self) -> (canopy_hw::CostModel, bool) {
        let facts = canopy_hw::system_facts();
        let live = self
            .measured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (host, gpu) = match live {
            Some((host, gpu)) => (Some(host), Some(gpu)),
            None => self.saved_measurements(&facts),
        };
        let measured = host.is_some()
            && gpu
                .as_ref()
                .is_none_or(|g| g.info().is_none_or(|i| i.bandwidths.is_some()));
        let gpu = gpu.as_ref().unwrap_or_else(|| self.gpu());
        let model = canopy_hw::CostModel::from_measurements(&facts, host.as_ref(), gpu);
        (model, measured)
    }

    /// Records bandwidths this process measured, for every later placement decision.
    pub(crate) fn set_measured(&self, host: canopy_hw::HostBandwidth, gpu: GpuStatus) {
        *self.measured.lock().unwrap_or_else(|p| p.into_inner()) = Some((host, gpu));
    }

    /// Host and GPU bandwidths from the newest saved profile measured on this machine (same CPU)
    /// with the GPU this process sees (same name, bandwidths measured).
    fn saved_measurements(
        &self,
        facts: &canopy_hw::SystemFacts,
    ) -> (Option<canopy_hw::HostBandwidth>, Option<GpuStatus>) {
        let here = self.gpu().info().map(|i| i.facts.name.clone());
        self.saved_profiles()
            .into_iter()
            .filter(|p| p.kind == canopy_hw::ProfileKind::Measured)
            .filter(|p| {
                p.machine
                    .as_ref()
                    .is_some_and(|m| m.cpu_model == facts.cpu_model)
            })
            .find_map(|p| {
                let host = p.host_memory.clone()?;
                match (&here, p.gpu.info()) {
                    (None, _) => Some((Some(host), None)),
                    (Some(name), Some(info))
                        if &info.facts.name == name && info.bandwidths.is_some() =>
                    {
                        Some((Some(host), Some(p.gpu.clone())))
                    }
                    _ => None,
                }
            })
            .unwrap_or((None, None))
    }
}
