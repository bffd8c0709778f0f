//! `canopy chat` end to end with piped standard input: the built binary, the real llama.cpp
//! worker, SmolLM2 (fetched by `scripts/fetch-models --all`) and a temporary history store.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use canopy_store::{ConversationId, Message, MessageStatus, Store};
use canopy_types::ChatRole;
use common::{assert_success, canopy, command, smollm2, stderr, stdout, with_stdin};

fn chat(home: &Path, extra: &[&str], input: &str) -> std::process::Output {
    let smol = smollm2();
    let mut chat = command(home);
    chat.args(["chat", "--target", smol.to_str().unwrap()])
        .args(extra);
    with_stdin(chat, input)
}

fn open_store(home: &Path) -> Store {
    Store::open(&home.join(canopy_store::DB_FILE_NAME)).unwrap()
}

fn assert_reply_complete(m: &Message) {
    assert_eq!(m.role, ChatRole::Assistant);
    assert_eq!(m.status, MessageStatus::Complete, "{m:?}");
    assert!(!m.content.is_empty(), "{m:?}");
    let stats = m
        .stats
        .as_ref()
        .expect("a complete reply keeps its statistics");
    assert!(stats.tokens >= 1 && stats.tokens <= 16, "{stats:?}");
    assert!(stats.prefill_tokens > 0, "{stats:?}");
    assert_eq!(stats.provenance.len() as u64, stats.tokens, "{stats:?}");
    assert!(
        stats
            .provenance
            .iter()
            .all(|&p| p == canopy_types::Source::Target),
        "no draft: {stats:?}"
    );
    assert_eq!(stats.plan, "none");
}

#[test]
fn piped_chat_keeps_a_multi_turn_conversation() {
    let home = tempfile::tempdir().unwrap();
    let greedy = ["--temperature", "0", "--max-tokens", "16"];
    let out = chat(
        home.path(),
        &greedy,
        "What is the capital of France?\nAnd what is the capital of Italy?\n/new\nName a colour.\n",
    );
    assert_success(&out, "canopy chat");
    assert!(!stderr(&out).contains("error"), "{}", stderr(&out));

    // `canopy history list --json` sees both conversations.
    let listed = canopy(home.path(), &["history", "list", "--json"]);
    assert_success(&listed, "history list");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let mut counts: Vec<(String, i64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["title"].as_str().unwrap().to_owned(),
                c["message_count"].as_i64().unwrap(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("Name a colour.".to_owned(), 2),
            ("What is the capital of France?".to_owned(), 4)
        ]
    );

    let store = open_store(home.path());
    let first = store
        .list_conversations()
        .unwrap()
        .into_iter()
        .find(|c| c.message_count == 4)
        .unwrap();
    assert_eq!(
        first.target_model.as_deref(),
        Some(smollm2().to_str().unwrap())
    );
    assert_eq!(first.plan.as_deref(), Some("none"));
    let messages = store.messages(first.id).unwrap();
    let roles: Vec<ChatRole> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            ChatRole::User,
            ChatRole::Assistant,
            ChatRole::User,
            ChatRole::Assistant
        ]
    );
    assert_eq!(messages[0].content, "What is the capital of France?");
    assert_eq!(messages[2].content, "And what is the capital of Italy?");
    // One thread: each message answers the one before it.
    for pair in messages.windows(2) {
        assert_eq!(pair[1].parent_id, Some(pair[0].id));
    }
    assert_reply_complete(&messages[1]);
    assert_reply_complete(&messages[3]);

    // Every reply was printed, each on its own line(s), in order.
    let printed = stdout(&out);
    let second = store
        .list_conversations()
        .unwrap()
        .into_iter()
        .find(|c| c.message_count == 2)
        .unwrap();
    let colour = store.messages(second.id).unwrap();
    assert_reply_complete(&colour[1]);
    assert_eq!(
        printed,
        format!(
            "{}\n{}\n{}\n",
            messages[1].content, messages[3].content, colour[1].content
        )
    );
    drop(store);

    // --resume continues the first conversation under its last reply.
    let out = chat(
        home.path(),
        &[
            "--resume",
            &first.id.to_string(),
            "--temperature",
            "0",
            "--max-tokens",
            "16",
        ],
        "Thank you.\n",
    );
    assert_success(&out, "canopy chat --resume");
    let store = open_store(home.path());
    let messages = store.messages(first.id).unwrap();
    assert_eq!(messages.len(), 6);
    assert_eq!(messages[4].content, "Thank you.");
    assert_eq!(messages[4].parent_id, Some(messages[3].id));
    assert_reply_complete(&messages[5]);
}

#[test]
fn chat_reports_user_errors_and_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let out = chat(
        home.path(),
        &[
            "--temperature",
            "0",
            "--max-tokens",
            "16",
            "--context",
            "256",
        ],
        &format!("/frobnicate\n{}\nHi!\n", "Too long. ".repeat(100)),
    );
    assert_success(&out, "canopy chat");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("error: unknown command /frobnicate"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("error: ") && lines[1].contains("context"),
        "{err}"
    );
    assert!(!err.contains("panicked"));

    // The refused message stays in the history as a branch without a reply; the next message
    // starts the thread afresh and is answered.
    let store = open_store(home.path());
    let conversation = store.list_conversations().unwrap()[0].id;
    let messages = store.messages(conversation).unwrap();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[1].content, "Hi!");
    assert_eq!(messages[1].parent_id, None);
    assert_reply_complete(&messages[2]);
    assert_eq!(stdout(&out), format!("{}\n", messages[2].content));

    // Bad flags and an unknown conversation are refused before the chat starts.
    let smol = smollm2();
    for args in [
        &["--max-tokens", "0"][..],
        &["--top-p", "2"],
        &["--resume", "99"],
        &["--resume", "1", "--system", "Be brief."],
    ] {
        let mut full = vec!["chat", "--target", smol.to_str().unwrap()];
        full.extend_from_slice(args);
        common::assert_user_error(&canopy(home.path(), &full), &args.join(" "));
    }
}

/// Collects a child's output on a thread so that the test can wait for it to reach a length.
struct Stream {
    received: Receiver<Vec<u8>>,
    text: Vec<u8>,
}

impl Stream {
    fn new(mut reader: impl Read + Send + 'static) -> Stream {
        let (tx, received) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Stream {
            received,
            text: Vec::new(),
        }
    }

    /// Waits until at least `len` bytes arrived in total; panics after two minutes.
    fn wait_for(&mut self, len: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.text.len() < len {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.received.recv_timeout(left) {
                Ok(bytes) => self.text.extend_from_slice(&bytes),
                Err(e) => panic!(
                    "waited for {len} bytes, got {:?} ({e})",
                    String::from_utf8_lossy(&self.text)
                ),
            }
        }
    }

    /// Everything, once the writer closed its end.
    fn finish(mut self) -> String {
        while let Ok(bytes) = self.received.recv_timeout(Duration::from_secs(120)) {
            self.text.extend_from_slice(&bytes);
        }
        String::from_utf8(self.text).unwrap()
    }
}

/// The worker processes started by process `pid`.
fn children(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let children = task.unwrap().path().join("children");
        if let Ok(list) = std::fs::read_to_string(children) {
            found.extend(list.split_whitespace().map(|p| p.parse::<i32>().unwrap()));
        }
    }
    found
}

fn send(stdin: &mut ChildStdin, line: &str) {
    stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
}

/// A worker killed mid-reply and Ctrl-C mid-reply both keep the partial reply as interrupted,
/// and the chat answers the next message.
#[test]
fn killed_worker_and_ctrl_c_keep_partial_replies() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let mut child = command(home.path())
        .args(["chat", "--target", smol.to_str().unwrap()])
        .args(["--temperature", "0", "--max-tokens", "200"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = Stream::new(child.stdout.take().unwrap());
    let err = Stream::new(child.stderr.take().unwrap());
    let story = "Write a long story about a lighthouse keeper and a storm.";

    // 1. SIGKILL the worker while the first reply streams.
    send(&mut stdin, story);
    out.wait_for(40);
    let workers = children(child.id());
    assert_eq!(workers.len(), 1, "one worker child: {workers:?}");
    assert_eq!(unsafe { libc::kill(workers[0], libc::SIGKILL) }, 0);

    // 2. Ctrl-C (SIGINT to the chat process alone) while the second reply streams.
    send(&mut stdin, story);
    let before = out.text.len();
    out.wait_for(before + 40);
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);

    // 3. A last message, answered in full.
    send(&mut stdin, "Say hello.");
    drop(stdin);
    let status = child.wait().unwrap();
    let printed = out.finish();
    let err = err.finish();
    assert!(status.success(), "exit {status:?}\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("error: the inference worker stopped unexpectedly")
            && lines[0].contains("SIGKILL"),
        "{err}"
    );
    assert_eq!(lines[1], "(stopped)", "{err}");

    let store = open_store(home.path());
    let messages = store.messages(ConversationId(1)).unwrap();
    assert_eq!(messages.len(), 6, "{messages:#?}");
    for pair in messages.windows(2) {
        assert_eq!(pair[1].parent_id, Some(pair[0].id), "one thread");
    }
    let (crashed, stopped, last) = (&messages[1], &messages[3], &messages[5]);
    assert_eq!(crashed.status, MessageStatus::Interrupted);
    assert!(crashed.content.len() >= 40, "{crashed:?}");
    assert!(crashed.stats.is_none(), "a crash leaves no statistics");
    assert_eq!(stopped.status, MessageStatus::Interrupted);
    assert!(stopped.content.len() >= 40, "{stopped:?}");
    let stats = stopped
        .stats
        .as_ref()
        .expect("a stopped reply keeps its statistics");
    assert!(stats.tokens > 0 && stats.tokens < 200, "{stats:?}");
    assert_eq!(last.status, MessageStatus::Complete);
    assert!(!last.content.is_empty());
    // What was printed is what was saved.
    assert_eq!(
        printed,
        format!(
            "{}\n{}\n{}\n",
            crashed.content, stopped.content, last.content
        )
    );
}

/// Ctrl-C at the prompt ends the chat at once (exit 130, as for a shell's interrupted command).
#[test]
fn ctrl_c_at_the_prompt_leaves() {
    let home = tempfile::tempdir().unwrap();
    let smol = smollm2();
    let mut child = command(home.path())
        .args(["chat", "--target", smol.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut err = Stream::new(child.stderr.take().unwrap());
    // Once the help is printed the chat is back at its prompt.
    send(&mut stdin, "/help");
    err.wait_for(10);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    // No message was sent: no conversation was started.
    assert!(open_store(home.path())
        .list_conversations()
        .unwrap()
        .is_empty());
}
