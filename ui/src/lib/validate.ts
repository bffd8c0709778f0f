// Validation of what the user types, before anything is sent to the app.

import { DEFAULT_CHAT_SETTINGS, ENGINE_LIMITS, SAMPLING_LIMITS } from "../bindings";
import type { ChatSettings, Placement, Plan, ServerSettings } from "../types";

export type Errors<T> = Partial<Record<keyof T, string>>;

/** The back end's defaults (canopy-core's `ChatSettings::default`, generated into bindings.ts). */
export const DEFAULT_SETTINGS: ChatSettings = DEFAULT_CHAT_SETTINGS;

/** `host:port[,host:port]` as typed → the list the back end checks again. */
export function parseRpc(text: string): string[] {
  return text.split(",").map((e) => e.trim()).filter((e) => e.length > 0);
}

const RPC_ENTRY = /^[A-Za-z0-9._-]+:([0-9]{1,5})$/;

/** The engine's limits (generated from canopy-types' `MAX_CHAIN` and `MAX_TREE`). */
export const MAX_CHAIN = ENGINE_LIMITS.max_chain;
export const MAX_TREE = ENGINE_LIMITS.max_tree;
export const MAX_REPLY_TOKENS = ENGINE_LIMITS.max_reply_tokens;

const PLAN = /^(none|auto|chain:(\d{1,6})|tree:(\d{1,6}))$/;
const PLACEMENT = /^(auto|cpu|stream|gpu|layers:(\d{1,6}))$/;

/** Whether `text` is a plan the back end accepts: none, auto, chain:1..255 or tree:2..1024. */
export function isPlan(text: string): text is Plan {
  const m = PLAN.exec(text);
  if (!m) return false;
  if (m[2] !== undefined) return Number(m[2]) >= 1 && Number(m[2]) <= MAX_CHAIN;
  if (m[3] !== undefined) return Number(m[3]) >= 2 && Number(m[3]) <= MAX_TREE;
  return true;
}

/** Whether `text` is a placement the back end accepts: auto, cpu, stream, gpu or layers:N. */
export function isPlacement(text: string): text is Placement {
  return PLACEMENT.test(text);
}

/** The plan's draft-token budget for a step, for display: tree:N → N, chain:K → K+1, none → 1, auto → "auto". */
export function planBudget(plan: string): string {
  const m = PLAN.exec(plan);
  if (!m) return "—";
  if (m[2] !== undefined) return String(Number(m[2]) + 1);
  if (m[3] !== undefined) return m[3].replace(/^0+(?=\d)/, "");
  return plan === "none" ? "1" : "auto";
}

/** Checks chat settings with the back end's bounds; returns one message per bad field (empty when all are fine). */
export function validateSettings(s: ChatSettings): Errors<ChatSettings> {
  const e: Errors<ChatSettings> = {};
  const L = SAMPLING_LIMITS;
  const within = (x: number, low: number, high: number) => Number.isFinite(x) && x >= low && x <= high;
  if (!within(s.temperature, 0, L.temperature)) {
    e.temperature = `Temperature must be between 0 and ${L.temperature}.`;
  }
  if (!Number.isInteger(s.top_k) || !within(s.top_k, 0, L.top_k)) {
    e.top_k = `Top-k must be a whole number from 0 (off) to ${L.top_k}.`;
  }
  if (!within(s.top_p, 0, 1) || s.top_p === 0) {
    e.top_p = "Top-p must be above 0 and at most 1.";
  }
  if (!within(s.min_p, 0, 1)) {
    e.min_p = "Min-p must be between 0 (off) and 1.";
  }
  if (!within(s.repeat_penalty, 0, L.repeat_penalty) || s.repeat_penalty === 0) {
    e.repeat_penalty = `Repetition penalty must be above 0 and at most ${L.repeat_penalty} (1 turns it off).`;
  }
  if (!Number.isInteger(s.repeat_last_n) || !within(s.repeat_last_n, 0, L.repeat_last_n)) {
    e.repeat_last_n = `The penalty window must be a whole number of tokens from 0 (off) to ${L.repeat_last_n}.`;
  }
  const pf = L.presence_frequency_penalty;
  if (!within(s.frequency_penalty, -pf, pf)) {
    e.frequency_penalty = `Frequency penalty must be between -${pf} and ${pf}.`;
  }
  if (!within(s.presence_penalty, -pf, pf)) {
    e.presence_penalty = `Presence penalty must be between -${pf} and ${pf}.`;
  }
  if (!Number.isInteger(s.seed) || s.seed < 0 || s.seed > Number.MAX_SAFE_INTEGER) {
    e.seed = "Seed must be a whole number of at least 0.";
  }
  if (!Number.isInteger(s.max_tokens) || s.max_tokens < 1 || s.max_tokens > MAX_REPLY_TOKENS) {
    e.max_tokens = `Max tokens must be a whole number from 1 to ${MAX_REPLY_TOKENS}.`;
  }
  if (typeof s.plan !== "string" || !isPlan(s.plan)) {
    e.plan = `Plan must be none, auto, chain:K (1 to ${MAX_CHAIN}) or tree:N (2 to ${MAX_TREE}).`;
  }
  if (typeof s.placement !== "string" || !isPlacement(s.placement)) {
    e.placement = "Placement must be auto, cpu, stream, gpu or layers:N.";
  }
  if (s.context !== null && (!Number.isInteger(s.context) || s.context < 1 || s.context > 0xffffffff)) {
    e.context = "Context must be a whole number of tokens, or empty for the model's own.";
  }
  const badHelper = s.rpc.find((entry) => {
    const m = RPC_ENTRY.exec(entry);
    return !m || Number(m[1]) < 1 || Number(m[1]) > 65535;
  });
  if (badHelper !== undefined) e.rpc = `"${badHelper}" is not host:port (e.g. 192.168.1.20:50052).`;
  else if (new Set(s.rpc).size !== s.rpc.length) e.rpc = "A helper is listed twice.";
  return e;
}

/** Parses a number field; empty or malformed text gives NaN so that validation reports it. */
export function parseNumber(text: string): number {
  const t = text.trim();
  return t === "" ? NaN : Number(t);
}

/** Checks a settings object read from storage, falling back to defaults field by field. */
export function mergeSettings(raw: unknown): ChatSettings {
  const out: ChatSettings = { ...DEFAULT_SETTINGS };
  if (!raw || typeof raw !== "object") return out;
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof ChatSettings)[]) {
    const candidate = { ...out, [key]: r[key] } as ChatSettings;
    if (r[key] !== undefined && validateSettings(candidate)[key] === undefined) {
      (out as unknown as Record<string, unknown>)[key] = r[key];
    }
  }
  return out;
}

/** A conversation title: trimmed, one line, 1..120 characters. */
export function validateTitle(title: string): string | null {
  const t = title.trim();
  if (t.length === 0) return "The title cannot be empty.";
  if (t.length > 120) return "Keep the title under 120 characters.";
  if (/[\r\n]/.test(t)) return "The title must be one line.";
  return null;
}

/** A download source: an http(s) URL or a catalog id. */
export function validateDownloadSource(source: string): string | null {
  const s = source.trim();
  if (s.length === 0) return "Enter a URL or pick a catalog entry.";
  if (/^https?:\/\//i.test(s)) {
    try {
      const u = new URL(s);
      if (!u.hostname) return "That URL has no host.";
      return null;
    } catch {
      return "That is not a valid URL.";
    }
  }
  if (/^[a-z0-9][a-z0-9._-]{0,99}$/i.test(s)) return null;
  return "Enter an http(s) URL or a catalog id.";
}

/** A model file path typed by the user: absolute and ending in .gguf. The app checks the file itself. */
export function validateModelPath(path: string): string | null {
  const p = path.trim();
  if (p.length === 0) return "Enter the path of a .gguf file.";
  if (!p.startsWith("/") && !/^[a-zA-Z]:[\\/]/.test(p)) return "Use an absolute path (starting with /).";
  if (!/\.gguf$/i.test(p)) return "Canopy imports GGUF files (.gguf).";
  return null;
}

/** Checks the local server's settings with the back end's rules: a port of 1024..65535, a key without spaces. */
export function validateServer(s: ServerSettings): Errors<ServerSettings> {
  const e: Errors<ServerSettings> = {};
  if (!Number.isInteger(s.port) || s.port < 1024 || s.port > 65535) {
    e.port = "Port must be a whole number from 1024 to 65535.";
  }
  if (s.api_key !== null && (s.api_key.length === 0 || s.api_key.length > 256 || /[\s\p{Cc}]/u.test(s.api_key))) {
    e.api_key = "The API key must be 1 to 256 characters without spaces.";
  }
  return e;
}
