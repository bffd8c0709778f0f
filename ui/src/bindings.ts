// Generated from the Rust types by `CANOPY_BLESS=1 cargo test -p canopy-app bindings`.
// Do not edit: a test fails when this file and the Rust types disagree.

/**
 * Where an output token came from.
 */
export type Source = "draft" | "target" | "lookup";

/** `none`, `auto`, `chain:K` (1 ≤ K ≤ 255) or `tree:N` (2 ≤ N ≤ 1024). */
export type Plan = "none" | "auto" | `chain:${number}` | `tree:${number}`;

/** `auto`, `cpu`, `stream`, `gpu` or `layers:N`. */
export type Placement = "auto" | "cpu" | "stream" | "gpu" | `layers:${number}`;

export type Sampling = { 
/**
 * 0 = greedy; at most 2.
 */
temperature: number, 
/**
 * Keep the K most likely tokens; 0 turns it off; at most 1000.
 */
top_k: number, 
/**
 * Keep the smallest set of tokens whose probability reaches P; 1 turns it off.
 */
top_p: number, 
/**
 * Same seed, same output.
 */
seed: number, 
/**
 * Keep the tokens at least P times as likely as the most likely one; 0 turns it off.
 */
min_p: number, 
/**
 * Repetition penalty over the last `repeat_last_n` tokens; 1 turns it off; at most 2.
 */
repeat_penalty: number, 
/**
 * The window of the three penalties, in tokens; 0 turns them off; 64 when absent.
 */
repeat_last_n: number, 
/**
 * Subtracted per occurrence in the window; 0 turns it off; between -2 and 2.
 */
frequency_penalty: number, 
/**
 * Subtracted once for any occurrence in the window; 0 turns it off; between -2 and 2.
 */
presence_penalty: number, };

/**
 * How a chat generates its replies.
 */
export type ChatSettings = { 
/**
 * Most tokens per reply (1..=32768).
 */
max_tokens: number, 
/**
 * Used when the conversation has a draft; plain decoding otherwise.
 */
plan: Plan, placement: Placement, 
/**
 * Context in tokens; `None` = the model's training context, at most 4096.
 */
context: number | null, 
/**
 * RPC helpers (`host:port`) holding part of the target's layers; empty = this machine only.
 */
rpc: Array<string>, 
/**
 * 0 = greedy; at most 2.
 */
temperature: number, 
/**
 * Keep the K most likely tokens; 0 turns it off; at most 1000.
 */
top_k: number, 
/**
 * Keep the smallest set of tokens whose probability reaches P; 1 turns it off.
 */
top_p: number, 
/**
 * Same seed, same output.
 */
seed: number, 
/**
 * Keep the tokens at least P times as likely as the most likely one; 0 turns it off.
 */
min_p: number, 
/**
 * Repetition penalty over the last `repeat_last_n` tokens; 1 turns it off; at most 2.
 */
repeat_penalty: number, 
/**
 * The window of the three penalties, in tokens; 0 turns them off; 64 when absent.
 */
repeat_last_n: number, 
/**
 * Subtracted per occurrence in the window; 0 turns it off; between -2 and 2.
 */
frequency_penalty: number, 
/**
 * Subtracted once for any occurrence in the window; 0 turns it off; between -2 and 2.
 */
presence_penalty: number, };

/**
 * The target and draft models a new conversation starts with: library ids or file paths.
 */
export type ModelPair = { target: string | null, draft: string | null, };

/**
 * A resolved placement and what it means, in numbers and in words.
 */
export type PlacementDecision = { 
/**
 * The placement the engine runs with (never `auto`).
 */
placement: Placement, 
/**
 * Whether `auto` chose it (else the user did).
 */
automatic: boolean, 
/**
 * Whether the draft runs on the GPU.
 */
draft_on_gpu: boolean, 
/**
 * Target layers resident on the GPU, of `target_layers`.
 */
resident_layers: number, target_layers: number, 
/**
 * Target weight bytes streamed over PCIe by one large pass (0 when none stream).
 */
streamed_bytes_per_pass: number, 
/**
 * `GGML_OP_OFFLOAD_MIN_BATCH` for the worker; `None` without a GPU.
 */
op_offload_min_batch: number | null, 
/**
 * One line for people: "draft on the GPU; 18 of 80 target layers resident, 27.4 GB streamed per pass".
 */
summary: string, };

/**
 * A registered model as the library and the chat show it.
 */
export type ModelView = { 
/**
 * The library id, as text: the form model pairs and commands take.
 */
id: string, 
/**
 * The file name without `.gguf`.
 */
name: string, path: string, file_size: number, architecture: string | null, quantization: string | null, parameters: number | null, context_length: number | null, vocab_size: number | null, 
/**
 * `draft`, `target` or `both`.
 */
role: string, 
/**
 * `None` when the file is missing from disk.
 */
fit: "fits" | "tight" | "too-big" | null, fit_reason: string, };

/**
 * One registered model judged as a draft for a target.
 */
export type PairView = { 
/**
 * The draft's library id, as text.
 */
draft_id: string, draft_name: string, compatible: boolean, 
/**
 * Why not, in one sentence; empty when compatible.
 */
reason: string, };

/**
 * A repository found by [`Core::hub_search`].
 */
export type HubRepoView = { 
/**
 * `OWNER/NAME`.
 */
id: string, downloads: number | null, likes: number | null, };

/**
 * One downloadable model of a repository: a file, or a split set as one.
 */
export type HubFileView = { 
/**
 * What a download takes: `hf:OWNER/REPO[@REV]/PATH` (the first part of a split set).
 */
source: string, 
/**
 * The file's name without `.gguf` (of the first part).
 */
name: string, 
/**
 * `Q4_K_M`, `IQ4_XS`, `F16`, …; `None` when the name does not say.
 */
quant: string | null, 
/**
 * Total bytes, every part included.
 */
size: number, 
/**
 * Files it is made of (1 unless split).
 */
parts: number, 
/**
 * `None` when it cannot be downloaded (a part is missing on the hub).
 */
fit: "fits" | "tight" | "too-big" | null, 
/**
 * The fit in one sentence, judged from the size alone before the download.
 */
fit_reason: string, 
/**
 * A model of this file name is already in the library.
 */
in_library: boolean, };

/**
 * A draft offered for a hub target.
 */
export type HubDraftView = { 
/**
 * What a download takes (a catalog id).
 */
source: string, name: string, 
/**
 * Bytes as the hub page shows them, rounded; `None` when unknown.
 */
approx_size: number | null, 
/**
 * Why it is offered.
 */
note: string, 
/**
 * A model of this file name is already in the library.
 */
in_library: boolean, };

/**
 * Where the hub token comes from. The token itself never leaves the core.
 */
export type HubTokenStatus = { 
/**
 * A token is saved in the data folder (it wins over `HF_TOKEN`).
 */
saved: boolean, 
/**
 * `HF_TOKEN` is set in the environment.
 */
from_environment: boolean, };

export type Fact = { key: string, value: string, };

export type Bandwidth = { label: string, gb_per_second: number, };

export type Point = { n: number, seconds: number, };

export type Node = { parent: number | null, rank: number, depth: number, children: number, };

/**
 * How a profile's cost curves compared with the pass times `auto` measured while planning from
 * them, in the last generation that did.
 */
export type LiveCheck = { 
/**
 * The largest factor, either way, between a measured pass time and the profile's (1 = agree).
 */
factor: number, 
/**
 * Whether `factor` is beyond [`LIVE_DISAGREEMENT`].
 */
disagrees: boolean, 
/**
 * When it was measured, RFC 3339 UTC.
 */
measured_at: string, 
/**
 * One line for the screen.
 */
summary: string, };

/**
 * A profile as a screen shows it.
 */
export type ProfileView = { name: string, 
/**
 * RFC 3339 UTC.
 */
created_at: string, source: string, system: Array<Fact>, bandwidth: Array<Bandwidth>, target_model: string | null, draft_model: string | null, 
/**
 * Where the target ran while timed, in words ("draft on the GPU; 18 of 80 target layers
 * resident, 27.4 GB streamed per pass"); `None` without models.
 */
placement: string | null, target_curve: Array<Point>, draft_curve: Array<Point>, acceptance: Array<number>, 
/**
 * `none` or `tree:N`.
 */
plan: string, budget: number, depth: number, tree: Array<Node>, expected_tokens_per_step: number, predicted_tokens_per_second: number, plain_tokens_per_second: number, 
/**
 * What the last generation that planned from this profile measured of its costs, if any did.
 */
live: LiveCheck | null, };

/**
 * The id of a conversation.
 */
export type ConversationId = number;

/**
 * The id of a message; unique across all conversations.
 */
export type MessageId = number;

/**
 * A role in a chat prompt.
 */
export type ChatRole = "system" | "user" | "assistant";

/**
 * Whether a message's content is final.
 */
export type MessageStatus = "complete" | "streaming" | "interrupted";

/**
 * A stored conversation.
 */
export type Conversation = { id: ConversationId, title: string, 
/**
 * Unix time in milliseconds.
 */
created_at: number, 
/**
 * Unix time in milliseconds of the last change to the conversation or its messages.
 */
updated_at: number, target_model: string | null, draft_model: string | null, sampling_json: string | null, plan: string | null, 
/**
 * Messages on all branches.
 */
message_count: number, };

/**
 * How an assistant reply was generated.
 */
export type GenerationStats = { 
/**
 * Output tokens.
 */
tokens: number, 
/**
 * Prompt tokens evaluated before the first output token.
 */
prefill_tokens: number, tokens_per_second: number, 
/**
 * The speculation plan, as text (for example "n=64 d=8" or "plain").
 */
plan: string, 
/**
 * Verification passes of the target model.
 */
steps: number, mean_accepted_per_step: number, draft_ms: number, verify_ms: number, 
/**
 * Per output token: produced by the target, or an accepted draft token. Stored as one byte
 * per token (0 = target, 1 = draft); exports written as numbers by older builds still import.
 */
provenance: Array<Source>, };

/**
 * A stored message. Messages form a tree through `parent_id`: a regenerated reply is another
 * assistant message with the same parent, an edited prompt another user message with the same parent.
 */
export type Message = { id: MessageId, conversation_id: ConversationId, parent_id: MessageId | null, role: ChatRole, content: string, status: MessageStatus, 
/**
 * Unix time in milliseconds.
 */
created_at: number, stats: GenerationStats | null, };

/**
 * One full-text search result.
 */
export type SearchHit = { conversation_id: ConversationId, conversation_title: string, message_id: MessageId, role: ChatRole, 
/**
 * A short extract around the match; matched terms are wrapped in `[` and `]`.
 */
snippet: string, 
/**
 * Message creation time, unix milliseconds.
 */
created_at: number, };

/**
 * What the generation channel carries to the window.
 */
export type ChatEvent = { "type": "started", plan: Plan, placement: PlacementDecision, } | { "type": "progress", phase: string, fraction: number, } | { "type": "reply", reply_id: number, } | { "type": "token", text: string, sources: Array<Source>, };

/**
 * The wizard's steps: the core's stages and the plan chosen from them.
 */
export type Step = "detect" | "bandwidth" | "costs" | "acceptance" | "plan";

export type ProfileEvent = { "type": "step", step: Step, fraction: number, note: string, } | { "type": "step_done", step: Step, profile: ProfileView, };

/**
 * One entry of a GGUF header's metadata, its value in one short line.
 */
export type MetadataEntryView = { key: string, value: string, };

/**
 * A library model with its header's metadata.
 */
export type ModelDetails = { model: ModelView, metadata: Array<MetadataEntryView>, tensor_count: number, };

export type CatalogEntry = { id: string, name: string, url: string, size: number | null, description: string, };

/**
 * A download's progress as the window shows it.
 */
export type DownloadProgress = { "type": "progress", received: number, total: number | null, bytes_per_second: number, } | { "type": "verifying" };

/**
 * Disk usage of the library.
 */
export type LibraryUsage = { models: number, 
/**
 * Bytes of all registered files.
 */
total_bytes: number, 
/**
 * Bytes of the files inside the models folder.
 */
managed_bytes: number, models_dir: string, };

/**
 * The app's local OpenAI-compatible server: whether it runs, on which loopback port, and the
 * key clients must send. It serves the default model pair with the chat's plan and placement.
 */
export type ServerSettings = { enabled: boolean, 
/**
 * 1024..=65535.
 */
port: number, 
/**
 * When set, clients must send `Authorization: Bearer <key>`.
 */
api_key: string | null, };

/**
 * What the settings panel shows.
 */
export type ServerStatus = { settings: ServerSettings, 
/**
 * `http://127.0.0.1:PORT/v1` while running.
 */
address: string | null, 
/**
 * The model id clients name.
 */
model: string | null, };

/**
 * Facts the window shows in its status bar and empty states.
 */
export type AppInfo = { version: string, data_dir: string, models_dir: string, engine: boolean, 
/**
 * This machine's GPU in one line ("this build has no CUDA support", "NVIDIA ... 24.0 GB").
 */
gpu: string, };

/**
 * Who can act on a failure: the one classification of errors, decided by the core
 * ([`CoreError::kind`]) and used by every front end (the app sends it as `kind`).
 */
export type ErrorKind = "user" | "not_found" | "unavailable" | "crashed" | "busy" | "internal";

/**
 * A command failure as the front end receives it: `{ "kind": ..., "message": ... }`.
 */
export type CommandError = { kind: ErrorKind, message: string, };

/** The chat settings' defaults (`ChatSettings::default`; the sampling is `Sampling::chat_default`). */
export const DEFAULT_CHAT_SETTINGS: ChatSettings = {
  "temperature": 0.8,
  "top_k": 40,
  "top_p": 0.95,
  "seed": 0,
  "min_p": 0.05,
  "repeat_penalty": 1.0,
  "repeat_last_n": 64,
  "frequency_penalty": 0.0,
  "presence_penalty": 0.0,
  "max_tokens": 512,
  "plan": "auto",
  "placement": "auto",
  "context": null,
  "rpc": []
};

/** The largest value of each sampling setting (canopy-types' `MAX_*`). */
export const SAMPLING_LIMITS = {
  "presence_frequency_penalty": 2.0,
  "repeat_last_n": 4096,
  "repeat_penalty": 2.0,
  "temperature": 2.0,
  "top_k": 1000
} as const;

/** The engine's limits (canopy-types' `MAX_CHAIN` and `MAX_TREE`, the core's `MAX_REPLY_TOKENS`). */
export const ENGINE_LIMITS = {
  "max_chain": 255,
  "max_reply_tokens": 32768,
  "max_tree": 1024
} as const;

/** Texts and whether the back end parses them as a plan or a placement: the front end's checks are tested against these. */
export const GRAMMAR_EXAMPLES: { plan: [string, boolean][]; placement: [string, boolean][] } = {"placement":[["auto",true],["cpu",true],["stream",true],["gpu",true],["layers:0",true],["layers:12",true],["layers:x",false],["layers:",false],["GPU",false],["partial",false],["",false]],"plan":[["none",true],["auto",true],["chain:0",false],["chain:1",true],["chain:255",true],["chain:256",false],["tree:1",false],["tree:2",true],["tree:007",true],["tree:1024",true],["tree:1025",false],["tree:x",false],["tree:",false],["chain:99999999999",false],["Auto",false],["greedy",false],["",false]]};
