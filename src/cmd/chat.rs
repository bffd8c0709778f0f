//! `canopy chat`: an interactive chat in the terminal, kept in the history store.
//!
//! Each session is one conversation (or continues one with `--resume`); the turn itself (saving
//! the message, generating with the conversation's models, saving the reply as it streams) is the
//! application core's. Ctrl-C while a reply streams stops it (the partial reply is kept as
//! interrupted); Ctrl-C at the prompt ends the chat. A crashed worker costs only the reply in
//! progress: it is kept as interrupted and the next message starts a new worker.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use canopy_core::PlacementDecision;
use canopy_core::{
    CancelFlag, ChatObserver, ChatSettings, ConversationId, Core, CoreError, MessageId, ModelPair,
    WorkerError,
};
use canopy_types::{Placement, Plan, Source, StopReason};

use crate::engine::{core, core_error, parse_placement, parse_plan, rpc_endpoints, SamplingArgs};
use crate::error::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// The target model (GGUF file); with --resume, the conversation's own when not given.
    #[arg(long, required_unless_present = "resume")]
    pub target: Option<PathBuf>,
    /// A small draft model sharing the target's vocabulary.
    #[arg(long)]
    pub draft: Option<PathBuf>,
    /// Speculation: none, chain:K, tree:N or auto (plain decoding without a draft).
    #[arg(long, default_value = "auto", value_parser = parse_plan)]
    pub plan: Plan,
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
    /// Where the target's weights live: auto, cpu, stream, gpu or layers:N.
    #[arg(long, default_value = "auto", value_parser = parse_placement)]
    pub placement: Placement,
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
    let settings = ChatSettings {
        sampling: args.sampling.sampling()?,
        max_tokens: args.max_tokens,
        plan: args.plan,
        placement: args.placement,
        context: args.context,
        rpc: rpc_endpoints(args.rpc.as_deref())?,
    };
    settings.validate().map_err(core_error)?;
    let core = core()?;
    let pair = args.target.as_deref().map(|target| ModelPair {
        target: Some(absolute(target)),
        draft: args.draft.as_deref().map(absolute),
    });
    if let Some(pair) = &pair {
        core.check_model_pair(pair).map_err(core_error)?;
    }
    let mut chat = Chat {
        core: &core,
        settings,
        pair,
        system: args.system.clone(),
        conversation: None,
        leaf: None,
    };
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if let Some(id) = args.resume {
        chat.resume(id, interactive)?;
    }
    if interactive {
        eprintln!("canopy chat: /help lists the commands, /exit leaves");
    }
    let interrupt = Interrupt::install()?;
    read_loop(&mut chat, &interrupt, interactive)
}

/// Reads lines until the end of input or `/exit`, sending each message as a turn.
fn read_loop(chat: &mut Chat<'_>, interrupt: &Interrupt, interactive: bool) -> CliResult {
    let stdin = std::io::stdin();

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
            Input::Message(text) => chat.send(text, interrupt)?,
        }
    }
    Ok(())
}

/// A model path as stored with a conversation: absolute, so `--resume` works from anywhere.
fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
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

/// The session: the conversation being continued and the message the next one answers.
struct Chat<'c> {
    core: &'c Core,
    settings: ChatSettings,
    /// The models given on the command line; `None` keeps a resumed conversation's own.
    pair: Option<ModelPair>,
    system: Option<String>,
    conversation: Option<ConversationId>,
    leaf: Option<MessageId>,
}

/// Prints the reply as it streams and says where the target runs.
struct Printer {
    streamed: bool,
}

impl ChatObserver for Printer {
    fn started(&mut self, _plan: Plan, placement: &PlacementDecision) {
        if std::io::stderr().is_terminal() {
            eprintln!("({})", placement.summary);
        }
    }

    fn token(&mut self, text: &str, _sources: &[Source]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.streamed = true;
    }
}

impl Chat<'_> {
    fn resume(&mut self, id: ConversationId, interactive: bool) -> CliResult {
        let conversation = self.core.conversation(id).map_err(core_error)?;
        if let Some(pair) = &self.pair {
            self.core
                .set_conversation_models(id, pair)
                .map_err(core_error)?;
        }
        self.conversation = Some(id);
        self.leaf = self.core.latest_leaf(id).map_err(core_error)?;
        if interactive {
            eprintln!(
                "continuing conversation {id}: {} ({} messages)",
                conversation.title, conversation.message_count
            );
        }
        Ok(())
    }

    /// Saves the user's message, streams the reply to stdout while the core saves it, and moves
    /// the session to the reply. Generation failures are reported on one line and the chat goes
    /// on; only a failing history store ends it.
    fn send(&mut self, text: &str, interrupt: &Interrupt) -> CliResult {
        let conversation = match self.conversation {
            Some(id) => id,
            None => {
                let title = canopy_core::title_from(text);
                let conv = self
                    .core
                    .create_conversation(
                        &title,
                        self.pair.as_ref(),
                        self.system.as_deref(),
                        Some(&self.settings),
                    )
                    .map_err(core_error)?;
                self.conversation = Some(conv.id);
                self.leaf = self.core.latest_leaf(conv.id).map_err(core_error)?;
                conv.id
            }
        };
        let parent = self.leaf;
        let user = self
            .core
            .add_user_message(conversation, parent, text)
            .map_err(core_error)?;
        self.leaf = Some(user.id);
        let mut printer = Printer { streamed: false };
        interrupt.set(Phase::Streaming);
        let outcome = self.core.reply(
            conversation,
            user.id,
            &self.settings,
            &mut printer,
            interrupt.cancel_flag(),
        );
        interrupt.set(Phase::Busy);
        let stopped = interrupt.cancel_flag().is_cancelled();
        interrupt.cancel_flag().reset();
        if printer.streamed {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err @ CoreError::Store(_)) => return Err(core_error(err)),
            Err(err) => {
                // Nothing was said: the next message answers the previous reply instead, and the
                // unanswered message stays in the history as a branch of its own.
                self.leaf = parent;
                eprintln!("error: {}", one_line(&err.to_string()));
                return Ok(());
            }
        };
        match &outcome.reply {
            Some(reply) => self.leaf = Some(reply.id),
            None => self.leaf = parent,
        }
        match outcome.result {
            Ok(r) if r.stop_reason == StopReason::Cancelled => eprintln!("(stopped)"),
            Ok(_) => {}
            // Ctrl-C reaches the whole process group, so the worker may die of it.
            Err(CoreError::Worker(WorkerError::Crashed { .. })) if stopped => {
                eprintln!("(stopped)")
            }
            Err(err) => eprintln!("error: {}", one_line(&err.to_string())),
        }
        Ok(())
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
}
