import type { ChatRole, Message } from "../types";
import { MessageTree } from "./thread";

function msg(id: number, parent: number | null, role: ChatRole, at = id): Message {
  return {
    id, conversation_id: 1, parent_id: parent, role, content: `m${id}`, status: "complete",
    created_at: at, stats: null,
  };
}

// 1 user → 2 reply, 3 regenerated reply; 4 user under 3; 5 edited user (sibling of 1) → 6
const messages = [
  msg(1, null, "user"), msg(2, 1, "assistant"), msg(3, 1, "assistant"), msg(4, 3, "user"),
  msg(5, null, "user"), msg(6, 5, "assistant"),
];

describe("MessageTree", () => {
  const tree = new MessageTree(messages);

  it("finds the newest leaf", () => {
    expect(tree.newestLeaf()?.id).toBe(6);
    expect(tree.latestLeaf(1)?.id).toBe(4);
  });

  it("builds the thread with sibling positions", () => {
    const t = tree.thread(4);
    expect(t.map((e) => e.message.id)).toEqual([1, 3, 4]);
    expect(t[0].siblings.map((m) => m.id)).toEqual([1, 5]);
    expect(t[1].index).toBe(1);
    expect(t[1].siblings.length).toBe(2);
  });

  it("switches branches to the newest leaf of the sibling", () => {
    const t = tree.thread(4);
    expect(tree.switchBranch(t[1], -1)?.id).toBe(2);
    expect(tree.switchBranch(t[0], 1)?.id).toBe(6);
    expect(tree.switchBranch(t[0], -1)).toBeUndefined();
  });

  it("survives a missing parent and an empty conversation", () => {
    const orphan = new MessageTree([msg(9, 77, "user")]);
    expect(orphan.thread(9).map((e) => e.message.id)).toEqual([9]);
    expect(new MessageTree([]).thread(undefined)).toEqual([]);
  });
});
