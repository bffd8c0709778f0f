//! The application core's services, hermetic: a real SQLite store and real GGUF headers in a
//! temporary folder, and an in-process fake engine that streams scripted tokens, fails or crashes
//! on demand and records every job it was given. The real engine is tested end to end in `tests/`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use canopy_core::{ChatObserver, ChatSettings, Core, ErrorKind, Inference, ModelChoice, ModelPair};
use canopy_gguf::{GgmlType, GgufWriter};
use canopy_hw::PlacementDecision;
use canopy_store::MessageStatus;
use canopy_types::{Penalties, Placement, Plan, Sampling, Source, StopReason};
use canopy_worker::{
    CancelFlag, Event, GenerateRequest, GenerateResult, Job, JobResult, WorkerError,
};

/// What the fake does with the next generation.
#[derive(Clone)]
enum Script {
    /// Streams these pieces, then finishes.
    Reply(Vec<&'static str>),
    /// Streams these pieces, then the worker dies.
    CrashAfter(Vec<&'static str>),
    /// Refuses the request before any output.
    Refuse(&'static str),
    /// Streams pieces until cancelled.
    UntilCancelled,
    /// Reports the GPU's memory short by this many bytes while the request runs everything on
    /// the GPU; replies "fits" otherwise.
    ShortOnGpu(u64),
    /// Streams these pieces, then dies as llama.cpp does when CUDA runs out of memory mid-pass.
    OutOfMemoryAfter(Vec<&'static str>),
}

/// Every generation the fake was asked for, with its op-offload threshold.
type Jobs = Arc<Mutex<Vec<(GenerateRequest, Option<u32>)>>>;

#[derive(Clone)]
struct Fake {
    script: Arc<Mutex<Script>>,
    jobs: Jobs,
    /// What replies report of their live costs against a profile's.
    disagreement: Arc<Mutex<Option<f64>>>,
}

impl Fake {
    fn new(script: Script) -> Fake {
        Fake {
            script: Arc::new(Mutex::new(script)),
            jobs: Arc::default(),
            disagreement: Arc::default(),
        }
    }

    fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    fn last_job(&self) -> GenerateRequest {
        self.jobs.lock().unwrap().last().unwrap().0.clone()
    }
}

fn result(text: &str, tokens: u64, stop: StopReason) -> GenerateResult {
    GenerateResult {
        text: text.to_owned(),
        tokens,
        prefill_tokens: 7,
        prefill_ms: 1.0,
        decode_ms: 2.0,
        tokens_per_second: 10.0,
        stop_reason: stop,
        plan: "none".into(),
        steps: tokens,
        mean_accepted_per_step: 0.0,
        accepted_histogram: vec![tokens],
        budget: 1,
        depth: 0,
        draft_ms: 0.0,
        verify_ms: 2.0,
        provenance: vec![Source::Target; tokens as usize],
        token_ids: Vec::new(),
        margins: Vec::new(),
        target_weights: None,
        prefix_reused_tokens: 0,
        lookup_tokens: 0,
        lookup_accepted: 0,
        cost_disagreement: None,
        gpu_free_bytes: None,
    }
}

impl Inference for Fake {
    fn run(
        &mut self,
        job: Job,
        offload: Option<u32>,
        cancel: &CancelFlag,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<JobResult, WorkerError> {
        let Job::Generate(request) = job else {
            return Err(WorkerError::Internal("the fake only generates".into()));
        };
        self.jobs.lock().unwrap().push((request, offload));
        let token = |text: &str| Event::Token {
            id: 1,
            text: text.to_owned(),
            sources: vec![Source::Draft],
        };
        let script = self.script.lock().unwrap().clone();
        match script {
            Script::Reply(pieces) => {
                for p in &pieces {
                    on_event(&token(p));
                }
                let text = pieces.concat();
                Ok(JobResult::Generate(GenerateResult {
                    cost_disagreement: *self.disagreement.lock().unwrap(),
                    ..result(&text, pieces.len() as u64, StopReason::Eos)
                }))
            }
            Script::CrashAfter(pieces) => {
                for p in &pieces {
                    on_event(&token(p));
                }
                Err(WorkerError::Crashed {
                    status: "signal 9".into(),
                    detail: String::new(),
                })
            }
            Script::Refuse(msg) => Err(WorkerError::User(msg.into())),
            Script::ShortOnGpu(bytes) => {
                let placement = self.last_job().placement;
                if placement == Placement::Gpu {
                    return Err(WorkerError::GpuMemory {
                        message: "the GPU has too little free".into(),
                        short_by_bytes: Some(bytes),
                    });
                }
                on_event(&token("fits"));
                Ok(JobResult::Generate(result("fits", 1, StopReason::Eos)))
            }
            Script::OutOfMemoryAfter(pieces) => {
                for p in &pieces {
                    on_event(&token(p));
                }
                Err(WorkerError::Crashed {
                    status: "signal 6 (SIGABRT)".into(),
                    detail: ": CUDA error: out of memory".into(),
                })
            }
            Script::UntilCancelled => {
                let mut text = String::new();
                for _ in 0..10_000 {
                    if cancel.is_cancelled() {
                        break;
                    }
                    text.push_str("la ");
                    on_event(&token("la "));
                }
                let tokens = text.len() as u64 / 3;
                Ok(JobResult::Generate(result(
                    &text,
                    tokens,
                    StopReason::Cancelled,
                )))
            }
        }
    }
}

/// A small valid GGUF header with the shape of a llama model.
fn model(dir: &Path, name: &str, layers: u32) -> PathBuf {
    let bytes = GgufWriter::new()
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", layers)
        .kv_u32("llama.context_length", 2048)
        .kv_u32("llama.embedding_length", 64)
        .kv_u32("llama.attention.head_count", 4)
        .vocabulary("llama", &["<s>", "</s>", "a", "b"], 0, 1)
        .tensor("token_embd.weight", &[64, 4], GgmlType::F32)
        .to_bytes();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

struct World {
    _dir: tempfile::TempDir,
    core: Core,
    fake: Fake,
    target: PathBuf,
    draft: PathBuf,
}

fn world(script: Script) -> World {
    world_with(script, |_, _| canopy_hw::GpuStatus::NotBuilt)
}

/// A world whose GPU `gpu` makes from the target's and the draft's files.
fn world_with(script: Script, gpu: impl Fn(&Path, &Path) -> canopy_hw::GpuStatus) -> World {
    let dir = tempfile::tempdir().unwrap();
    let target = model(dir.path(), "target.gguf", 8);
    let draft = model(dir.path(), "draft.gguf", 2);
    let fake = Fake::new(script);
    let core = Core::new(dir.path().join("home"), Box::new(fake.clone()));
    core.set_gpu(gpu(&target, &draft));
    World {
        _dir: dir,
        core,
        fake,
        target,
        draft,
    }
}

fn pair(w: &World, with_draft: bool) -> ModelPair {
    ModelPair {
        target: Some(w.target.display().to_string()),
        draft: with_draft.then(|| w.draft.display().to_string()),
    }
}

fn greedy() -> ChatSettings {
    ChatSettings {
        sampling: Sampling::greedy(),
        ..ChatSettings::default()
    }
}

#[derive(Default)]
struct Heard {
    started: Option<(Plan, PlacementDecision)>,
    created: Option<canopy_store::MessageId>,
    text: String,
}

impl ChatObserver for Heard {
    fn started(&mut self, plan: Plan, placement: &PlacementDecision) {
        self.started = Some((plan, placement.clone()));
    }
    fn reply_created(&mut self, reply: canopy_store::MessageId) {
        self.created = Some(reply);
    }
    fn token(&mut self, text: &str, _: &[Source]) {
        self.text.push_str(text);
    }
}

#[test]
fn a_turn_is_saved_with_its_statistics() {
    let w = world(Script::Reply(vec!["Hello", " there"]));
    let conv = w
        .core
        .create_conversation("hi", Some(&pair(&w, true)), None, None)
        .unwrap();
    let user = w.core.add_user_message(conv.id, None, "Hi!").unwrap();
    let mut heard = Heard::default();
    let outcome = w
        .core
        .reply(conv.id, user.id, &greedy(), &mut heard, &CancelFlag::new())
        .unwrap();
    let reply = outcome.reply.unwrap();
    assert_eq!(reply.content, "Hello there");
    assert_eq!(reply.status, MessageStatus::Complete);
    assert_eq!(reply.parent_id, Some(user.id));
    assert_eq!(heard.text, "Hello there");
    assert_eq!(heard.created, Some(reply.id));
    let stats = reply.stats.unwrap();
    assert_eq!(stats.tokens, 2);
    // The conversation's own pair, auto plan, and on this machine the CPU.
    let (plan, placement) = heard.started.unwrap();
    assert_eq!(plan, Plan::Auto);
    assert_eq!(placement.placement, Placement::Cpu);
    let job = w.fake.last_job();
    assert_eq!(job.target, w.target);
    assert_eq!(job.draft.as_deref(), Some(w.draft.as_path()));
    assert_eq!(job.placement, Placement::Cpu);
    let thread = w.core.messages(conv.id).unwrap();
    assert_eq!(thread.len(), 2);
    assert_eq!(thread[0].role, canopy_types::ChatRole::User);
    assert_eq!(thread[1].id, reply.id);
}

#[test]
fn without_a_draft_a_turn_decodes_plainly() {
    let w = world(Script::Reply(vec!["ok"]));
    let conv = w
        .core
        .create_conversation("hi", Some(&pair(&w, false)), None, None)
        .unwrap();
    let user = w.core.add_user_message(conv.id, None, "Hi!").unwrap();
    w.core
        .reply(
            conv.id,
            user.id,
            &greedy(),
            &mut Heard::default(),
            &CancelFlag::new(),
        )
        .unwrap();
    let job = w.fake.last_job();
    assert_eq!(job.plan, Plan::None);
    assert_eq!(job.draft, None);
}

#[test]
fn a_cancelled_turn_keeps_its_partial_reply_as_interrupted() {
    let w = world(Script::UntilCancelled);
    let conv = w
        .core
        .create_conversation("hi", Some(&pair(&w, true)), None, None)
        .unwrap();
    let user = w.core.add_user_message(conv.id, None, "Sing").unwrap();
    let cancel = CancelFlag::new();
    struct StopAfter<'a>(&'a CancelFlag, usize);
    impl ChatObserver for StopAfter<'_> {
        fn token(&mut self, _: &str, _: &[Source]) {
            self.1 += 1;
            if self.1 == 5 {
                self.0.cancel();
            }
        }
    }
    let outcome = w
        .core
        .reply(
            conv.id,
            user.id,
            &greedy(),
            &mut StopAfter(&cancel, 0),
            &cancel,
        )
        .unwrap();
    let reply = outcome.reply.unwrap();
    assert_eq!(reply.status, MessageStatus::Interrupted);
    assert_eq!(reply.content, "la la la la la ");
    assert_eq!(outcome.result.unwrap().stop_reason, StopReason::Cancelled);
}

#[test]
fn a_worker_that_dies_mid_turn_leaves_the_partial_reply() {
    let w = world(Script::CrashAfter(vec!["The answer", " is"]));
    let conv = w
        .core
        .create_conversation("q", Some(&pair(&w, true)), None, None)
        .unwrap();
    let user = w.core.add_user_message(conv.id, None, "Why?").unwrap();
    let outcome = w
        .core
        .reply(
            conv.id,
            user.id,
            &greedy(),
            &mut Heard::default(),
            &CancelFlag::new(),
        )
        .unwrap();
    let err = outcome.result.unwrap_err();
    assert!(err.to_string().contains("stopped unexpectedly"), "{err}");
    let reply = outcome.reply.unwrap();
    assert_eq!(reply.content, "The answer is");
    assert_eq!(reply.status, MessageStatus::Interrupted);
    // The next turn works and answers the same message on a new branch.
    w.fake.set(Script::Reply(vec!["Because."]));
    let again = w
        .core
        .reply(
            conv.id,
            user.id,
            &greedy(),
            &mut Heard::default(),
            &CancelFlag::new(),
        )
        .unwrap();
    assert_eq!(again.reply.unwrap().content, "Because.");
    assert_eq!(w.core.messages(conv.id).unwrap().len(), 3);
}

#[test]
fn a_refused_request_leaves_no_empty_reply() {
    let w = world(Script::Refuse("the prompt is longer than the context"));
    let conv = w
        .core
        .create_conversation("q", Some(&pair(&w, false)), None, None)
        .unwrap();
    let user = w.core.add_user_message(conv.id, None, "long").unwrap();
    let outcome = w
        .core
        .reply(
            conv.id,
            user.id,
            &greedy(),
            &mut Heard::default(),
            &CancelFlag::new(),
        )
        .unwrap();
    let err = outcome.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::User);
    assert!(outcome.reply.is_none());
    let messages = w.core.messages(conv.id).unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
}

#[test]
fn bad_requests_are_refused_before_the_engine_runs() {
    let w = world(Script::Reply(vec!["x"]));
    let conv = w.core.create_conversation("q", None, None, None).unwrap();
    let user = w.core.add_user_message(conv.id, None, "hi").unwrap();
    let err = w
        .core
        .reply(
            conv.id,
            user.id,
            &greedy(),
            &mut Heard::default(),
            &CancelFlag::new(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("choose a model first"), "{err}");
    assert!(w.core.add_user_message(conv.id, None, "   ").is_err());
    let mut settings = greedy();
    settings.max_tokens = 0;
    assert!(w
        .core
        .reply(
            conv.id,
            user.id,
            &settings,
            &mut Heard::default(),
            &CancelFlag::new()
        )
        .is_err());
    // A context beyond the model's training is one clear line.
    let choice = ModelChoice {
        context: Some(100_000_000),
        ..ModelChoice::target_only(w.target.clone())
    };
    let err = w
        .core
        .prepare(
            &choice,
            canopy_worker::Prompt::Raw("x".into()),
            Sampling::greedy(),
            4,
            vec![],
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::User);
    assert!(err.to_string().contains("beyond the 2048"), "{err}");
    assert!(w.fake.jobs.lock().unwrap().is_empty());
}

/// A profile measured for `target`/`draft` in `placement`, saved in the store.
fn saved_profile(core: &Core, name: &str, target: &Path, draft: &Path, placement: Placement) {
    let mut p = canopy_hw::reference_profile("cpu-only").unwrap().unwrap();
    p.name = name.into();
    p.created_at = format!("2026-01-01T00:00:0{}Z", name.len() % 10);
    let model = |path: &Path| canopy_hw::ModelRef {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        bytes: 1,
        params: None,
        layers: Some(8),
        path: Some(std::fs::canonicalize(path).unwrap()),
    };
    let split = canopy_hw::LayerSplit {
        resident_layers: 0,
        op_offload_min_batch: 32,
    };
    let curve = |points: &[(usize, f64)]| canopy_hw::CostCurve {
        points: points
            .iter()
            .map(|&(n, s)| canopy_hw::CurvePoint {
                n,
                seconds: canopy_hw::Spread::exact(s),
            })
            .collect(),
    };
    p.curves = Some(canopy_hw::ProfileCurves {
        target: canopy_hw::ModelCurve {
            model: model(target),
            placement: split,
            curve: curve(&[(1, 0.1), (2, 0.2), (4, 0.4)]),
            rpc: None,
            offload_paths: None,
        },
        draft: Some(canopy_hw::ModelCurve {
            model: model(draft),
            placement: split,
            curve: curve(&[(1, 0.01), (2, 0.02)]),
            rpc: None,
            offload_paths: None,
        }),
        warmup: 1,
        repeats: 1,
    });
    p.acceptance = Some(canopy_hw::AcceptanceRecord {
        draft: "d".into(),
        target: "t".into(),
        temperature: 0.0,
        p: vec![0.5, 0.1],
    });
    p.placement = Some(placement);
    core.save_profile(&p).unwrap();
}

#[test]
fn auto_plans_only_from_a_profile_of_the_same_files_and_placement() {
    let w = world(Script::Reply(vec!["x"]));
    let choice = ModelChoice {
        draft: Some(w.draft.clone()),
        plan: Plan::Auto,
        ..ModelChoice::target_only(w.target.clone())
    };
    let prompt = || canopy_worker::Prompt::Raw("x".into());
    // No profile: the worker calibrates.
    let p = w
        .core
        .prepare(&choice, prompt(), Sampling::greedy(), 4, vec![])
        .unwrap();
    assert!(p.profile.is_none() && p.request.costs.is_none());
    // A profile of other files, and one of these files in another placement: not used.
    saved_profile(&w.core, "other-files", &w.draft, &w.target, Placement::Cpu);
    saved_profile(&w.core, "streamed", &w.target, &w.draft, Placement::Stream);
    let p = w
        .core
        .prepare(&choice, prompt(), Sampling::greedy(), 4, vec![])
        .unwrap();
    assert!(p.profile.is_none(), "{:?}", p.profile);
    // The matching one is.
    saved_profile(&w.core, "this-cpu", &w.target, &w.draft, Placement::Cpu);
    let p = w
        .core
        .prepare(&choice, prompt(), Sampling::greedy(), 4, vec![])
        .unwrap();
    assert_eq!(p.profile.as_deref(), Some("this-cpu"));
    assert_eq!(p.request.acceptance, Some(vec![0.5, 0.1]));
    assert_eq!(p.request.costs.unwrap().target.len(), 3);
    // A chat turn plans from it too.
    let conv = w
        .core
        .create_conversation("q", Some(&pair(&w, true)), None, None)
        .unwrap();
    let user = w.core.add_user_message(conv.id, None, "hi").unwrap();
    w.core
        .reply(
            conv.id,
            user.id,
            &greedy(),
            &mut Heard::default(),
            &CancelFlag::new(),
        )
        .unwrap();
    assert_eq!(w.fake.last_job().acceptance, Some(vec![0.5, 0.1]));
}

#[test]
fn settings_round_trip_through_the_store() {
    let w = world(Script::Reply(vec!["x"]));
    assert_eq!(w.core.chat_settings().unwrap(), ChatSettings::default());
    let settings = ChatSettings {
        plan: Plan::Tree(64),
        placement: Placement::Partial { layers: 10 },
        ..greedy()
    };
    w.core.save_chat_settings(&settings).unwrap();
    assert_eq!(w.core.chat_settings().unwrap(), settings);
    let mut bad = settings.clone();
    bad.max_tokens = 40_000;
    assert!(w.core.save_chat_settings(&bad).is_err());
}

/// Min-p and the penalties are saved with the rest; out of range, settings a front end sends are
/// refused when read, naming the setting.
#[test]
fn sampling_settings_are_checked_when_read() {
    let w = world(Script::Reply(vec!["x"]));
    let sampling = Sampling::chat_default()
        .with_min_p(0.2)
        .unwrap()
        .with_penalties(Penalties {
            last_n: 32,
            repeat: 1.3,
            frequency: 0.1,
            presence: -0.1,
        })
        .unwrap();
    let settings = ChatSettings {
        sampling,
        ..ChatSettings::default()
    };
    w.core.save_chat_settings(&settings).unwrap();
    assert_eq!(w.core.chat_settings().unwrap(), settings);

    let json = serde_json::to_value(&settings).unwrap();
    for (field, value, setting) in [
        ("min_p", serde_json::json!(1.5), "min-p"),
        ("repeat_penalty", serde_json::json!(0), "repeat-penalty"),
        ("repeat_last_n", serde_json::json!(5000), "repeat-last-n"),
        (
            "frequency_penalty",
            serde_json::json!(3),
            "frequency-penalty",
        ),
        (
            "presence_penalty",
            serde_json::json!(-3),
            "presence-penalty",
        ),
    ] {
        let mut bad = json.clone();
        bad[field] = value;
        let err = serde_json::from_value::<ChatSettings>(bad).unwrap_err();
        assert!(err.to_string().contains(setting), "{field}: {err}");
    }
    // Settings saved before min-p and the penalties existed read as having them off.
    let mut old = json;
    for field in [
        "min_p",
        "repeat_penalty",
        "repeat_last_n",
        "frequency_penalty",
        "presence_penalty",
    ] {
        old.as_object_mut().unwrap().remove(field);
    }
    let read: ChatSettings = serde_json::from_value(old).unwrap();
    assert_eq!(read.sampling.min_p(), 0.0);
    assert!(read.sampling.penalties().is_off());
}

#[test]
fn a_served_request_brings_only_its_own_half() {
    let w = world(Script::Reply(vec!["Hel", "lo"]));
    let choice = ModelChoice {
        context: Some(512),
        ..ModelChoice::target_only(w.target.clone())
    };
    let served = w.core.prepare_served(&choice).unwrap();
    assert_eq!(served.model_id(), "target");
    assert_eq!(served.context(), 512);
    assert!(
        w.fake.jobs.lock().unwrap().is_empty(),
        "preparing runs nothing"
    );

    // A request that names other files, another plan and a huge cache gets the served ones.
    let request = GenerateRequest {
        target: w.draft.clone(),
        draft: Some(w.draft.clone()),
        plan: Plan::Tree(64),
        context: Some(100_000),
        kv_cache_bytes: u64::MAX,
        prompt: canopy_worker::Prompt::Raw("say hello".into()),
        sampling: Sampling::greedy(),
        max_tokens: 9,
        stop: vec!["\n".into()],
        ..served.template().clone()
    };
    let mut streamed = String::new();
    let result = w
        .core
        .run_served(&served, request, &CancelFlag::new(), &mut |t| {
            streamed.push_str(t)
        })
        .unwrap();
    assert_eq!(
        (result.text.as_str(), streamed.as_str()),
        ("Hello", "Hello")
    );
    let job = w.fake.last_job();
    assert_eq!(job.target, w.target);
    assert_eq!(job.draft, None);
    assert_eq!(job.plan, Plan::None);
    assert_eq!(job.context, Some(512));
    assert_eq!(job.kv_cache_bytes, served.template().kv_cache_bytes);
    assert_eq!(job.prompt, canopy_worker::Prompt::Raw("say hello".into()));
    assert_eq!(
        (job.max_tokens, job.stop.clone()),
        (9, vec!["\n".to_owned()])
    );

    // Lengths the served context cannot hold are the request's fault, refused before the engine.
    for max_tokens in [0, 513] {
        let request = GenerateRequest {
            max_tokens,
            ..served.template().clone()
        };
        let err = w
            .core
            .run_served(&served, request, &CancelFlag::new(), &mut |_| {})
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::User, "{err}");
    }
    assert_eq!(w.fake.jobs.lock().unwrap().len(), 1);
}

#[test]
fn the_profile_view_says_when_live_costs_disagree_with_the_profile() {
    let w = world(Script::Reply(vec!["x"]));
    saved_profile(&w.core, "busy", &w.target, &w.draft, Placement::Cpu);
    let profile = w.core.find_profile("busy").unwrap();
    assert_eq!(
        w.core.profile_view(&profile).live,
        None,
        "nothing measured yet"
    );
    let choice = ModelChoice {
        draft: Some(w.draft.clone()),
        plan: Plan::Auto,
        ..ModelChoice::target_only(w.target.clone())
    };
    let run = |factor: f64| {
        *w.fake.disagreement.lock().unwrap() = Some(factor);
        let mut prepared = w
            .core
            .prepare(
                &choice,
                canopy_worker::Prompt::Raw("x".into()),
                Sampling::greedy(),
                4,
                vec![],
            )
            .unwrap();
        assert_eq!(prepared.profile.as_deref(), Some("busy"));
        w.core
            .generate(&mut prepared, &CancelFlag::new(), &mut |_| {})
            .unwrap();
        w.core.profile_view(&profile).live.unwrap()
    };
    let live = run(2.5);
    assert!(live.disagrees && live.factor == 2.5, "{live:?}");
    assert!(live.summary.contains("disagree"), "{}", live.summary);
    // The next reply's measurement replaces it.
    let live = run(1.1);
    assert!(!live.disagrees, "{live:?}");
    assert!(live.summary.contains("agree"), "{}", live.summary);
}

#[test]
fn profiles_an_earlier_version_kept_in_the_history_move_to_files_once() {
    let mut old = canopy_hw::reference_profile("cpu-only").unwrap().unwrap();
    old.name = "old-desk".into();
    let rows_of = |db: &Path| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT count(*) FROM hardware_profiles", [], |r| r.get(0))
            .unwrap()
    };
    let with_rows = |rows: &[(&str, String)]| {
        let w = world(Script::Reply(vec!["x"]));
        let db = w.core.data_dir().join("canopy.db");
        drop(canopy_store::Store::open(&db).unwrap());
        let conn = rusqlite::Connection::open(&db).unwrap();
        for (name, json) in rows {
            conn.execute(
                "INSERT INTO hardware_profiles(name, json, created_at) VALUES (?1, ?2, 1)",
                [name.to_string(), json.clone()],
            )
            .unwrap();
        }
        (w, db)
    };

    // Every row readable: moved, then forgotten.
    let (w, db) = with_rows(&[("old-desk", old.to_json())]);
    assert_eq!(w.core.find_profile("old-desk").unwrap(), old);
    assert_eq!(rows_of(&db), 0);

    let (w, db) = with_rows(&[("old-desk", old.to_json()), ("quick", "{}".into())]);

    let found = w.core.find_profile("old-desk").unwrap();
    assert_eq!(found.name, "old-desk");
    let file = w.core.profiles_dir().join("old-desk.json");
    assert_eq!(canopy_hw::load_profile(&file).unwrap(), old);
    // A row this version cannot read stays, so nothing is lost.
    assert_eq!(rows_of(&db), 2);

    // Saving writes the file only.
    let mut new = old.clone();
    new.name = "new-desk".into();
    let path = w.core.save_profile(&new).unwrap();
    assert_eq!(path, w.core.profiles_dir().join("new-desk.json"));
    assert_eq!(rows_of(&db), 2);
}

#[test]
fn the_history_is_read_and_edited_through_the_core() {
    let w = world(Script::Reply(vec!["x"]));
    let conv = w
        .core
        .create_conversation("first", None, None, None)
        .unwrap();
    w.core
        .add_user_message(conv.id, None, "where is the lighthouse")
        .unwrap();
    assert_eq!(w.core.conversations().unwrap().len(), 1);
    assert_eq!(w.core.messages(conv.id).unwrap().len(), 1);
    assert!(w.core.latest_leaf(conv.id).unwrap().is_some());

    assert_eq!(w.core.search_messages("lighthouse").unwrap().len(), 1);
    assert!(w.core.search_messages("   ").unwrap().is_empty());
    let long = "a".repeat(canopy_core::MAX_SEARCH_CHARS + 1);
    let err = w.core.search_messages(&long).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::User, "{err}");

    w.core.rename_conversation(conv.id, "  second\n").unwrap();
    assert_eq!(w.core.conversation(conv.id).unwrap().title, "second");
    assert_eq!(
        w.core.rename_conversation(conv.id, " ").unwrap_err().kind(),
        ErrorKind::User
    );

    let json = w
        .core
        .export_conversation(conv.id, canopy_core::ExportFormat::Json)
        .unwrap();
    let copy = w.core.import_conversation(&json).unwrap();
    assert_ne!(copy.id, conv.id);
    assert_eq!(w.core.messages(copy.id).unwrap().len(), 1);
    let markdown = w
        .core
        .export_conversation(conv.id, canopy_core::ExportFormat::Markdown)
        .unwrap();
    assert!(markdown.contains("lighthouse"), "{markdown}");
    let err = w.core.import_conversation("{}").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::User, "{err}");

    w.core.delete_conversation(conv.id).unwrap();
    let gone = w.core.conversation(conv.id).unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound);
}

/// A GPU on which the target and the draft, with their KV caches at the default context, fit
/// beside the placement rule's margin (1 GiB) with 64 KiB to spare: `auto` puts everything on it.
fn snug_gpu(target: &Path, draft: &Path) -> canopy_hw::GpuStatus {
    let need = |path: &Path| {
        let info = canopy_gguf::inspect(path).unwrap();
        let footprint = canopy_hw::Footprint::from_info(&info);
        footprint.bytes as f64 + footprint.kv_bytes(2048)
    };
    let free = (1u64 << 30) + (need(target) + need(draft)).ceil() as u64 + (64 << 10);
    canopy_hw::GpuStatus::Found(Box::new(canopy_hw::GpuInfo {
        facts: canopy_hw::GpuFacts {
            ordinal: 0,
            name: "snug card".into(),
            compute_capability: canopy_hw::gpu::ComputeCapability { major: 8, minor: 9 },
            vram_total_bytes: free + (512 << 20),
            vram_free_bytes: Some(free),
            multiprocessors: None,
            clock_mhz: None,
            memory_bus_bits: None,
            memory_clock_mhz: None,
            theoretical_memory_gb_per_s: None,
            peak_fp16_tflops: None,
        },
        bandwidths: None,
        other_devices: Vec::new(),
    }))
}

fn prepare_on(
    w: &World,
    placement: Placement,
) -> Result<canopy_core::Prepared, canopy_core::CoreError> {
    let choice = ModelChoice {
        draft: Some(w.draft.clone()),
        plan: Plan::Chain(2),
        placement,
        ..ModelChoice::target_only(w.target.clone())
    };
    w.core.prepare(
        &choice,
        canopy_worker::Prompt::Raw("x".into()),
        Sampling::greedy(),
        4,
        vec![],
    )
}

/// The worker finds less GPU memory free than the floor once the models are loaded: `auto`
/// re-plans with fewer resident layers and runs the request again, and later requests start from
/// the smaller placement.
#[test]
fn auto_re_plans_when_the_gpus_memory_runs_short() {
    let w = world_with(Script::ShortOnGpu(1 << 20), snug_gpu);
    let mut prepared = prepare_on(&w, Placement::Auto).unwrap();
    assert_eq!(
        prepared.decision.placement,
        Placement::Gpu,
        "{:?}",
        prepared.decision
    );
    assert_eq!(prepared.request.gpu_floor_bytes, 512 << 20);
    let mut text = String::new();
    let result = w
        .core
        .generate(&mut prepared, &CancelFlag::new(), &mut |e| {
            if let Event::Token { text: t, .. } = e {
                text.push_str(t);
            }
        })
        .unwrap();
    assert_eq!((result.text.as_str(), text.as_str()), ("fits", "fits"));
    let jobs: Vec<Placement> = w
        .fake
        .jobs
        .lock()
        .unwrap()
        .iter()
        .map(|j| j.0.placement)
        .collect();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[0], Placement::Gpu);
    assert!(
        matches!(jobs[1], Placement::Partial { layers } if layers < 8)
            || jobs[1] == Placement::Stream,
        "{jobs:?}"
    );
    // What ran is what `prepared` says, and why.
    assert_eq!(prepared.decision.placement, jobs[1]);
    assert!(prepared.decision.automatic);
    assert!(
        prepared.decision.summary.contains("re-planned"),
        "{}",
        prepared.decision.summary
    );
    assert!(w.core.gpu_reserve() > 1 << 20);
    // The next request starts where this one ended, with no failed attempt.
    let mut next = prepare_on(&w, Placement::Auto).unwrap();
    assert_eq!(next.decision.placement, jobs[1]);
    w.core
        .generate(&mut next, &CancelFlag::new(), &mut |_| {})
        .unwrap();
    assert_eq!(w.fake.jobs.lock().unwrap().len(), 3);
}

#[test]
fn a_placement_chosen_by_hand_is_not_changed_when_the_gpus_memory_runs_short() {
    let w = world_with(Script::ShortOnGpu(1 << 20), snug_gpu);
    let mut prepared = prepare_on(&w, Placement::Gpu).unwrap();
    let err = w
        .core
        .generate(&mut prepared, &CancelFlag::new(), &mut |_| {})
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::User, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("chosen by hand") && message.contains("layers:6"),
        "{message}"
    );
    assert_eq!(w.fake.jobs.lock().unwrap().len(), 1, "no second attempt");
    assert_eq!(w.core.gpu_reserve(), 0);
}

/// CUDA runs out of memory after the reply began: what was streamed stays, the request is not
/// run again (its text cannot be taken back), and the next request plans with more kept free.
#[test]
fn running_out_of_gpu_memory_mid_reply_is_reported_and_the_next_request_is_smaller() {
    let w = world_with(Script::OutOfMemoryAfter(vec!["Once", " upon"]), snug_gpu);
    let mut prepared = prepare_on(&w, Placement::Auto).unwrap();
    assert_eq!(prepared.decision.placement, Placement::Gpu);
    let mut text = String::new();
    let err = w
        .core
        .generate(&mut prepared, &CancelFlag::new(), &mut |e| {
            if let Event::Token { text: t, .. } = e {
                text.push_str(t);
            }
        })
        .unwrap_err();
    assert_eq!(text, "Once upon");
    let message = err.to_string();
    assert!(
        message.contains("out of memory") && message.contains("after the reply began"),
        "{message}"
    );
    assert_eq!(w.fake.jobs.lock().unwrap().len(), 1);
    w.fake.set(Script::Reply(vec!["ok"]));
    let next = prepare_on(&w, Placement::Auto).unwrap();
    assert_ne!(
        next.decision.placement,
        Placement::Gpu,
        "{:?}",
        next.decision
    );
}
