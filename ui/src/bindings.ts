// Generated from the Rust types by `CANOPY_BLESS=1 cargo test -p canopy-app bindings`.
// Do not edit: a test fails when this file and the Rust types disagree.

/** Where an output token came from. */
export type Source = "draft" | "target";

/** `none`, `auto`, `chain:K` (1 ≤ K ≤ 255) or `tree:N` (2 ≤ N ≤ 1024). */
export type Plan = "none" | "auto" | `chain:${number}` | `tree:${number}`;

/** `auto`, `cpu`, `stream`, `gpu` or `layers:N`. */
export type Placement = "auto" | "cpu" | "stream" | "gpu" | `layers:${number}`;

export type Sampling = { temperature: number, top_k: number, top_p: number, seed: number, };

/** How a chat generates its replies. */
export type ChatSettings = { temperature: number, top_k: number, top_p: number, seed: number, max_tokens: number, plan: Plan, placement: Placement, context: number | null, };

/** The target and draft models a new conversation starts with: library ids or file paths. */
export type ModelPair = { target: string | null, draft: string | null, };

/** A resolved placement and what it means, in numbers and in words. */
export type PlacementDecision = { placement: Placement, automatic: boolean, draft_on_gpu: boolean, resident_layers: number, target_layers: number, streamed_bytes_per_pass: number, op_offload_min_batch: number | null, summary: string, };

/** A registered model as the library and the chat show it. */
export type ModelView = { id: string, name: string, path: string, file_size: number, architecture: string | null, quantization: string | null, parameters: number | null, context_length: number | null, vocab_size: number | null, role: string, fit: "fits" | "tight" | "too-big" | null, fit_reason: string, };

/** One registered model judged as a draft for a target. */
export type PairView = { draft_id: string, draft_name: string, compatible: boolean, reason: string, };

export type Fact = { key: string, value: string, };

export type Bandwidth = { label: string, gb_per_second: number, };

export type Point = { n: number, seconds: number, };

export type Node = { parent: number | null, rank: number, depth: number, children: number, };

/** A profile as a screen shows it. */
export type ProfileView = { name: string, created_at: string, source: string, system: Array<Fact>, bandwidth: Array<Bandwidth>, target_model: string | null, draft_model: string | null, placement: string | null, target_curve: Array<Point>, draft_curve: Array<Point>, acceptance: Array<number>, plan: string, budget: number, depth: number, tree: Array<Node>, expected_tokens_per_step: number, predicted_tokens_per_second: number, plain_tokens_per_second: number, };

/** The id of a conversation. */
export type ConversationId = number;

/** The id of a message; unique across all conversations. */
export type MessageId = number;

/** Who wrote a message. */
export type Role = "system" | "user" | "assistant";

/** Whether a message's content is final. */
export type MessageStatus = "complete" | "streaming" | "interrupted";

/** A stored conversation. */
export type Conversation = { id: ConversationId, title: string, created_at: number, updated_at: number, target_model: string | null, draft_model: string | null, sampling_json: string | null, plan: string | null, message_count: number, };

/** How an assistant reply was generated. */
export type GenerationStats = { tokens: number, prefill_tokens: number, tokens_per_second: number, plan: string, steps: number, mean_accepted_per_step: number, draft_ms: number, verify_ms: number, provenance: Array<Source>, };

/** A stored message. */
export type Message = { id: MessageId, conversation_id: ConversationId, parent_id: MessageId | null, role: Role, content: string, status: MessageStatus, created_at: number, stats: GenerationStats | null, };

/** One full-text search result. */
export type SearchHit = { conversation_id: ConversationId, conversation_title: string, message_id: MessageId, role: Role, snippet: string, created_at: number, };

/** What the generation channel carries to the window. */
export type ChatEvent = { "type": "started", plan: Plan, placement: PlacementDecision, } | { "type": "progress", phase: string, fraction: number, } | { "type": "reply", reply_id: number, } | { "type": "token", text: string, sources: Array<Source>, };

/** The wizard's steps: the core's stages and the plan chosen from them. */
export type Step = "detect" | "bandwidth" | "costs" | "acceptance" | "plan";

export type ProfileEvent = { "type": "step", step: Step, fraction: number, note: string, } | { "type": "step_done", step: Step, profile: ProfileView, };

export type MetadataEntryView = { key: string, value: string, };

export type ModelDetails = { model: ModelView, metadata: Array<MetadataEntryView>, tensor_count: number, };

export type CatalogEntry = { id: string, name: string, url: string, size: number | null, description: string, };

export type DownloadEvent = { "type": "progress", received: number, total: number | null, bytes_per_second: number, } | { "type": "verifying" };

/** Disk usage of the library. */
export type LibraryUsage = { models: number, total_bytes: number, managed_bytes: number, models_dir: string, };

/** The app's local OpenAI-compatible server. */
export type ServerSettings = { enabled: boolean, port: number, api_key: string | null, };

/** What the settings panel shows. */
export type ServerStatus = { settings: ServerSettings, address: string | null, model: string | null, };

/** Facts the window shows in its status bar and empty states. */
export type AppInfo = { version: string, data_dir: string, models_dir: string, engine: boolean, gpu: string, };

/** What kind of failure a command hit; the front end offers a restart for `Crashed`. */
export type ErrorKind = "user" | "crashed" | "internal" | "busy" | "not_found" | "unavailable";

/** A command failure as the front end receives it: `{ "kind": ..., "message": ... }`. */
export type CommandError = { kind: ErrorKind, message: string, };
