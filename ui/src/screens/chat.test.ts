import { beforeEach, describe, expect, it, vi } from "vitest";

import type { ChatSettings, Conversation, ModelPair, ModelView, PairView, PlacementDecision, ServerStatus } from "../types";

const calls: { command: string; args: Record<string, unknown> | undefined }[] = [];
let handlers: Record<string, (args: Record<string, unknown> | undefined) => unknown> = {};

vi.mock("@tauri-apps/api/core", () => ({
  invoke: async (command: string, args?: Record<string, unknown>) => {
    calls.push({ command, args });
    const handler = handlers[command];
    if (!handler) throw { kind: "internal", message: `no handler for ${command}` };
    return handler(args);
  },
  Channel: class {
    onmessage: (e: unknown) => void = () => {};
  },
}));

const { ChatScreen } = await import("./chat");

function model(id: string, name: string): ModelView {
  return {
    id, name, path: `/models/${name}.gguf`, file_size: 1, architecture: "llama", quantization: "Q4_0", parameters: 1,
    context_length: 2048, vocab_size: 100, role: "both", fit: "fits", fit_reason: "",
  };
}

function conversation(id: number, target: string | null, draft: string | null): Conversation {
  return {
    id, title: `chat ${id}`, created_at: 0, updated_at: 0, target_model: target, draft_model: draft,
    sampling_json: null, plan: null, message_count: 0,
  };
}

const settings: ChatSettings = {
  temperature: 0.7, top_k: 40, top_p: 0.95, min_p: 0.1, repeat_penalty: 1.1, repeat_last_n: 64, frequency_penalty: 0.2,
  presence_penalty: 0, seed: 0, max_tokens: 512, plan: "auto", placement: "auto", context: null, rpc: [],
};

function decision(summary: string): PlacementDecision {
  return {
    placement: "cpu", automatic: true, draft_on_gpu: false, resident_layers: 0, target_layers: 30,
    streamed_bytes_per_pass: 0, op_offload_min_batch: null, summary,
  };
}

const flush = () => new Promise((r) => setTimeout(r, 0));
const q = (root: HTMLElement, testid: string) => root.querySelector(`[data-testid="${testid}"]`) as HTMLElement;

describe("ChatScreen", () => {
  beforeEach(() => {
    calls.length = 0;
    const pairings: PairView[] = [{ draft_id: "2", draft_name: "small", compatible: true, reason: "" }];
    const server: ServerStatus = {
      settings: { enabled: true, port: 8080, api_key: null },
      address: "http://127.0.0.1:8080/v1", model: "big",
    };
    handlers = {
      list_conversations: () => [conversation(7, "/elsewhere/cli-model.gguf", null), conversation(8, "1", "2")],
      load_settings: () => settings,
      get_model_pair: () => ({ target: "1", draft: null }),
      list_models: () => [model("1", "big"), model("2", "small")],
      server_status: () => server,
      model_pairings: () => pairings,
      conversation_messages: () => [],
      placement_preview: (a) => decision(`preview of ${(a?.pair as ModelPair).target}`),
      set_conversation_models: (a) => {
        const pair = a?.pair as ModelPair;
        return conversation(a?.id as number, pair.target, pair.draft);
      },
      set_model_pair: (a) => a?.pair,
    };
  });

  it("shows the open conversation's models, a stored path among them, and the placement preview", async () => {
    const chat = new ChatScreen(() => {});
    await chat.show();
    await flush();
    const target = q(chat.root, "target-select") as HTMLSelectElement;
    expect(target.value).toBe("/elsewhere/cli-model.gguf");
    expect(target.selectedOptions[0].textContent).toBe("cli-model");
    expect(q(chat.root, "status-placement").textContent).toBe("preview of /elsewhere/cli-model.gguf");
    expect(calls.find((c) => c.command === "placement_preview")?.args).toEqual({
      pair: { target: "/elsewhere/cli-model.gguf", draft: null }, placement: "auto",
    });
  });

  it("saves a new choice for the open conversation and as the default pair", async () => {
    const chat = new ChatScreen(() => {});
    await chat.show();
    (q(chat.root, "conversation-list").querySelectorAll("[data-testid=conversation]")[1] as HTMLElement).click();
    await flush();
    await flush();
    const draft = q(chat.root, "draft-select") as HTMLSelectElement;
    expect((q(chat.root, "target-select") as HTMLSelectElement).value).toBe("1");
    expect(draft.value).toBe("2");
    calls.length = 0;
    draft.value = "";
    draft.dispatchEvent(new Event("change"));
    await flush();
    await flush();
    const commands = calls.map((c) => c.command);
    expect(commands.slice(0, 2)).toEqual(["set_conversation_models", "set_model_pair"]);
    expect(calls[0].args).toEqual({ id: 8, pair: { target: "1", draft: null } });
    expect(commands).toContain("placement_preview");
  });

  it("only changes the default pair with no conversation open", async () => {
    handlers.list_conversations = () => [];
    const chat = new ChatScreen(() => {});
    await chat.show();
    calls.length = 0;
    const draft = q(chat.root, "draft-select") as HTMLSelectElement;
    draft.value = "2";
    draft.dispatchEvent(new Event("change"));
    await flush();
    expect(calls.map((c) => c.command)).not.toContain("set_conversation_models");
    expect(calls.find((c) => c.command === "set_model_pair")?.args).toEqual({ pair: { target: "1", draft: "2" } });
  });

  it("edits min-p and the repetition penalty, refuses what the back end would, and keeps the other penalties", async () => {
    const chat = new ChatScreen(() => {});
    await chat.show();
    q(chat.root, "toggle-settings").click();
    const minP = q(chat.root, "setting-min_p") as HTMLInputElement;
    const repeat = q(chat.root, "setting-repeat_penalty") as HTMLInputElement;
    const save = q(chat.root, "save-settings") as HTMLButtonElement;
    expect([minP.value, repeat.value]).toEqual(["0.1", "1.1"]);
    const type = (input: HTMLInputElement, text: string) => {
      input.value = text;
      input.dispatchEvent(new Event("input"));
    };
    type(minP, "1.5");
    expect(save.disabled).toBe(true);
    expect(minP.parentElement?.querySelector(".field-error")?.textContent).toMatch(/Min-p/);
    type(minP, "0.2");
    type(repeat, "0");
    expect(save.disabled).toBe(true);
    expect(repeat.parentElement?.querySelector(".field-error")?.textContent).toMatch(/Repetition penalty/);
    type(repeat, "1.3");
    expect(save.disabled).toBe(false);
    handlers.save_settings = () => undefined;
    save.click();
    await flush();
    expect(calls.find((c) => c.command === "save_settings")?.args).toEqual({
      settings: { ...settings, min_p: 0.2, repeat_penalty: 1.3 },
    });
  });

  it("shows the local server's address in the settings panel", async () => {
    const chat = new ChatScreen(() => {});
    await chat.show();
    q(chat.root, "toggle-settings").click();
    expect(q(chat.root, "server-address").textContent).toBe("http://127.0.0.1:8080/v1 · model big");
    expect((q(chat.root, "server-enabled") as HTMLInputElement).checked).toBe(true);
    expect((q(chat.root, "setting-placement") as HTMLSelectElement).value).toBe("auto");
    handlers.set_server = (a) => ({ settings: a?.settings, address: null, model: null });
    (q(chat.root, "server-enabled") as HTMLInputElement).checked = false;
    q(chat.root, "server-apply").click();
    await flush();
    expect(calls.find((c) => c.command === "set_server")?.args).toEqual({ settings: { enabled: false, port: 8080, api_key: null } });
    expect(q(chat.root, "server-address").textContent).toBe("Not running");
  });
});
