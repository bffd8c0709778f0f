// The message tree of a conversation: branches come from regenerating or editing a message.

import type { Message } from "../types";

export interface ThreadEntry {
  message: Message;
  /** Messages sharing this message's parent (itself included), oldest first. */
  siblings: Message[];
  /** Index of `message` among `siblings`. */
  index: number;
}

export class MessageTree {
  private readonly byId = new Map<number, Message>();
  private readonly children = new Map<number | null, Message[]>();

  constructor(messages: readonly Message[]) {
    for (const m of messages) this.byId.set(m.id, m);
    for (const m of messages) {
      // A parent that is missing (should not happen) makes the message a root rather than losing it.
      const parent = m.parent_id !== null && this.byId.has(m.parent_id) ? m.parent_id : null;
      const list = this.children.get(parent) ?? [];
      list.push(m);
      this.children.set(parent, list);
    }
    for (const list of this.children.values()) {
      list.sort((a, b) => a.created_at - b.created_at || a.id - b.id);
    }
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: number): Message | undefined {
    return this.byId.get(id);
  }

  childrenOf(id: number | null): Message[] {
    return this.children.get(id) ?? [];
  }

  /** The newest leaf below `id` (or below the roots), following the newest child at each step. */
  latestLeaf(id: number | null = null): Message | undefined {
    let current = id === null ? undefined : this.byId.get(id);
    let kids = this.childrenOf(id);
    while (kids.length > 0) {
      current = newest(kids);
      kids = this.childrenOf(current.id);
    }
    return current;
  }

  /** The newest leaf of the whole conversation by creation time. */
  newestLeaf(): Message | undefined {
    let best: Message | undefined;
    for (const m of this.byId.values()) {
      if (this.childrenOf(m.id).length > 0) continue;
      if (!best || m.created_at > best.created_at || (m.created_at === best.created_at && m.id > best.id)) {
        best = m;
      }
    }
    return best;
  }

  /** Root-to-leaf path ending at `leaf`, with sibling information for branch switching. */
  thread(leaf: number | undefined): ThreadEntry[] {
    const path: Message[] = [];
    let current = leaf === undefined ? undefined : this.byId.get(leaf);
    const seen = new Set<number>();
    while (current && !seen.has(current.id)) {
      seen.add(current.id);
      path.push(current);
      current = current.parent_id === null ? undefined : this.byId.get(current.parent_id);
    }
    path.reverse();
    return path.map((message) => {
      const parent = message.parent_id !== null && this.byId.has(message.parent_id) ? message.parent_id : null;
      const siblings = this.childrenOf(parent);
      return { message, siblings, index: siblings.findIndex((s) => s.id === message.id) };
    });
  }

  /** The leaf shown after switching the branch at `entry` by `step` (-1 or +1). */
  switchBranch(entry: ThreadEntry, step: number): Message | undefined {
    const next = entry.siblings[entry.index + step];
    return next ? this.latestLeaf(next.id) ?? next : undefined;
  }
}

function newest(list: Message[]): Message {
  return list.reduce((a, b) => (b.created_at > a.created_at || (b.created_at === a.created_at && b.id > a.id) ? b : a));
}
