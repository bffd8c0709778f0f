// Validation of what the user types, before anything is sent to the app.

import type { GenerateSettings } from "../types";

export type Errors<T> = Partial<Record<keyof T, string>>;

export const DEFAULT_SETTINGS: GenerateSettings = {
  temperature: 0.7,
  top_k: 40,
  top_p: 0.95,
  seed: 0,
  max_tokens: 512,
  plan: "auto",
};

const PLAN = /^(none|auto|chain:([1-9]\d{0,2})|tree:([1-9]\d{0,3}))$/;

/** Checks sampling settings; returns one message per bad field (empty when all are fine). */
export function validateSettings(s: GenerateSettings): Errors<GenerateSettings> {
  const e: Errors<GenerateSettings> = {};
  if (!Number.isFinite(s.temperature) || s.temperature < 0 || s.temperature > 2) {
    e.temperature = "Temperature must be between 0 and 2.";
  }
  if (!Number.isInteger(s.top_k) || s.top_k < 0 || s.top_k > 1000) {
    e.top_k = "Top-k must be a whole number from 0 (off) to 1000.";
  }
  if (!Number.isFinite(s.top_p) || s.top_p <= 0 || s.top_p > 1) {
    e.top_p = "Top-p must be above 0 and at most 1.";
  }
  if (!Number.isInteger(s.seed) || s.seed < 0 || s.seed > Number.MAX_SAFE_INTEGER) {
    e.seed = "Seed must be a whole number of at least 0.";
  }
  if (!Number.isInteger(s.max_tokens) || s.max_tokens < 1 || s.max_tokens > 32768) {
    e.max_tokens = "Max tokens must be a whole number from 1 to 32768.";
  }
  if (!PLAN.test(s.plan)) {
    e.plan = "Plan must be none, auto, chain:K (K ≤ 999) or tree:N (N ≤ 9999).";
  } else {
    const m = PLAN.exec(s.plan);
    if (m?.[3] && Number(m[3]) > 1024) e.plan = "A tree budget above 1024 tokens is not supported.";
  }
  return e;
}

/** Parses a number field; empty or malformed text gives NaN so that validation reports it. */
export function parseNumber(text: string): number {
  const t = text.trim();
  return t === "" ? NaN : Number(t);
}

/** Checks a settings object read from storage, falling back to defaults field by field. */
export function mergeSettings(raw: unknown): GenerateSettings {
  const out: GenerateSettings = { ...DEFAULT_SETTINGS };
  if (!raw || typeof raw !== "object") return out;
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof GenerateSettings)[]) {
    const candidate = { ...out, [key]: r[key] } as GenerateSettings;
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
