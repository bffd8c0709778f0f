//! The front end's types are generated from the Rust types they mirror (`ui/src/bindings.ts`), and
//! the command names the front end calls, the commands this crate registers and the permissions
//! its window holds are one list. Both are checked by tests, so neither side can drift;
//! `CANOPY_BLESS=1 cargo test -p canopy-app bindings` rewrites the file after a change. The chat
//! settings' defaults and the sampling bounds are generated into the same file, so the front end
//! has no copy of its own.

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use ts_rs::{Config, TS};

    /// Every type the front end receives or sends, in declaration order.
    fn declarations() -> String {
        let cfg = Config::new().with_large_int("number");
        let mut out = String::from(
            "// Generated from the Rust types by `CANOPY_BLESS=1 cargo test -p canopy-app bindings`.\n\
             // Do not edit: a test fails when this file and the Rust types disagree.\n",
        );
        macro_rules! decl {
            ($($t:ty),* $(,)?) => {$(
                out.push('\n');
                if let Some(docs) = <$t as TS>::docs() {
                    out.push_str(&docs);
                }
                out.push_str("export ");
                out.push_str(&<$t as TS>::decl(&cfg));
                out.push('\n');
            )*};
        }
        decl!(
            canopy_types::Source,
            canopy_types::Plan,
            canopy_types::Placement,
            canopy_types::Sampling,
            canopy_core::ChatSettings,
            canopy_core::ModelPair,
            canopy_core::PlacementDecision,
            canopy_core::ModelView,
            canopy_core::PairView,
            canopy_core::HubRepoView,
            canopy_core::HubFileView,
            canopy_core::HubDraftView,
            canopy_core::HubTokenStatus,
            canopy_core::Fact,
            canopy_core::Bandwidth,
            canopy_core::Point,
            canopy_core::Node,
            canopy_core::LiveCheck,
            canopy_core::ProfileView,
            canopy_core::ConversationId,
            canopy_core::MessageId,
            canopy_types::ChatRole,
            canopy_core::MessageStatus,
            canopy_core::Conversation,
            canopy_core::GenerationStats,
            canopy_core::Message,
            canopy_core::SearchHit,
            crate::chat::ChatEvent,
            crate::profile::Step,
            crate::profile::ProfileEvent,
            canopy_core::MetadataEntryView,
            canopy_core::ModelDetails,
            crate::models::CatalogEntry,
            crate::models::DownloadProgress,
            crate::models::LibraryUsage,
            canopy_core::ServerSettings,
            crate::server::ServerStatus,
            crate::AppInfo,
            canopy_core::ErrorKind,
            crate::error::CommandError,
        );
        out.push_str(&values());
        out
    }

    /// The values the front end shares with the back end: the chat settings' defaults and the
    /// sampling settings' bounds.
    fn values() -> String {
        use canopy_types::{
            MAX_PRESENCE_FREQUENCY_PENALTY, MAX_REPEAT_LAST_N, MAX_REPEAT_PENALTY, MAX_TEMPERATURE,
            MAX_TOP_K,
        };
        let defaults = serde_json::to_string_pretty(&canopy_core::ChatSettings::default())
            .expect("the default settings serialise");
        let limits = serde_json::to_string_pretty(&serde_json::json!({
            "temperature": MAX_TEMPERATURE,
            "top_k": MAX_TOP_K,
            "repeat_penalty": MAX_REPEAT_PENALTY,
            "presence_frequency_penalty": MAX_PRESENCE_FREQUENCY_PENALTY,
            "repeat_last_n": MAX_REPEAT_LAST_N,
        }))
        .expect("the limits serialise");
        let engine = serde_json::to_string_pretty(&serde_json::json!({
            "max_chain": canopy_types::MAX_CHAIN,
            "max_tree": canopy_types::MAX_TREE,
            "max_reply_tokens": canopy_core::MAX_REPLY_TOKENS,
        }))
        .expect("the engine's limits serialise");
        format!(
            "\n/** The chat settings' defaults (`ChatSettings::default`; the sampling is \
             `Sampling::chat_default`). */\n\
             export const DEFAULT_CHAT_SETTINGS: ChatSettings = {defaults};\n\
             \n/** The largest value of each sampling setting (canopy-types' `MAX_*`). */\n\
             export const SAMPLING_LIMITS = {limits} as const;\n\
             \n/** The engine's limits (canopy-types' `MAX_CHAIN` and `MAX_TREE`, the core's \
             `MAX_REPLY_TOKENS`). */\n\
             export const ENGINE_LIMITS = {engine} as const;\n\
             \n/** Texts and whether the back end parses them as a plan or a placement: the front \
             end's checks are tested against these. */\n\
             export const GRAMMAR_EXAMPLES: {{ plan: [string, boolean][]; placement: [string, boolean][] }} = {grammar};\n",
            grammar = grammar_examples()
        )
    }

    /// Plan and placement texts at and around every boundary of their grammar, each with
    /// whether canopy-types parses it.
    fn grammar_examples() -> String {
        use canopy_types::{Placement, Plan, MAX_CHAIN, MAX_TREE};
        let plans = [
            "none".to_owned(),
            "auto".to_owned(),
            "chain:0".to_owned(),
            "chain:1".to_owned(),
            format!("chain:{MAX_CHAIN}"),
            format!("chain:{}", MAX_CHAIN + 1),
            "tree:1".to_owned(),
            "tree:2".to_owned(),
            "tree:007".to_owned(),
            format!("tree:{MAX_TREE}"),
            format!("tree:{}", MAX_TREE + 1),
            "tree:x".to_owned(),
            "tree:".to_owned(),
            "chain:99999999999".to_owned(),
            "Auto".to_owned(),
            "greedy".to_owned(),
            String::new(),
        ];
        let placements = [
            "auto",
            "cpu",
            "stream",
            "gpu",
            "layers:0",
            "layers:12",
            "layers:x",
            "layers:",
            "GPU",
            "partial",
            "",
        ];
        let plan: Vec<(String, bool)> = plans
            .iter()
            .map(|t| (t.clone(), t.parse::<Plan>().is_ok()))
            .collect();
        let placement: Vec<(String, bool)> = placements
            .iter()
            .map(|t| (t.to_string(), t.parse::<Placement>().is_ok()))
            .collect();
        serde_json::to_string(&serde_json::json!({ "plan": plan, "placement": placement }))
            .expect("the examples serialise")
    }

    fn repo_file(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path)
    }

    #[test]
    fn bindings_match_the_rust_types() {
        let path = repo_file("ui/src/bindings.ts");
        let want = declarations();
        if std::env::var_os("CANOPY_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "ui/src/bindings.ts is out of date: run `CANOPY_BLESS=1 cargo test -p canopy-app bindings`"
        );
    }

    /// The commands of lib.rs's handler list (from which build.rs makes their permissions), the
    /// permissions the window holds, and the commands the front end invokes are the same set.
    #[test]
    fn commands_permissions_and_calls_agree() {
        let lib_rs = std::fs::read_to_string(repo_file("src-tauri/src/lib.rs")).unwrap();
        let mut commands = crate::command_list::handler_commands(&lib_rs);
        assert!(commands.len() > 30, "found the handler list: {commands:?}");
        commands.sort();
        let listed = commands.len();
        commands.dedup();
        assert_eq!(listed, commands.len(), "a command is registered twice");

        let capability =
            std::fs::read_to_string(repo_file("src-tauri/capabilities/main.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&capability).unwrap();
        let mut allowed: Vec<String> = json["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_str()?.strip_prefix("allow-"))
            .map(|p| p.replace('-', "_"))
            .collect();
        allowed.sort();
        assert_eq!(
            commands, allowed,
            "lib.rs's handler list and capabilities/main.json"
        );

        let api = std::fs::read_to_string(repo_file("ui/src/api.ts")).unwrap();
        let mut called: Vec<String> = api
            .split("call<")
            .skip(1)
            .filter_map(|rest| rest.split('"').nth(1))
            .map(str::to_owned)
            .collect();
        called.sort();
        called.dedup();
        assert_eq!(commands, called, "lib.rs's handler list and ui/src/api.ts");
    }
}
