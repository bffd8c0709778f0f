//! `canopy history`: browse, search, export, import and delete stored conversations.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use canopy_core::{Conversation, ConversationId, Core, CoreError, ExportFormat, Message};

use crate::engine::{core, core_error};
use crate::error::{CliError, CliResult};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List conversations, most recently updated first.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a conversation (its active branch; --json prints every branch).
    Show {
        /// Conversation id (see `canopy history list`).
        id: ConversationId,
        /// Print the conversation and all its messages as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Full-text search over all messages (every word must occur).
    Search {
        /// Words to look for.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
        /// Print JSON instead of a list.
        #[arg(long)]
        json: bool,
    },
    /// Export a conversation as Markdown (active branch) or JSON (every branch, re-importable).
    Export {
        /// Conversation id.
        id: ConversationId,
        #[arg(long, value_enum, default_value_t = Format::Md)]
        format: Format,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Import a conversation from a JSON export; prints the new id.
    Import {
        /// A file written by `canopy history export --format json`.
        file: PathBuf,
    },
    /// Delete a conversation and all its messages.
    Delete {
        /// Conversation id.
        id: ConversationId,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Md,
    Json,
}

pub fn run(command: Command) -> CliResult {
    let core = core()?;
    match command {
        Command::List { json } => list(&core, json),
        Command::Show { id, json } => show(&core, id, json),
        Command::Search { text, json } => search(&core, &text.join(" "), json),
        Command::Export { id, format, output } => {
            let format = match format {
                Format::Md => ExportFormat::Markdown,
                Format::Json => ExportFormat::Json,
            };
            let text = core
                .export_conversation(id, format)
                .map_err(history_error)?;
            match output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| CliError::user(format!("cannot write {}: {e}", path.display()))),
                None => print(&text),
            }
        }
        Command::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::user(format!("cannot read {}: {e}", file.display())))?;
            let imported = core.import_conversation(&text).map_err(|e| match e {
                CoreError::Store(canopy_core::StoreError::BadImport(reason)) => {
                    CliError::user(format!(
                        "{} is not a Canopy conversation export: {reason}",
                        file.display()
                    ))
                }
                other => history_error(other),
            })?;
            print(&format!(
                "imported conversation {}: {}\n",
                imported.id, imported.title
            ))
        }
        Command::Delete { id } => {
            core.delete_conversation(id).map_err(history_error)?;
            print(&format!("deleted conversation {id}\n"))
        }
    }
}

fn list(core: &Core, json: bool) -> CliResult {
    let conversations = core.conversations().map_err(history_error)?;
    if json {
        return print_json(&conversations);
    }
    if conversations.is_empty() {
        return print("no conversations yet\n");
    }
    let mut out = format!(
        "{:>6}  {:<16}  {:>8}  TITLE\n",
        "ID", "UPDATED (UTC)", "MESSAGES"
    );
    for c in &conversations {
        out.push_str(&format!(
            "{:>6}  {:<16}  {:>8}  {}\n",
            c.id,
            utc_minutes(c.updated_at),
            c.message_count,
            one_line(&c.title)
        ));
    }
    print(&out)
}

fn show(core: &Core, id: ConversationId, json: bool) -> CliResult {
    if json {
        #[derive(serde::Serialize)]
        struct Shown {
            conversation: Conversation,
            messages: Vec<Message>,
        }
        let shown = Shown {
            conversation: core.conversation(id).map_err(history_error)?,
            messages: core.messages(id).map_err(history_error)?,
        };
        return print_json(&shown);
    }
    print(
        &core
            .export_conversation(id, ExportFormat::Markdown)
            .map_err(history_error)?,
    )
}

fn search(core: &Core, text: &str, json: bool) -> CliResult {
    let hits = core.search_messages(text).map_err(history_error)?;
    if json {
        return print_json(&hits);
    }
    if hits.is_empty() {
        return print("no matches\n");
    }
    let mut out = String::new();
    for hit in &hits {
        out.push_str(&format!(
            "{} {} · {} · {}: {}\n",
            hit.conversation_id,
            one_line(&hit.conversation_title),
            utc_minutes(hit.created_at),
            hit.role,
            one_line(&hit.snippet)
        ));
    }
    print(&out)
}

/// Who can fix a history error is the core's decision; a failure names the history.
fn history_error(err: CoreError) -> CliError {
    match core_error(err) {
        CliError::Failure(e) => CliError::Failure(e.context("chat history")),
        user => user,
    }
}

fn print(text: &str) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other
            .context("cannot write to standard output")
            .map_err(Into::into),
    }
}

fn print_json(value: &impl serde::Serialize) -> CliResult {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    text.push('\n');
    print(&text)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `YYYY-MM-DD HH:MM` in UTC for unix milliseconds.
fn utc_minutes(unix_ms: i64) -> String {
    canopy_core::utc_datetime(unix_ms)
        .trim_end_matches(" UTC")
        .to_string()
}
