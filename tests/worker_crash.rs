//! The supervisor survives its worker's death: the real `canopy worker` running SmolLM2 (fetched
//! by `scripts/fetch-models --all`) is SIGKILLed mid-generation.

mod common;

use canopy_worker::{
    CancelFlag, ChatMessage, ChatRole, GenerateRequest, Placement, Plan, Prompt, Sampling,
    Supervisor, WorkerCommand, WorkerError,
};

fn request(max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        target: common::smollm2(),
        draft: None,
        prompt: Prompt::Chat(vec![ChatMessage {
            role: ChatRole::User,
            content: "Write a long story about a lighthouse keeper and a storm.".into(),
        }]),
        sampling: Sampling::greedy(),
        max_tokens,
        stop: Vec::new(),
        plan: Plan::None,
        context: None,
        placement: Placement::Cpu,
        acceptance: None,
        costs: None,
        inexact_cache: false,
        rpc: Vec::new(),
        rpc_layers: None,
        kv_cache_bytes: 0,
        no_lookup: false,
        gpu_floor_bytes: 0,
    }
}

#[test]
fn killed_worker_is_reported_and_replaced() {
    let mut supervisor = Supervisor::new(WorkerCommand {
        program: common::CANOPY.into(),
        args: vec!["worker".into()],
        env: Vec::new(),
    });
    let cancel = CancelFlag::new();
    assert_eq!(
        supervisor.worker_pid(),
        None,
        "no worker before the first job"
    );

    // A tiny job starts the worker, so that its pid is known before the long one.
    supervisor
        .generate(request(1), &cancel, &mut |_, _| {})
        .expect("first generation");
    let pid = supervisor.worker_pid().expect("a running worker");

    let mut pieces: Vec<String> = Vec::new();
    let mut killed_after = None;
    let outcome = supervisor.generate(request(400), &cancel, &mut |text, _| {
        pieces.push(text.to_owned());
        if pieces.len() == 10 {
            killed_after = Some(pieces.concat());
            assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        }
    });
    let killed_after = killed_after.expect("ten pieces streamed before the end");
    match outcome {
        Err(WorkerError::Crashed { ref status, .. }) => {
            assert!(status.contains("SIGKILL"), "{status}");
            let message = outcome.as_ref().unwrap_err().to_string();
            assert!(message.contains("SIGKILL"), "{message}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    // The pieces streamed before the kill were kept (a few more may have been in the pipe).
    let streamed = pieces.concat();
    assert!(streamed.starts_with(&killed_after), "{streamed:?}");
    assert!(pieces.len() >= 10);
    assert_eq!(
        supervisor.worker_pid(),
        None,
        "the dead worker is forgotten"
    );

    // The next job starts a new worker and gives the same greedy text from the start.
    let mut restarted = String::new();
    let result = supervisor
        .generate(request(16), &cancel, &mut |text, _| {
            restarted.push_str(text)
        })
        .expect("generation after the crash");
    let new_pid = supervisor.worker_pid().expect("a new worker");
    assert_ne!(new_pid, pid);
    assert_eq!(result.text, restarted);
    let (short, long) = if result.text.len() <= streamed.len() {
        (&result.text, &streamed)
    } else {
        (&streamed, &result.text)
    };
    assert!(
        long.starts_with(short.as_str()),
        "greedy text after the restart: {:?} vs {:?}",
        result.text,
        streamed
    );
}
