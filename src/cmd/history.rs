//! `canopy history`: browse, search, export, import and delete stored conversations.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use canopy_store::{Conversation, ConversationId, Message, Store, StoreError};

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
    let store = Store::open_default().map_err(store_error)?;
    match command {
        Command::List { json } => list(&store, json),
        Command::Show { id, json } => show(&store, id, json),
        Command::Search { text, json } => search(&store, &text.join(" "), json),
        Command::Export { id, format, output } => {
            let text = match format {
                Format::Md => store.export_markdown(id),
                Format::Json => store.export_json(id),
            }
            .map_err(store_error)?;
            match output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| CliError::user(format!("cannot write {}: {e}", path.display()))),
                None => print(&text),
            }
        }
        Command::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::user(format!("cannot read {}: {e}", file.display())))?;
            let id = store.import_json(&text).map_err(|e| match e {
                StoreError::BadImport(reason) => CliError::user(format!(
                    "{} is not a Canopy conversation export: {reason}",
                    file.display()
                )),
                other => store_error(other),
            })?;
            let title = store.conversation(id).map_err(store_error)?.title;
            print(&format!("imported conversation {id}: {title}\n"))
        }
        Command::Delete { id } => {
            store.delete_conversation(id).map_err(store_error)?;
            print(&format!("deleted conversation {id}\n"))
        }
    }
}

fn list(store: &Store, json: bool) -> CliResult {
    let conversations = store.list_conversations().map_err(store_error)?;
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

fn show(store: &Store, id: ConversationId, json: bool) -> CliResult {
    if json {
        #[derive(serde::Serialize)]
        struct Shown {
            conversation: Conversation,
            messages: Vec<Message>,
        }
        let shown = Shown {
            conversation: store.conversation(id).map_err(store_error)?,
            messages: store.messages(id).map_err(store_error)?,
        };
        return print_json(&shown);
    }
    print(&store.export_markdown(id).map_err(store_error)?)
}

fn search(store: &Store, text: &str, json: bool) -> CliResult {
    let hits = store.search(text).map_err(store_error)?;
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

/// Missing records, bad files and a newer database are the user's to fix; the rest is a failure.
fn store_error(err: StoreError) -> CliError {
    match err {
        StoreError::ConversationNotFound(_)
        | StoreError::MessageNotFound(_)
        | StoreError::BadImport(_)
        | StoreError::NewerSchema { .. }
        | StoreError::NotADatabase { .. }
        | StoreError::ForeignDatabase { .. }
        | StoreError::NoDataDir => CliError::user(err.to_string()),
        other => CliError::Failure(anyhow::Error::new(other).context("chat history")),
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
    canopy_store::utc_datetime(unix_ms)
        .trim_end_matches(" UTC")
        .to_string()
}
