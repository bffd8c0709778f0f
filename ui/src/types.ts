// Shapes exchanged with the app's commands (mirrors src-tauri/src/*.rs, snake_case as serialised).

export type Source = "draft" | "target";
export type Role = "system" | "user" | "assistant";
export type MessageStatus = "complete" | "streaming" | "interrupted";

export interface Conversation {
  id: number;
  title: string;
  created_at: number;
  updated_at: number;
  target_model: string | null;
  draft_model: string | null;
  sampling_json: string | null;
  plan: string | null;
  message_count: number;
}

export interface GenerationStats {
  tokens: number;
  prefill_tokens: number;
  tokens_per_second: number;
  plan: string;
  steps: number;
  mean_accepted_per_step: number;
  draft_ms: number;
  verify_ms: number;
  /** Per output token: 0 = target, 1 = accepted draft token. */
  provenance: number[];
}

export interface Message {
  id: number;
  conversation_id: number;
  parent_id: number | null;
  role: Role;
  content: string;
  status: MessageStatus;
  created_at: number;
  stats: GenerationStats | null;
}

export interface SearchHit {
  conversation_id: number;
  conversation_title: string;
  message_id: number;
  role: Role;
  snippet: string;
  created_at: number;
}

export interface Sampling {
  temperature: number;
  top_k: number;
  top_p: number;
  seed: number;
  max_tokens: number;
}

/** What the chat asks the engine to do. */
export interface GenerateSettings extends Sampling {
  /** `none`, `auto`, `chain:K` or `tree:N`. */
  plan: string;
}

/** Events streamed over the generation channel. */
export type ChatEvent =
  | { type: "started"; reply_id: number; plan: string; budget: number }
  | { type: "progress"; phase: string; fraction: number }
  | { type: "token"; text: string; sources: Source[] }
  | { type: "finished"; message: Message };

export type ErrorKind = "user" | "crashed" | "internal" | "busy" | "not_found" | "unavailable";

/** Every command failure: one line for the user, and what kind of failure it was. */
export interface CommandError {
  kind: ErrorKind;
  message: string;
}

export type FitLevel = "fits" | "stream" | "tight" | "too_big" | "unknown";

export interface ModelView {
  id: string;
  name: string;
  path: string;
  file_size: number;
  architecture: string | null;
  quantization: string | null;
  parameters: number | null;
  context_length: number | null;
  vocab_size: number | null;
  role: string;
  fit: FitLevel;
  fit_reason: string;
}

export interface Pairing {
  draft_id: string;
  draft_name: string;
  compatible: boolean;
  reason: string;
}

export interface MetadataEntry {
  key: string;
  value: string;
}

export interface ModelDetails {
  model: ModelView;
  metadata: MetadataEntry[];
  tensor_count: number;
}

export interface CatalogEntry {
  id: string;
  name: string;
  url: string;
  size: number | null;
  description: string;
}

export type DownloadEvent =
  | { type: "progress"; received: number; total: number | null; bytes_per_second: number }
  | { type: "verifying" };

export interface TreeNode {
  parent: number | null;
  rank: number;
  depth: number;
  children: number;
}

export interface CurvePoint {
  n: number;
  seconds: number;
}

export interface BandwidthPoint {
  label: string;
  gb_per_second: number;
}

export interface ProfileView {
  created_at: number;
  quick: boolean;
  system: MetadataEntry[];
  bandwidth: BandwidthPoint[];
  target_model: string | null;
  draft_model: string | null;
  target_curve: CurvePoint[];
  draft_curve: CurvePoint[];
  acceptance: number[];
  plan: string;
  budget: number;
  depth: number;
  tree: TreeNode[];
  expected_tokens_per_step: number;
  predicted_tokens_per_second: number;
  plain_tokens_per_second: number;
}

export type ProfileStep = "detect" | "bandwidth" | "costs" | "acceptance" | "plan";

export type ProfileEvent =
  | { type: "step"; step: ProfileStep; fraction: number; note: string }
  | { type: "step_done"; step: ProfileStep; profile: ProfileView }
  | { type: "finished"; profile: ProfileView };

export interface AppInfo {
  version: string;
  data_dir: string;
  models_dir: string;
  engine: boolean;
}

export interface ModelPair {
  target: string | null;
  draft: string | null;
}

export interface LibraryUsage {
  models: number;
  total_bytes: number;
  managed_bytes: number;
  models_dir: string;
}
