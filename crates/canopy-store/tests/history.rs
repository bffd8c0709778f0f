//! Conversations, branches, streaming replies, search, export/import and concurrent access.

mod common;

use std::time::{Duration, Instant};

use canopy_store::{
    ConversationId, GenerationStats, MessageId, MessageStatus, NewConversation, Store, StoreError,
};
use canopy_types::ChatRole;
use common::{integrity_check, temp_store, titled};

fn stats() -> GenerationStats {
    GenerationStats {
        tokens: 5,
        prefill_tokens: 12,
        tokens_per_second: 41.5,
        plan: "n=64 d=8".into(),
        steps: 2,
        mean_accepted_per_step: 2.5,
        draft_ms: 3.25,
        verify_ms: 90.0,
        provenance: [1, 1, 0, 1, 0]
            .map(|b| {
                if b == 1 {
                    canopy_types::Source::Draft
                } else {
                    canopy_types::Source::Target
                }
            })
            .to_vec(),
    }
}

#[test]
fn conversations_are_listed_newest_first_and_can_be_renamed_and_deleted() {
    let (_dir, _path, store) = temp_store();
    let a = store
        .create_conversation(&NewConversation {
            title: "first".into(),
            target_model: Some("big.gguf".into()),
            draft_model: Some("small.gguf".into()),
            sampling_json: Some(r#"{"temperature":0}"#.into()),
            plan: Some("n=32 d=6".into()),
        })
        .unwrap();
    let b = store.create_conversation(&titled("second")).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    store.add_message(a, None, ChatRole::User, "bump").unwrap();

    let list = store.list_conversations().unwrap();
    assert_eq!(list.iter().map(|c| c.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(list[0].message_count, 1);
    assert_eq!(list[0].draft_model.as_deref(), Some("small.gguf"));

    store.rename_conversation(b, "renamed").unwrap();
    assert_eq!(store.conversation(b).unwrap().title, "renamed");

    store.delete_conversation(a).unwrap();
    assert!(matches!(
        store.conversation(a),
        Err(StoreError::ConversationNotFound(id)) if id == a
    ));
    assert!(store.search("bump").unwrap().is_empty());
    assert!(store.delete_conversation(a).unwrap_err().is_not_found());
    assert!(store
        .rename_conversation(a, "x")
        .unwrap_err()
        .is_not_found());
    assert!(store.messages(a).unwrap_err().is_not_found());
    assert_eq!(store.list_conversations().unwrap().len(), 1);
}

#[test]
fn regenerate_and_edit_make_branches() {
    let (_dir, _path, store) = temp_store();
    let conv = store.create_conversation(&titled("branches")).unwrap();
    let system = store
        .add_message(conv, None, ChatRole::System, "be brief")
        .unwrap();
    let question = store
        .add_message(conv, Some(system), ChatRole::User, "what is 2+2?")
        .unwrap();
    let first = store
        .add_message(conv, Some(question), ChatRole::Assistant, "4")
        .unwrap();
    // Regenerate: another assistant reply to the same question.
    let regenerated = store
        .add_message(conv, Some(question), ChatRole::Assistant, "four")
        .unwrap();
    assert_eq!(store.latest_leaf(conv).unwrap(), Some(regenerated));
    // Edit: another user message with the same parent as the question, and its reply.
    let edited = store
        .add_message(conv, Some(system), ChatRole::User, "what is 3+3?")
        .unwrap();
    let reply = store
        .add_message(conv, Some(edited), ChatRole::Assistant, "6")
        .unwrap();

    assert_eq!(store.latest_leaf(conv).unwrap(), Some(reply));
    let ids = |thread: Vec<canopy_store::Message>| thread.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(store.thread(reply).unwrap()), [system, edited, reply]);
    assert_eq!(ids(store.thread(first).unwrap()), [system, question, first]);
    assert_eq!(
        ids(store.thread(regenerated).unwrap()),
        [system, question, regenerated]
    );

    let all = store.messages(conv).unwrap();
    assert_eq!(all.len(), 6);
    let siblings: Vec<_> = all
        .iter()
        .filter(|m| m.parent_id == Some(question))
        .map(|m| m.id)
        .collect();
    assert_eq!(siblings, [first, regenerated]);
    assert_eq!(store.conversation(conv).unwrap().message_count, 6);

    // Parents must exist and belong to the same conversation.
    let other = store.create_conversation(&titled("other")).unwrap();
    assert!(matches!(
        store.add_message(other, Some(question), ChatRole::User, "x"),
        Err(StoreError::ParentInOtherConversation { .. })
    ));
    assert!(matches!(
        store.add_message(conv, Some(MessageId(9999)), ChatRole::User, "x"),
        Err(StoreError::MessageNotFound(MessageId(9999)))
    ));
    assert!(matches!(
        store.add_message(ConversationId(9999), None, ChatRole::User, "x"),
        Err(StoreError::ConversationNotFound(_))
    ));
    assert!(matches!(
        store.thread(MessageId(9999)),
        Err(StoreError::MessageNotFound(_))
    ));
    assert_eq!(store.latest_leaf(other).unwrap(), None);
}

#[test]
fn streaming_replies_are_saved_as_they_grow() {
    let (_dir, path, store) = temp_store();
    let conv = store.create_conversation(&titled("stream")).unwrap();
    let question = store
        .add_message(conv, None, ChatRole::User, "count")
        .unwrap();

    let reply = store.begin_reply(conv, question).unwrap();
    let started = &store.messages(conv).unwrap()[1];
    assert_eq!(
        (started.status, started.content.as_str()),
        (MessageStatus::Streaming, "")
    );
    store.update_reply(reply, "one two").unwrap();
    store
        .finish_reply(
            reply,
            "one two three",
            MessageStatus::Complete,
            Some(&stats()),
        )
        .unwrap();
    let done = store.thread(reply).unwrap().pop().unwrap();
    assert_eq!(done.content, "one two three");
    assert_eq!(done.status, MessageStatus::Complete);
    assert_eq!(done.stats, Some(stats()));
    assert!(matches!(
        store.update_reply(reply, "late"),
        Err(StoreError::NotStreaming {
            status: MessageStatus::Complete,
            ..
        })
    ));
    assert!(matches!(
        store.finish_reply(question, "x", MessageStatus::Streaming, None),
        Err(StoreError::BadFinishStatus(MessageStatus::Streaming))
    ));

    // A writer with the default interval commits the first push only after a second has passed.
    let mut writer = store.reply_writer(conv, question).unwrap();
    let id = writer.id();
    writer.push("Hel").unwrap();
    let reader = Store::open(&path).unwrap();
    assert_eq!(reader.thread(id).unwrap().pop().unwrap().content, "");
    writer.flush().unwrap();
    assert_eq!(reader.thread(id).unwrap().pop().unwrap().content, "Hel");
    writer.set_commit_interval(Duration::ZERO);
    writer.push("lo").unwrap();
    assert_eq!(reader.thread(id).unwrap().pop().unwrap().content, "Hello");
    writer.push(" world").unwrap();
    writer.interrupt(None).unwrap();
    let stopped = reader.thread(id).unwrap().pop().unwrap();
    assert_eq!(
        (stopped.status, stopped.content.as_str()),
        (MessageStatus::Interrupted, "Hello world")
    );
}

#[test]
fn an_abandoned_reply_is_marked_interrupted_once_no_store_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canopy.db");
    let store = Store::open(&path).unwrap();
    let conv = store.create_conversation(&titled("crash")).unwrap();
    let question = store.add_message(conv, None, ChatRole::User, "hi").unwrap();
    let mut writer = store.reply_writer(conv, question).unwrap();
    let id = writer.id();
    writer.push("partial answer").unwrap();

    // Another store opened while this one lives must not touch its live reply.
    let other = Store::open(&path).unwrap();
    assert_eq!(other.interrupted_on_open(), 0);
    drop(other);
    writer.push(", continued").unwrap();
    std::mem::forget(writer); // as if the process died mid-stream
    drop(store);

    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.interrupted_on_open(), 1);
    let reply = reopened.thread(id).unwrap().pop().unwrap();
    assert_eq!(reply.status, MessageStatus::Interrupted);
    assert_eq!(reply.content, ""); // nothing was committed: the second had not passed
    assert_eq!(Store::open(&path).unwrap().interrupted_on_open(), 0);
}

#[test]
fn a_dropped_writer_commits_what_it_has() {
    let (_dir, path, store) = temp_store();
    let conv = store.create_conversation(&titled("drop")).unwrap();
    let question = store.add_message(conv, None, ChatRole::User, "hi").unwrap();
    let mut writer = store.reply_writer(conv, question).unwrap();
    let id = writer.id();
    writer.push("kept").unwrap();
    drop(writer);
    drop(store);
    let store = Store::open(&path).unwrap();
    let reply = store.thread(id).unwrap().pop().unwrap();
    assert_eq!(
        (reply.status, reply.content.as_str()),
        (MessageStatus::Interrupted, "kept")
    );
}

#[test]
fn search_finds_words_and_survives_any_input() {
    let (_dir, _path, store) = temp_store();
    let rust = store.create_conversation(&titled("Rust")).unwrap();
    let q = store
        .add_message(
            rust,
            None,
            ChatRole::User,
            "How do I borrow a vector mutably?",
        )
        .unwrap();
    let a = store
        .add_message(
            rust,
            Some(q),
            ChatRole::Assistant,
            "Use `&mut v`; only one mutable borrow may exist at a time.",
        )
        .unwrap();
    let other = store.create_conversation(&titled("Cooking")).unwrap();
    store
        .add_message(
            other,
            None,
            ChatRole::User,
            "He said \"AND(\" loudly; résumé of the recipe",
        )
        .unwrap();

    let hits = store.search("borrow").unwrap();
    assert_eq!(
        hits.iter().map(|h| h.message_id).collect::<Vec<_>>().len(),
        2
    );
    assert!(hits.iter().all(|h| h.conversation_title == "Rust"));
    assert!(
        hits.iter().any(|h| h.snippet.contains("[borrow]")),
        "{hits:?}"
    );

    // Every word must match; stemming ("borrowing", "exists") and accents are forgiven.
    let hits = store.search("borrowing exists").unwrap();
    assert_eq!(hits.iter().map(|h| h.message_id).collect::<Vec<_>>(), [a]);
    assert_eq!(hits[0].role, ChatRole::Assistant);
    assert_eq!(store.search("RESUME").unwrap().len(), 1);
    assert_eq!(store.search("borrow recipe").unwrap().len(), 0);

    // Search syntax in user input is just text.
    for odd in [
        "\"",
        "\"\"",
        "AND(",
        "AND",
        "OR NOT",
        "a AND(",
        "NEAR(a b)",
        "*",
        "col:x",
        "^start",
        "'",
        "(",
        ")",
        "-",
        "+",
        "\u{0}",
        "\\",
        "{x}",
        "   ",
        "",
        "🙂",
        "a\"b",
        "\"AND(\"",
    ] {
        store
            .search(odd)
            .unwrap_or_else(|e| panic!("search {odd:?} failed: {e}"));
    }
    // Random mixes of search syntax, quotes, control characters and non-ASCII text.
    let pieces = [
        "AND",
        "OR",
        "NOT",
        "NEAR",
        "(",
        ")",
        "\"",
        "'",
        "*",
        "^",
        ":",
        "-",
        "+",
        "{",
        "}",
        ",",
        "\0",
        "\t",
        "é",
        "🙂",
        "borrow",
        "content",
        "messages_fts",
        " ",
        " ",
        "",
    ];
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
    for _ in 0..500 {
        let len = rand::Rng::random_range(&mut rng, 1..8);
        let query: String = (0..len)
            .map(|_| pieces[rand::Rng::random_range(&mut rng, 0..pieces.len())])
            .collect();
        store
            .search(&query)
            .unwrap_or_else(|e| panic!("search {query:?} failed: {e}"));
    }
    assert_eq!(store.search("\"AND(\"").unwrap().len(), 1);
    assert_eq!(store.search("said AND(").unwrap().len(), 1);

    // Edited (streamed) content is re-indexed.
    let reply = store.begin_reply(rust, a).unwrap();
    store.update_reply(reply, "lifetimes elided").unwrap();
    assert_eq!(store.search("elided").unwrap().len(), 1);
    store
        .finish_reply(reply, "lifetimes explicit", MessageStatus::Complete, None)
        .unwrap();
    assert!(store.search("elided").unwrap().is_empty());
    assert_eq!(store.search("explicit").unwrap().len(), 1);
    assert!(store.check_integrity().unwrap().is_empty());
}

#[test]
fn json_export_imports_back_identically() {
    let (_dir, _path, store) = temp_store();
    let conv = store
        .create_conversation(&NewConversation {
            title: "Round trip ✓".into(),
            target_model: Some("t.gguf".into()),
            draft_model: None,
            sampling_json: Some(r#"{"temperature":0.7}"#.into()),
            plan: Some("n=16 d=4".into()),
        })
        .unwrap();
    let q = store
        .add_message(conv, None, ChatRole::User, "line 1\nline \"2\"")
        .unwrap();
    let a1 = store
        .add_message(conv, Some(q), ChatRole::Assistant, "first")
        .unwrap();
    let reply = store.begin_reply(conv, q).unwrap();
    store
        .finish_reply(reply, "second", MessageStatus::Complete, Some(&stats()))
        .unwrap();
    store
        .add_message(conv, Some(a1), ChatRole::User, "follow-up")
        .unwrap();
    let cut = store.begin_reply(conv, q).unwrap();
    store
        .finish_reply(cut, "cut sh", MessageStatus::Interrupted, None)
        .unwrap();

    let json = store.export_json(conv).unwrap();
    let imported = store.import_json(&json).unwrap();
    assert_ne!(imported, conv);
    assert_eq!(store.export_json(imported).unwrap(), json);

    let (a, b) = (
        store.conversation(conv).unwrap(),
        store.conversation(imported).unwrap(),
    );
    assert_eq!(
        (a.title, a.created_at, a.updated_at, a.plan),
        (b.title, b.created_at, b.updated_at, b.plan)
    );
    let strip = |messages: Vec<canopy_store::Message>| {
        messages
            .into_iter()
            .map(|m| {
                (
                    m.role,
                    m.content,
                    m.status,
                    m.created_at,
                    m.stats,
                    m.parent_id.is_some(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(store.messages(conv).unwrap()),
        strip(store.messages(imported).unwrap())
    );

    // Into a different database, too.
    let (_dir2, _path2, other) = temp_store();
    let there = other.import_json(&json).unwrap();
    assert_eq!(other.export_json(there).unwrap(), json);
    assert_eq!(other.search("follow").unwrap().len(), 1);
}

#[test]
fn bad_imports_are_refused_and_store_nothing() {
    let (_dir, _path, store) = temp_store();
    let conv = store.create_conversation(&titled("x")).unwrap();
    let q = store.add_message(conv, None, ChatRole::User, "q").unwrap();
    store
        .add_message(conv, Some(q), ChatRole::Assistant, "a")
        .unwrap();
    let good = store.export_json(conv).unwrap();

    let cases = [
        ("not json".to_string(), ""),
        ("{}".to_string(), "missing field"),
        (
            good.replace("canopy.conversation", "other.format"),
            "format",
        ),
        (good.replace("\"version\": 1", "\"version\": 99"), "newer"),
        (
            good.replace("\"parent_id\": 1", "\"parent_id\": 7"),
            "parent 7",
        ),
        (good.replace("\"id\": 2", "\"id\": 1"), "twice"),
        (good.replace("\"assistant\"", "\"wizard\""), "wizard"),
    ];
    for (text, needle) in cases {
        match store.import_json(&text) {
            Err(StoreError::BadImport(reason)) => {
                assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
            }
            other => panic!("import of {text:?} gave {other:?}"),
        }
    }
    assert_eq!(store.list_conversations().unwrap().len(), 1);
}

#[test]
fn markdown_export_shows_the_active_branch() {
    let (_dir, _path, store) = temp_store();
    let conv = store
        .create_conversation(&NewConversation {
            title: "Markdown".into(),
            target_model: Some("big.gguf".into()),
            ..NewConversation::default()
        })
        .unwrap();
    let q = store
        .add_message(conv, None, ChatRole::User, "Question?")
        .unwrap();
    store
        .add_message(conv, Some(q), ChatRole::Assistant, "old answer")
        .unwrap();
    let reply = store.begin_reply(conv, q).unwrap();
    store
        .finish_reply(reply, "new answer", MessageStatus::Complete, Some(&stats()))
        .unwrap();

    let md = store.export_markdown(conv).unwrap();
    assert!(md.starts_with("# Markdown\n"), "{md}");
    assert!(md.contains("target model `big.gguf`"), "{md}");
    assert!(md.contains("## User\n\nQuestion?"), "{md}");
    assert!(md.contains("## Assistant\n\nnew answer"), "{md}");
    assert!(!md.contains("old answer"), "{md}");
    assert!(
        md.contains("5 tokens · 41.5 tokens/s · plan n=64 d=8 · 2.50 accepted per step"),
        "{md}"
    );
    assert!(md.contains("1 message(s) on other branches"), "{md}");
}

#[test]
fn settings_and_legacy_profiles() {
    let (_dir, path, store) = temp_store();
    assert_eq!(store.get_setting("theme").unwrap(), None);
    store.set_setting("theme", "dark").unwrap();
    store.set_setting("theme", "light").unwrap();
    assert_eq!(
        store.get_setting("theme").unwrap().as_deref(),
        Some("light")
    );

    // Rows an earlier Canopy wrote are read newest first, then forgotten.
    assert!(store.legacy_profiles().unwrap().is_empty());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        r#"INSERT INTO hardware_profiles(name, json, created_at) VALUES ('laptop', '{"a":1}', 1);
           INSERT INTO hardware_profiles(name, json, created_at) VALUES ('desk', '{"a":2}', 2);"#,
    )
    .unwrap();
    assert_eq!(
        store.legacy_profiles().unwrap(),
        [
            ("desk".to_owned(), r#"{"a":2}"#.to_owned()),
            ("laptop".to_owned(), r#"{"a":1}"#.to_owned())
        ]
    );
    store.forget_legacy_profiles().unwrap();
    assert!(store.legacy_profiles().unwrap().is_empty());
}

/// A second connection reads while a write transaction is open, sees only committed rows, and
/// a writer waits for the lock instead of failing.
#[test]
fn readers_are_not_blocked_by_an_open_write() {
    let (_dir, path, store) = temp_store();
    let conv = store.create_conversation(&titled("committed")).unwrap();
    store
        .add_message(conv, None, ChatRole::User, "visible")
        .unwrap();

    let writer = rusqlite::Connection::open(&path).unwrap();
    writer
        .execute_batch(
            "BEGIN IMMEDIATE;
             INSERT INTO conversations(title, created_at, updated_at) VALUES ('uncommitted', 1, 1);",
        )
        .unwrap();

    let started = Instant::now();
    let reader = Store::open(&path).unwrap();
    assert_eq!(reader.list_conversations().unwrap().len(), 1);
    assert_eq!(reader.messages(conv).unwrap().len(), 1);
    assert_eq!(reader.search("visible").unwrap().len(), 1);
    assert_eq!(store.list_conversations().unwrap().len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "reads waited {:?}",
        started.elapsed()
    );

    // A write waits (busy timeout) until the other transaction commits.
    let committer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        writer.execute_batch("COMMIT").unwrap();
    });
    let started = Instant::now();
    store
        .add_message(conv, None, ChatRole::User, "after the wait")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    committer.join().unwrap();
    assert_eq!(reader.list_conversations().unwrap().len(), 2);

    // Reads from another thread while a reply streams.
    let streaming = std::thread::scope(|scope| {
        let path = &path;
        let reading = scope.spawn(move || {
            let reader = Store::open(path).unwrap();
            let mut seen = 0;
            for _ in 0..50 {
                seen = seen.max(reader.messages(conv).unwrap().len());
            }
            seen
        });
        let mut writer = store.reply_writer(conv, MessageId(1)).unwrap();
        writer.set_commit_interval(Duration::ZERO);
        for i in 0..50 {
            writer.push(&format!("{i} ")).unwrap();
        }
        writer.finish(None).unwrap();
        reading.join().unwrap()
    });
    assert!(streaming >= 2);
    drop((store, reader));
    assert_eq!(integrity_check(&path), "ok");
}

#[test]
fn store_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Store>();
}

#[test]
fn ids_parse_and_print() {
    assert_eq!("42".parse::<ConversationId>().unwrap(), ConversationId(42));
    assert_eq!(MessageId(7).to_string(), "7");
    assert!("x".parse::<MessageId>().is_err());
    assert_eq!(
        "streaming".parse::<MessageStatus>().unwrap(),
        MessageStatus::Streaming
    );
    assert_eq!(
        serde_json::to_string(&ChatRole::Assistant).unwrap(),
        "\"assistant\""
    );
}
