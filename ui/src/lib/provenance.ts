// Provenance colouring over rendered Markdown: which words of a reply came from accepted draft tokens.
//
// The reply is rendered exactly as without colouring (markdown.ts); this module then walks the
// rendered text nodes in document order and lines their characters up with the Markdown source.
// Markdown syntax (`**`, backticks, `#`, fence lines, list markers) and entity spellings are in the
// source but not in the rendered text, so an unmatched source character is skipped as syntax.
// Rendered text is only ever split and wrapped in spans built with DOM calls: no HTML strings, and
// the concatenated text is unchanged. Characters that cannot be lined up stay uncoloured.

import type { Run, RunKind } from "./stream";

/** Class of the span that marks text of one provenance, shared by the reply view and the legend. */
export function provClass(kind: RunKind): string {
  return `prov-${kind}`;
}

/** Hover text of a provenance span. */
export function provTitle(kind: RunKind): string {
  return kind === "draft" ? "accepted draft tokens" : kind === "target" ? "target tokens" : "mixed";
}

/** How far past the last matched character a match may be found: room for a link's URL or a table rule. */
const MAX_SKIP = 2000;

/** Elements whose text is interface, not reply: the code block's language label and copy button. */
const CHROME = ".code-head, button";

/** Containers whose whitespace-only children are layout (newlines between tags), not reply text. */
const STRUCTURAL = new Set(["UL", "OL", "TABLE", "THEAD", "TBODY", "TFOOT", "TR"]);
const BLOCKS = new Set([
  "BLOCKQUOTE", "DIV", "H1", "H2", "H3", "H4", "H5", "H6", "HR", "LI", "OL", "P", "PRE", "TABLE",
  "TBODY", "TD", "TH", "THEAD", "TR", "UL",
]);

const NAMED_ENTITIES: Record<string, string> = {
  amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0", copy: "©", reg: "®", trade: "™",
  hellip: "…", mdash: "—", ndash: "–", laquo: "«", raquo: "»", times: "×", middot: "·",
};
const ENTITY = /^&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([A-Za-z][A-Za-z0-9]{1,31}));/;

/** The entity spelled at `source[at]` and what it decodes to, if it is one this module knows. */
function entityAt(source: string, at: number): { length: number; text: string } | null {
  if (source[at] !== "&") return null;
  const m = ENTITY.exec(source.slice(at, at + 42));
  if (!m) return null;
  let text: string | undefined;
  if (m[1] !== undefined || m[2] !== undefined) {
    const code = m[1] !== undefined ? Number.parseInt(m[1], 10) : Number.parseInt(m[2] ?? "", 16);
    text = code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : undefined;
  } else {
    text = NAMED_ENTITIES[m[3] ?? ""];
  }
  return text === undefined ? null : { length: m[0].length, text };
}

/** The provenance of each UTF-16 unit of the runs' concatenated text. */
function kindsByOffset(runs: readonly Run[]): RunKind[] {
  const kinds: RunKind[] = [];
  for (const run of runs) for (let i = 0; i < run.text.length; i++) kinds.push(run.kind);
  return kinds;
}

/** Text nodes of the reply in document order, leaving out interface chrome. */
function replyTextNodes(root: Element): Text[] {
  const out: Text[] = [];
  const visit = (node: Node): void => {
    for (const child of Array.from(node.childNodes)) {
      if (child.nodeType === Node.TEXT_NODE) out.push(child as Text);
      else if (child.nodeType === Node.ELEMENT_NODE && !(child as Element).matches(CHROME)) visit(child);
    }
  };
  visit(root);
  return out;
}

function isBlock(node: Node | null): boolean {
  return node !== null && node.nodeType === Node.ELEMENT_NODE && BLOCKS.has((node as Element).tagName);
}

/** A whitespace-only node that only separates block elements (the HTML's own line breaks). */
function isLayoutWhitespace(node: Text, root: Element): boolean {
  if (node.data.trim() !== "") return false;
  const parent = node.parentElement;
  if (parent === null || parent === root || STRUCTURAL.has(parent.tagName)) return true;
  return isBlock(node.previousSibling) || isBlock(node.nextSibling);
}

/** Where the rendered character `c` sits in `source` at or after `from`: the source span it came from. */
function matchChar(source: string, from: number, c: string): { start: number; end: number } | null {
  const limit = Math.min(source.length, from + MAX_SKIP);
  for (let q = from; q < limit; q++) {
    const entity = entityAt(source, q);
    if (entity && entity.text === c) return { start: q, end: q + entity.length };
    if (source[q] === c) return { start: q, end: q + 1 };
  }
  return null;
}

/** Replaces `node` by its text cut where the provenance changes; coloured pieces go into spans. */
function wrap(node: Text, kinds: readonly (RunKind | null)[]): void {
  const text = node.data;
  const pieces: { kind: RunKind | null; text: string }[] = [];
  for (let i = 0; i < text.length; i++) {
    const last = pieces[pieces.length - 1];
    // Never cut between the two halves of a surrogate pair.
    const low = i > 0 && /[\uDC00-\uDFFF]/.test(text[i]) && /[\uD800-\uDBFF]/.test(text[i - 1]);
    if (last && (last.kind === kinds[i] || low)) last.text += text[i];
    else pieces.push({ kind: kinds[i] ?? null, text: text[i] });
  }
  if (pieces.every((p) => p.kind === null)) return;
  const doc = node.ownerDocument;
  const fragment = doc.createDocumentFragment();
  for (const piece of pieces) {
    if (piece.kind === null) {
      fragment.append(doc.createTextNode(piece.text));
    } else {
      const span = doc.createElement("span");
      span.className = provClass(piece.kind);
      span.title = provTitle(piece.kind);
      span.textContent = piece.text;
      fragment.append(span);
    }
  }
  node.replaceWith(fragment);
}

/**
 * Colours the rendered Markdown in `container` by provenance, in place.
 *
 * `container` holds `renderMarkdown(source)`; `runs` spell `source` (their texts concatenated are
 * the source). Every rendered character that lines up with a source character goes into a
 * `span.prov-<kind>` of that character's run. The container's text is unchanged: characters that do
 * not line up (and runs that do not cover the source) are left uncoloured, never dropped.
 */
export function colourRendered(container: Element, source: string, runs: readonly Run[]): void {
  const kinds = kindsByOffset(runs);
  let pos = 0;
  for (const node of replyTextNodes(container)) {
    if (isLayoutWhitespace(node, container)) continue;
    const text = node.data;
    const nodeKinds: (RunKind | null)[] = new Array<RunKind | null>(text.length).fill(null);
    // Most text nodes appear verbatim in the source, a little after the last match.
    const verbatim = source.slice(pos, pos + MAX_SKIP + text.length).indexOf(text);
    if (verbatim !== -1) {
      const start = pos + verbatim;
      for (let i = 0; i < text.length; i++) nodeKinds[i] = kinds[start + i] ?? null;
      pos = start + text.length;
    } else {
      // Not verbatim (an entity, an escape): line it up one character at a time.
      for (let i = 0; i < text.length; i++) {
        const m = matchChar(source, pos, text[i]);
        if (m === null) continue;
        nodeKinds[i] = kinds[m.start] ?? null;
        pos = m.end;
      }
    }
    wrap(node, nodeKinds);
  }
}
