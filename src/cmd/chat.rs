//! `canopy chat`: an interactive chat in the terminal, kept in the history store.
//!
//! Each session is one conversation (or continues one with `--resume`). Every user message is
//! saved before it is sent, every reply is saved while it streams, and the whole thread is sent to
//! the worker as the prompt. Ctrl-C while a reply streams stops it (the partial reply is kept as
//! interrupted); Ctrl-C at the prompt ends the chat. A crashed worker costs only the reply in
//! progress: it is kept as interrupted and the next message starts a new worker.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use canopy_store::{
    ConversationId, GenerationStats, MessageId, NewConversation, ReplyWriter, Role, Store,
    StoreError,
};
use canopy_worker::{
    CancelFlag, ChatMessage, ChatRole, GenerateRequest, GenerateResult, Placement, Prompt,
    Sampling, Source, StopReason, Supervisor, WorkerError,
};

use crate::engine::{model_path, placement, rpc_endpoints, supervisor, SamplingArgs};
use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// The target model (GGUF file).
    #[arg(long)]
    pub target: PathBuf,
    /// A small draft model sharing the target's vocabulary.
    #[arg(long)]
    pub draft: Option<PathBuf>,
    /// Speculation: none, chain:K, tree:N or auto.
    #[arg(long, default_value = "none")]
    pub plan: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message that starts a new conversation.
    #[arg(long, conflicts_with = "resume")]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(long)]
    pub context: Option<u32>,
    /// Where the target's weights live: cpu, stream, gpu or layers:N.
    #[arg(long, default_value = "cpu")]
    pub placement: String,
    /// Continue a stored conversation (see `canopy history list`).
    #[arg(long, value_name = "ID")]
    pub resume: Option<ConversationId>,
    /// Put part of the target's layers on RPC helpers (`canopy rpc-server` on other machines).
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT]")]
    pub rpc: Option<String>,
}

const HELP: &str = "\
Type a message and press Enter. Commands:
  /new    start a new conversation
  /exit   leave (Ctrl-D does too)
  /help   show this help
Ctrl-C stops a reply while it streams; at the prompt it leaves.
";

pub fn run(args: Args) -> CliResult {
    let settings = Settings::new(&args)?;
    let store = Store::open_default().map_err(store_error)?;
    let mut chat = Chat {
        store: &store,
        settings,
        supervisor: supervisor()?,
        conversation: None,
        leaf: None,
    };
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if let Some(id) = args.resume {
        let conversation = store.conversation(id).map_err(store_error)?;
        chat.conversation = Some(id);
        chat.leaf = store.latest_leaf(id).map_err(store_error)?;
        if interactive {
            eprintln!(
                "continuing conversation {id}: {} ({} messages)",
                conversation.title, conversation.message_count
            );
        }
    }
    if interactive {
        eprintln!("canopy chat: /help lists the commands, /exit leaves");
    }
    let interrupt = Interrupt::install()?;

    let mut input = stdin.lock();
    let mut line = String::new();
    loop {
        if interrupt.exit_requested() {
            break;
        }
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        line.clear();
        interrupt.set(Phase::Prompt);
        let read = input.read_line(&mut line);
        interrupt.set(Phase::Busy);
        match read {
            Ok(0) => {
                if interactive {
                    eprintln!();
                }
                break;
            }
            Ok(_) => {}
            Err(e) => {
                return Err(CliError::Failure(
                    anyhow::Error::new(e).context("cannot read standard input"),
                ))
            }
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        match Input::parse(text) {
            Input::Exit => break,
            Input::Help => eprint!("{HELP}"),
            Input::New => {
                chat.conversation = None;
                chat.leaf = None;
                if interactive {
                    eprintln!("(new conversation)");
                }
            }
            Input::Unknown(command) => {
                eprintln!("error: unknown command {command}; /help lists the commands")
            }
            Input::Message(text) => chat.send(text, &interrupt)?,
        }
    }
    Ok(())
}

/// One line typed by the user.
#[derive(Debug, PartialEq)]
enum Input<'a> {
    Message(&'a str),
    New,
    Exit,
    Help,
    Unknown(&'a str),
}

impl<'a> Input<'a> {
    fn parse(line: &'a str) -> Input<'a> {
        let trimmed = line.trim();
        if !trimmed.starts_with('/') {
            return Input::Message(line);
        }
        match trimmed {
            "/new" => Input::New,
            "/exit" | "/quit" => Input::Exit,
            "/help" | "/?" => Input::Help,
            other => Input::Unknown(other.split_whitespace().next().unwrap_or(other)),
        }
    }
}

/// The validated flags: what every request of the session is made of.
struct Settings {
    target: PathBuf,
    draft: Option<PathBuf>,
    plan: String,
    sampling: Sampling,
    system: Option<String>,
    max_tokens: u32,
    context: Option<u32>,
    placement: Placement,
    rpc: Vec<String>,
}

impl Settings {
    fn new(args: &Args) -> Result<Settings, CliError> {
        let target = model_path(&args.target, "target")?;
        let draft = args
            .draft
            .as_deref()
            .map(|d| model_path(d, "draft"))
            .transpose()?;
        if args.max_tokens == 0 {
            return Err(CliError::user("--max-tokens must be at least 1"));
        }
        if args.context == Some(0) {
            return Err(CliError::user("--context must be at least 1"));
        }
        Ok(Settings {
            target,
            draft,
            plan: args.plan.clone(),
            sampling: args.sampling.sampling()?,
            system: args.system.clone(),
            max_tokens: args.max_tokens,
            context: args.context,
            placement: placement(&args.placement)?,
            rpc: rpc_endpoints(args.rpc.as_deref())?,
        })
    }
}

/// The session: the conversation being continued and the message the next one answers.
struct Chat<'s> {
    store: &'s Store,
    settings: Settings,
    supervisor: Supervisor,
    conversation: Option<ConversationId>,
    leaf: Option<MessageId>,
}

impl Chat<'_> {
    /// Saves the user's message, streams the reply to stdout while saving it, and moves the
    /// session to the reply. Worker failures are reported on one line and the chat goes on;
    /// only a failing history store ends it.
    fn send(&mut self, text: &str, interrupt: &Interrupt) -> CliResult {
        let conversation = match self.conversation {
            Some(id) => id,
            None => self.start_conversation(text)?,
        };
        let parent = self.leaf;
        let user = self
            .store
            .add_message(conversation, parent, Role::User, text)
            .map_err(store_error)?;
        self.leaf = Some(user);
        let thread = self.store.thread(user).map_err(store_error)?;
        let messages = thread
            .iter()
            .map(|m| ChatMessage {
                role: match m.role {
                    Role::System => ChatRole::System,
                    Role::User => ChatRole::User,
                    Role::Assistant => ChatRole::Assistant,
                },
                content: m.content.clone(),
            })
            .collect();
        let s = &self.settings;
        let request = GenerateRequest {
            target: s.target.clone(),
            draft: s.draft.clone(),
            prompt: Prompt::Chat(messages),
            sampling: s.sampling,
            max_tokens: s.max_tokens,
            stop: Vec::new(),
            plan: s.plan.clone(),
            context: s.context,
            placement: s.placement,
            acceptance: None,
            costs: None,
            inexact_cache: false,
            rpc: s.rpc.clone(),
            rpc_layers: None,
        };

        // The reply is created with its first piece, so that a request refused before any output
        // (a prompt too long for the context, say) leaves no empty reply behind.
        let store = self.store;
        let mut reply: Option<ReplyWriter<'_>> = None;
        let mut store_failure: Option<StoreError> = None;
        let cancel = interrupt.cancel_flag();
        let stdout = std::io::stdout();
        let mut on_token = |piece: &str, _sources: &[Source]| {
            let mut out = stdout.lock();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
            if store_failure.is_some() {
                return;
            }
            let saved = match reply.as_mut() {
                Some(writer) => writer.push(piece),
                None => store
                    .reply_writer(conversation, user)
                    .and_then(|mut writer| {
                        let pushed = writer.push(piece);
                        reply = Some(writer);
                        pushed
                    }),
            };
            if let Err(err) = saved {
                // Without the store the reply cannot be kept: stop generating it.
                store_failure = Some(err);
                cancel.cancel();
            }
        };
        interrupt.set(Phase::Streaming);
        let outcome = self
            .supervisor
            .generate(request, interrupt.cancel_flag(), &mut on_token);
        interrupt.set(Phase::Busy);
        let stopped = interrupt.cancel_flag().is_cancelled();
        interrupt.cancel_flag().reset();
        if let Some(err) = store_failure {
            return Err(store_error(err));
        }
        let streamed = reply.as_ref().is_some_and(|w| !w.content().is_empty());
        if streamed {
            let mut out = stdout.lock();
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }

        match outcome {
            Ok(result) => {
                let writer = match reply {
                    Some(writer) => writer,
                    None => store
                        .reply_writer(conversation, user)
                        .map_err(store_error)?,
                };
                let stats = generation_stats(&result);
                let id = if result.stop_reason == StopReason::Cancelled {
                    eprintln!("(stopped)");
                    writer.interrupt(Some(&stats))
                } else {
                    writer.finish(Some(&stats))
                }
                .map_err(store_error)?;
                self.leaf = Some(id);
            }
            Err(err) => {
                match reply {
                    Some(writer) => {
                        self.leaf = Some(writer.interrupt(None).map_err(store_error)?);
                    }
                    // Nothing was said: the next message answers the previous reply instead, and
                    // the unanswered message stays in the history as a branch of its own.
                    None => self.leaf = parent,
                }
                match err {
                    // Ctrl-C reaches the whole process group, so the worker may die of it.
                    WorkerError::Crashed { .. } if stopped => eprintln!("(stopped)"),
                    err => eprintln!("error: {}", one_line(&err.to_string())),
                }
            }
        }
        Ok(())
    }

    fn start_conversation(&mut self, first_message: &str) -> Result<ConversationId, CliError> {
        let s = &self.settings;
        let id = self
            .store
            .create_conversation(&NewConversation {
                title: title(first_message),
                target_model: Some(s.target.display().to_string()),
                draft_model: s.draft.as_ref().map(|d| d.display().to_string()),
                sampling_json: serde_json::to_string(&s.sampling).ok(),
                plan: Some(s.plan.clone()),
            })
            .map_err(store_error)?;
        self.conversation = Some(id);
        self.leaf = match &s.system {
            Some(system) => Some(
                self.store
                    .add_message(id, None, Role::System, system)
                    .map_err(store_error)?,
            ),
            None => None,
        };
        Ok(id)
    }
}

/// The statistics kept with a reply.
fn generation_stats(r: &GenerateResult) -> GenerationStats {
    GenerationStats {
        tokens: r.tokens,
        prefill_tokens: r.prefill_tokens,
        tokens_per_second: r.tokens_per_second,
        plan: r.plan.clone(),
        steps: r.steps,
        mean_accepted_per_step: r.mean_accepted_per_step,
        draft_ms: r.draft_ms,
        verify_ms: r.verify_ms,
        provenance: r
            .provenance
            .iter()
            .map(|s| match s {
                Source::Target => 0,
                Source::Draft => 1,
            })
            .collect(),
    }
}

/// A conversation's title: the first line of its first message, at most 60 characters.
fn title(first_message: &str) -> String {
    const MAX: usize = 60;
    let line = one_line(
        first_message
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(""),
    );
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None => line,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn store_error(err: StoreError) -> CliError {
    match err {
        StoreError::ConversationNotFound(id) => CliError::user(format!(
            "conversation {id} not found (see `canopy history list`)"
        )),
        StoreError::NewerSchema { .. }
        | StoreError::NotADatabase { .. }
        | StoreError::ForeignDatabase { .. }
        | StoreError::NoDataDir => CliError::user(err.to_string()),
        other => CliError::Failure(anyhow::Error::new(other).context("chat history")),
    }
}

/// What Ctrl-C means right now.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Waiting for the user's input: leave.
    Prompt,
    /// A reply is streaming: stop it.
    Streaming,
    /// Anything else: leave at the next prompt.
    Busy,
}

/// The Ctrl-C handler's view of the session.
struct Interrupt {
    phase: Arc<AtomicU8>,
    exit: Arc<AtomicU8>,
    cancel: CancelFlag,
}

impl Interrupt {
    fn install() -> Result<Interrupt, CliError> {
        let interrupt = Interrupt {
            phase: Arc::new(AtomicU8::new(Phase::Busy as u8)),
            exit: Arc::new(AtomicU8::new(0)),
            cancel: CancelFlag::new(),
        };
        let (phase, exit, cancel) = (
            Arc::clone(&interrupt.phase),
            Arc::clone(&interrupt.exit),
            interrupt.cancel.clone(),
        );
        ctrlc::set_handler(move || match phase.load(Ordering::SeqCst) {
            p if p == Phase::Prompt as u8 => {
                // Everything said so far is already committed to the store.
                eprintln!();
                std::process::exit(130);
            }
            p if p == Phase::Streaming as u8 => cancel.cancel(),
            _ => exit.store(1, Ordering::SeqCst),
        })
        .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
        Ok(interrupt)
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    fn exit_requested(&self) -> bool {
        self.exit.load(Ordering::SeqCst) != 0
    }

    fn cancel_flag(&self) -> &CancelFlag {
        &self.cancel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_commands_and_messages() {
        assert_eq!(Input::parse("hello"), Input::Message("hello"));
        assert_eq!(Input::parse("  /new "), Input::New);
        assert_eq!(Input::parse("/exit"), Input::Exit);
        assert_eq!(Input::parse("/help"), Input::Help);
        assert_eq!(
            Input::parse("/frobnicate now"),
            Input::Unknown("/frobnicate")
        );
        assert_eq!(Input::parse("a /new idea"), Input::Message("a /new idea"));
    }

    #[test]
    fn titles_are_one_short_line() {
        assert_eq!(title("\n  Hello   there\nsecond line"), "Hello there");
        let long = "word ".repeat(30);
        let t = title(&long);
        assert!(t.ends_with('…'));
        assert_eq!(t.chars().count(), 60);
    }
}
