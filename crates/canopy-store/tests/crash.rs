//! Durability under SIGKILL: a child process writes and prints every id after its commit returns;
//! the parent kills it at random moments and then checks that every acknowledged write survived.
//!
//! The child is this test binary itself, re-run with [`CHILD_ENV`] set and filtered to
//! [`crash_writer_child`].

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canopy_store::{GenerationStats, MessageId, MessageStatus, NewConversation, Store};
use canopy_types::ChatRole;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "CANOPY_STORE_CRASH_CHILD_DB";
const ROUNDS: usize = 120;

/// The writer. Runs only when re-executed by [`acknowledged_writes_survive_sigkill`]; as an
/// ordinary test it returns at once.
#[test]
fn crash_writer_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&path)).expect("child opens the store");
    let mut out = std::io::stdout().lock();
    let mut ack = |line: String| {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    let stats = GenerationStats {
        tokens: 5,
        plan: "n=8 d=3".into(),
        provenance: [1, 0, 1, 1, 0]
            .map(|b| {
                if b == 1 {
                    canopy_types::Source::Draft
                } else {
                    canopy_types::Source::Target
                }
            })
            .to_vec(),
        ..GenerationStats::default()
    };
    for round in 0.. {
        let conv = store
            .create_conversation(&NewConversation {
                title: format!("crash {round}"),
                ..NewConversation::default()
            })
            .unwrap();
        ack(format!("conv {conv}"));
        let mut parent = None;
        for turn in 0..3 {
            let user = store
                .add_message(conv, parent, ChatRole::User, &format!("question {turn}"))
                .unwrap();
            ack(format!("msg {user}"));
            let mut writer = store.reply_writer(conv, user).unwrap();
            writer.set_commit_interval(Duration::ZERO);
            ack(format!("reply {}", writer.id()));
            for token in 0..5 {
                writer.push(&format!("token{token} ")).unwrap();
                ack(format!(
                    "partial {} {}",
                    writer.id(),
                    writer.content().len()
                ));
            }
            let reply = writer.finish(Some(&stats)).unwrap();
            ack(format!("done {reply}"));
            parent = Some(reply);
        }
    }
}

#[derive(Default)]
struct Acks {
    conversations: BTreeSet<i64>,
    messages: BTreeSet<i64>,
    replies: BTreeSet<i64>,
    /// Longest acknowledged partial text per reply.
    partial: BTreeMap<i64, usize>,
    done: BTreeSet<i64>,
}

impl Acks {
    /// Reads complete lines only: a line cut by the kill was never acknowledged.
    fn read(&mut self, text: &str) -> usize {
        let mut count = 0;
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let id = |i: usize| words[i].parse::<i64>().unwrap();
            match words.first().copied() {
                Some("conv") => self.conversations.insert(id(1)),
                Some("msg") => self.messages.insert(id(1)),
                Some("reply") => self.replies.insert(id(1)),
                Some("done") => self.done.insert(id(1)),
                Some("partial") => {
                    let len = self.partial.entry(id(1)).or_default();
                    *len = (*len).max(id(2) as usize);
                    true
                }
                _ => continue,
            };
            count += 1;
        }
        count
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canopy.db");
    let exe = std::env::current_exe().unwrap();
    let seed: u64 = rand::random();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut acks = Acks::default();
    let mut kills_after_acks = 0;

    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        std::thread::sleep(Duration::from_micros(rng.random_range(0..80_000)));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the writer should have been killed"
        );
        if acks.read(&reader.join().unwrap()) > 0 {
            kills_after_acks += 1;
        }
    }

    let store = Store::open(&path).unwrap();
    let mut messages = BTreeMap::new();
    for conv in store.list_conversations().unwrap() {
        for message in store.messages(conv.id).unwrap() {
            messages.insert(message.id.0, message);
        }
    }
    let conversations: BTreeSet<i64> = store
        .list_conversations()
        .unwrap()
        .iter()
        .map(|c| c.id.0)
        .collect();
    let context = format!("seed {seed}");
    for id in &acks.conversations {
        assert!(
            conversations.contains(id),
            "{context}: conversation {id} lost"
        );
    }
    for id in &acks.messages {
        let m = messages
            .get(id)
            .unwrap_or_else(|| panic!("{context}: message {id} lost"));
        assert_eq!(
            (m.role, m.status),
            (ChatRole::User, MessageStatus::Complete)
        );
    }
    for id in &acks.replies {
        let m = messages
            .get(id)
            .unwrap_or_else(|| panic!("{context}: reply {id} lost"));
        assert_eq!(m.role, ChatRole::Assistant);
        assert_ne!(
            m.status,
            MessageStatus::Streaming,
            "{context}: reply {id} left streaming"
        );
        let saved = acks.partial.get(id).copied().unwrap_or(0);
        assert!(
            m.content.len() >= saved,
            "{context}: reply {id} has {} bytes, {saved} were acknowledged",
            m.content.len()
        );
        if acks.done.contains(id) {
            assert_eq!(m.status, MessageStatus::Complete, "{context}: reply {id}");
            assert_eq!(m.stats.as_ref().map(|s| s.tokens), Some(5));
        }
    }
    assert!(store
        .thread(MessageId(*acks.messages.last().unwrap()))
        .is_ok());
    assert!(store.check_integrity().unwrap().is_empty(), "{context}");
    drop(store);
    assert_eq!(common::integrity_check(&path), "ok", "{context}");

    // The kills must have landed while writes were going on, not only before the first one.
    assert!(
        kills_after_acks >= ROUNDS / 4,
        "{context}: only {kills_after_acks} rounds wrote anything"
    );
    assert!(
        !acks.done.is_empty() && acks.partial.len() > acks.done.len(),
        "{context}"
    );
    eprintln!(
        "{ROUNDS} kills ({kills_after_acks} mid-write), {} messages, {} replies acknowledged, {} interrupted, in {:?}",
        acks.messages.len(),
        acks.replies.len(),
        acks.replies.len() - acks.done.len(),
        started.elapsed()
    );
}
