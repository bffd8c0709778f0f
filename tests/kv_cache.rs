//! A conversation's KV cache survives between requests in the real worker (`canopy worker`, real
//! llama.cpp, SmolLM2 from `scripts/fetch-models --all`): the next turn decodes only what is new,
//! and its greedy text is byte-identical to the same turn in a fresh context. SmolLM2 is
//! batch-invariant on the CPU (crates/canopy-llama/tests/exactness.rs), so identity is expected
//! for every plan, drafting for itself and with a re-quantized draft.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use canopy_worker::{
    CancelFlag, ChatMessage, ChatRole, GenerateRequest, GenerateResult, Placement, Plan, Prompt,
    Sampling, Supervisor, WorkerCommand,
};

/// Enough for a few short conversations of SmolLM2 at its 2048-token context.
const BUDGET: u64 = 512 << 20;

fn supervisor() -> Supervisor {
    Supervisor::new(WorkerCommand {
        program: common::CANOPY.into(),
        args: vec!["worker".into()],
        env: Vec::new(),
    })
}

/// SmolLM2 re-quantized to Q4_0, a draft with the same vocabulary that the target rejects.
fn requantized() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("canopy-kv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("SmolLM2-135M-Instruct.Q4_0.gguf");
        canopy_llama::quantize(&common::smollm2(), &out, canopy_llama::QuantType::Q4_0)
            .expect("quantize");
        out
    })
    .clone()
}

fn user(text: &str) -> ChatMessage {
    ChatMessage {
        role: ChatRole::User,
        content: text.into(),
    }
}

fn assistant(text: &str) -> ChatMessage {
    ChatMessage {
        role: ChatRole::Assistant,
        content: text.into(),
    }
}

fn request(
    messages: &[ChatMessage],
    draft: Option<PathBuf>,
    plan: Plan,
    budget: u64,
) -> GenerateRequest {
    GenerateRequest {
        target: common::smollm2(),
        draft,
        prompt: Prompt::Chat(messages.to_vec()),
        sampling: Sampling::greedy(),
        max_tokens: 16,
        stop: Vec::new(),
        plan,
        context: Some(1024),
        placement: Placement::Cpu,
        acceptance: None,
        costs: None,
        inexact_cache: false,
        rpc: Vec::new(),
        rpc_layers: None,
        kv_cache_bytes: budget,
        no_lookup: false,
        gpu_floor_bytes: 0,
    }
}

fn run(s: &mut Supervisor, r: GenerateRequest) -> GenerateResult {
    s.generate(r, &CancelFlag::new(), &mut |_, _| {})
        .expect("generation")
}

/// Three turns with the cache against each turn alone in a fresh context (`fresh` keeps nothing).
fn conversation(
    cached: &mut Supervisor,
    fresh: &mut Supervisor,
    draft: Option<PathBuf>,
    plan: Plan,
) {
    let mut messages = vec![user("Name three trees.")];
    let questions = [
        "Which one grows fastest?",
        "Describe its leaves in one sentence.",
    ];
    for turn in 0..3 {
        let with_cache = run(cached, request(&messages, draft.clone(), plan, BUDGET));
        let alone = run(fresh, request(&messages, draft.clone(), plan, 0));
        assert_eq!(
            with_cache.token_ids,
            alone.token_ids,
            "{plan} turn {}: the reused cache changed the output",
            turn + 1
        );
        assert_eq!(alone.prefix_reused_tokens, 0);
        if turn > 0 {
            assert!(
                with_cache.prefix_reused_tokens > 10,
                "{plan} turn {}: nothing reused: {with_cache:?}",
                turn + 1
            );
            assert_eq!(
                with_cache.prefill_tokens + with_cache.prefix_reused_tokens,
                alone.prefill_tokens,
                "reused and decoded make up the prompt"
            );
        }
        messages.push(assistant(&with_cache.text));
        if let Some(q) = questions.get(turn) {
            messages.push(user(q));
        }
    }
}

#[test]
fn later_turns_reuse_the_cache_and_print_the_same_text() {
    // One worker each for every conversation: the models load once, `auto` calibrates once.
    let (mut cached, mut fresh) = (supervisor(), supervisor());
    let smol = Some(common::smollm2());
    for (draft, plan) in [
        (None, Plan::None),
        (smol.clone(), Plan::chain(4).unwrap()),
        (smol.clone(), Plan::tree(16).unwrap()),
        (smol, Plan::Auto),
        (Some(requantized()), Plan::tree(16).unwrap()),
    ] {
        conversation(&mut cached, &mut fresh, draft, plan);
    }
}

#[test]
fn an_edited_message_reuses_up_to_its_first_changed_token() {
    let mut s = supervisor();
    let base = vec![
        user("Write one line about the sea."),
        assistant("The sea is wide and grey."),
        user("Now one line about the mountains, please."),
    ];
    run(&mut s, request(&base, None, Plan::None, BUDGET));
    let mut edited = base.clone();
    edited[2] = user("Now one line about the desert, please.");
    let r = run(&mut s, request(&edited, None, Plan::None, BUDGET));
    let fresh = run(&mut supervisor(), request(&edited, None, Plan::None, 0));
    assert_eq!(r.token_ids, fresh.token_ids);
    // Everything before "desert" is reused, nothing after it.
    assert!(r.prefix_reused_tokens > 20, "{r:?}");
    assert!(r.prefill_tokens >= 4, "{r:?}");
    assert!(r.prefill_tokens < fresh.prefill_tokens);
}

#[test]
fn no_reuse_across_models_and_the_budget_evicts() {
    let mut s = supervisor();
    let messages = vec![user("Say hello.")];
    let longer = [messages.clone(), vec![assistant("Hello!"), user("Again.")]].concat();
    run(&mut s, request(&messages, None, Plan::None, BUDGET));
    // Another target file: nothing of the first model's cache is used.
    let mut other = request(&longer, None, Plan::None, BUDGET);
    other.target = requantized();
    assert_eq!(run(&mut s, other).prefix_reused_tokens, 0);
    // Another placement: the model is loaded again, the cache with it.
    let mut moved = request(&longer, None, Plan::None, BUDGET);
    moved.placement = Placement::Stream;
    let first = run(&mut s, moved.clone());
    assert_eq!(first.prefix_reused_tokens, 0);
    // A budget below one conversation keeps nothing, and stays correct.
    let tiny = run(&mut s, request(&longer, None, Plan::None, 1 << 20));
    let again = run(&mut s, request(&longer, None, Plan::None, 1 << 20));
    assert_eq!(again.prefix_reused_tokens, 0);
    assert_eq!(tiny.token_ids, again.token_ids);
    // Budget 0 empties the cache.
    run(&mut s, request(&messages, None, Plan::None, BUDGET));
    run(&mut s, request(&messages, None, Plan::None, 0));
    assert_eq!(
        run(&mut s, request(&longer, None, Plan::None, BUDGET)).prefix_reused_tokens,
        0
    );
}
