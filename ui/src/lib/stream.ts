// Accumulates a streamed reply: its text, the provenance of each piece, and live statistics.

import type { Source } from "../types";

export type RunKind = Source | "mixed";

/** A stretch of text whose tokens all came from the same place. */
export interface Run {
  kind: RunKind;
  text: string;
  tokens: number;
}

export interface LiveStats {
  tokens: number;
  draftTokens: number;
  /** Accepted tokens proposed by matching the conversation so far (prompt lookup). */
  lookupTokens: number;
  targetTokens: number;
  /** Tokens per second since the first token; 0 until two tokens have arrived. */
  tokensPerSecond: number;
  /** Each verification step yields exactly one target token, so steps = target tokens. */
  acceptedPerStep: number;
  /** Share of tokens that were accepted draft tokens, 0..1. */
  draftShare: number;
}

export function kindOf(sources: readonly Source[]): RunKind {
  if (sources.length === 0) return "target";
  const first = sources[0];
  return sources.every((s) => s === first) ? first : "mixed";
}

export class StreamAccumulator {
  private readonly pieces: Run[] = [];
  private draft = 0;
  private lookup = 0;
  private target = 0;
  private firstAt: number | null = null;
  private lastAt: number | null = null;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Adds one streamed piece; adjacent pieces of the same kind merge into one run. */
  push(text: string, sources: readonly Source[]): void {
    const t = this.now();
    if (this.firstAt === null) this.firstAt = t;
    this.lastAt = t;
    for (const s of sources) {
      if (s === "draft") this.draft += 1;
      else if (s === "lookup") this.lookup += 1;
      else this.target += 1;
    }
    const kind = kindOf(sources);
    const last = this.pieces[this.pieces.length - 1];
    if (last && last.kind === kind) {
      last.text += text;
      last.tokens += sources.length;
    } else if (text.length > 0 || sources.length > 0) {
      this.pieces.push({ kind, text, tokens: sources.length });
    }
  }

  get text(): string {
    return this.pieces.map((p) => p.text).join("");
  }

  get runs(): readonly Run[] {
    return this.pieces;
  }

  stats(): LiveStats {
    const tokens = this.draft + this.lookup + this.target;
    const elapsed = this.firstAt !== null && this.lastAt !== null ? (this.lastAt - this.firstAt) / 1000 : 0;
    // The first token's arrival starts the clock, so it does not count towards the rate.
    const tokensPerSecond = elapsed > 0 && tokens > 1 ? (tokens - 1) / elapsed : 0;
    return {
      tokens,
      draftTokens: this.draft,
      lookupTokens: this.lookup,
      targetTokens: this.target,
      tokensPerSecond,
      acceptedPerStep: this.target > 0 ? (this.draft + this.lookup) / this.target : 0,
      draftShare: tokens > 0 ? this.draft / tokens : 0,
    };
  }
}

/** Summary of a stored reply's provenance: how many tokens were accepted draft tokens (`share`),
 * and how many came from matching the conversation (`lookup`, `lookupShare`). */
export function provenanceShare(provenance: readonly Source[]): {
  draft: number;
  lookup: number;
  target: number;
  share: number;
  lookupShare: number;
} {
  const draft = provenance.filter((p) => p === "draft").length;
  const lookup = provenance.filter((p) => p === "lookup").length;
  const target = provenance.length - draft - lookup;
  const n = provenance.length;
  return { draft, lookup, target, share: n ? draft / n : 0, lookupShare: n ? lookup / n : 0 };
}
