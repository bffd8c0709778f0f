// The chat screen: conversations, the model pair, the thread with branches, streaming and statistics.

import { api } from "../api";
import { showBanner, showError } from "../banner";
import { copyText } from "../lib/clipboard";
import { h, icon, replace } from "../lib/dom";
import { formatRate, relativeTime } from "../lib/format";
import { renderMarkdown } from "../lib/markdown";
import { modelLabel } from "../lib/models";
import { placementPicker } from "../lib/placement";
import { colourRendered } from "../lib/provenance";
import { snippetParts } from "../lib/snippet";
import { StreamAccumulator, provenanceShare, type Run } from "../lib/stream";
import { MessageTree, type ThreadEntry } from "../lib/thread";
import {
  DEFAULT_SETTINGS, parseNumber, parseRpc, planBudget, validateServer, validateSettings, validateTitle,
} from "../lib/validate";
import type {
  ChatEvent, ChatSettings, CommandError, Conversation, Message, ModelPair, ModelView, PairView, Placement, Plan,
  SearchHit, ServerSettings, ServerStatus,
} from "../types";

interface Streaming {
  acc: StreamAccumulator;
  parentId: number;
  replyId: number | null;
  plan: string;
  body: HTMLElement;
  scheduled: boolean;
}

/** Whether a stored model reference is a library id (else it is a file path, e.g. from the command line). */
function isLibraryId(ref: string): boolean {
  return /^\d+$/.test(ref);
}

/** The models a conversation was saved with; `null` when it names no target. */
function pairOf(c: Conversation | undefined): ModelPair | null {
  return c?.target_model ? { target: c.target_model, draft: c.draft_model } : null;
}

export class ChatScreen {
  readonly root: HTMLElement;
  private conversations: Conversation[] = [];
  private activeId: number | null = null;
  private tree = new MessageTree([]);
  private leafId: number | undefined;
  private streaming: Streaming | null = null;
  private readonly runsByReply = new Map<number, readonly Run[]>();
  private settings: ChatSettings = { ...DEFAULT_SETTINGS };
  /** The models in the picker: the open conversation's, or those a new conversation starts with. */
  private pair: ModelPair = { target: null, draft: null };
  /** The models new conversations start with (`get_model_pair`). */
  private defaultPair: ModelPair = { target: null, draft: null };
  private models: ModelView[] = [];
  private pairings: PairView[] = [];
  /** Where the target runs, in words: from the last generation's start, or a preview. */
  private placementText = "";
  /** The pair and placement `placementText` describes; a preview runs when they change. */
  private placementKey = "";
  private placementSeq = 0;
  private server: ServerStatus | null = null;
  private query = "";
  private hits: SearchHit[] = [];
  private searchTimer: number | undefined;
  private showSources = localStorage.getItem("canopy.showSources") === "true";
  private renamingId: number | null = null;
  private confirmDeleteId: number | null = null;
  private editingId: number | null = null;

  private readonly list = h("ul", { class: "conv-list", "data-testid": "conversation-list" });
  private readonly search = h("input", {
    class: "search", type: "search", placeholder: "Search messages", "aria-label": "Search messages",
    "data-testid": "search", oninput: () => this.onSearch(),
  });
  private readonly title = h("h2", { class: "chat-title", "data-testid": "chat-title" });
  private readonly pairBox = h("div", { class: "pair" });
  private readonly messages = h("div", { class: "messages", "data-testid": "messages" });
  private readonly statsBar = h("div", { class: "stats-bar", "data-testid": "stats" });
  private readonly input = h("textarea", {
    class: "composer-input", rows: 1, placeholder: "Message the model — Enter to send, Shift+Enter for a new line",
    "aria-label": "Message", "data-testid": "composer",
  });
  private readonly sendButton = h("button", { class: "primary send", type: "submit", "data-testid": "send" }, icon("send"), "Send");
  private readonly stopButton = h("button", { class: "danger stop", type: "button", "data-testid": "stop", hidden: true, onclick: () => this.stop() }, icon("stop"), "Stop");
  private readonly settingsPane = h("aside", { class: "settings-pane", hidden: true, "data-testid": "settings" });

  constructor(private readonly openLibrary: () => void) {
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        void this.send();
      }
    });
    this.input.addEventListener("input", () => this.autosize());
    this.messages.addEventListener("click", (e) => this.onMessagesClick(e));
    const composer = h("form", { class: "composer", onsubmit: (e: Event) => { e.preventDefault(); void this.send(); } },
      this.input, this.stopButton, this.sendButton);
    this.root = h("div", { class: "chat" },
      h("aside", { class: "conv-pane" },
        h("div", { class: "pane-head" },
          h("h1", {}, "Chats"),
          h("button", { class: "icon-button", type: "button", title: "New chat", "aria-label": "New chat", "data-testid": "new-chat", onclick: () => this.newChat() }, icon("plus"))),
        h("div", { class: "search-box" }, icon("search"), this.search),
        this.list),
      h("section", { class: "chat-main" },
        h("header", { class: "chat-head" }, this.title, this.pairBox,
          h("button", { class: "icon-button", type: "button", title: "Sampling settings", "aria-label": "Sampling settings", "data-testid": "toggle-settings", onclick: () => this.toggleSettings() }, icon("settings"))),
        this.messages, this.statsBar, composer),
      this.settingsPane);
  }

  async show(): Promise<void> {
    const [conversations, settings, pair, models, server] = await Promise.all([
      api.listConversations(), api.loadSettings(), api.getModelPair(),
      api.listModels().catch((e) => { showError(e); return []; }),
      api.serverStatus().catch((e) => { showError(e); return null; }),
    ]);
    this.conversations = conversations;
    this.settings = settings;
    this.models = models;
    this.server = server;
    this.defaultPair = pair;
    const gone = (ref: string | null) => ref !== null && isLibraryId(ref) && !models.some((m) => m.id === ref);
    if (gone(pair.target)) this.defaultPair = { target: null, draft: null };
    else if (gone(pair.draft)) this.defaultPair = { ...pair, draft: null };
    if (!this.defaultPair.target && models.length > 0) {
      try {
        this.defaultPair = await api.setModelPair({ target: models[0].id, draft: null });
      } catch (err) {
        showError(err);
      }
    }
    if (this.activeId !== null && !conversations.some((c) => c.id === this.activeId)) this.activeId = null;
    if (this.activeId === null && conversations.length > 0 && !this.streaming) {
      await this.open(conversations[0].id);
    } else if (!this.streaming) {
      this.pair = pairOf(this.activeConversation()) ?? { ...this.defaultPair };
      await this.loadPairings();
    }
    this.refreshPlacement();
    this.renderList();
    this.renderHeader();
    this.renderThread();
    this.renderStats();
    // An open pane keeps what is being typed into it: only an empty one is drawn here.
    if (this.settingsPane.childElementCount === 0) this.renderSettings();
  }

  // ---- conversations -------------------------------------------------------------------------

  private async reloadList(): Promise<void> {
    this.conversations = await api.listConversations();
    this.renderList();
  }

  private activeConversation(): Conversation | undefined {
    return this.conversations.find((c) => c.id === this.activeId);
  }

  private async open(id: number, leaf?: number): Promise<void> {
    this.activeId = id;
    this.editingId = null;
    const messages = await api.messages(id);
    this.tree = new MessageTree(messages);
    this.leafId = leaf !== undefined ? this.tree.latestLeaf(leaf)?.id ?? leaf : this.tree.newestLeaf()?.id;
    if (!this.streaming) {
      // The picker shows the conversation's own models.
      this.pair = pairOf(this.activeConversation()) ?? { ...this.defaultPair };
      await this.loadPairings();
      this.refreshPlacement();
    }
    this.renderList();
    this.renderHeader();
    this.renderThread();
    this.renderStats();
  }

  private newChat(): void {
    if (this.streaming) return;
    this.activeId = null;
    this.tree = new MessageTree([]);
    this.leafId = undefined;
    this.pair = { ...this.defaultPair };
    this.renderList();
    this.renderHeader();
    this.renderThread();
    this.renderStats();
    this.input.focus();
    void this.loadPairings().then(() => {
      this.renderHeader();
      this.refreshPlacement();
    });
  }

  private onSearch(): void {
    window.clearTimeout(this.searchTimer);
    this.searchTimer = window.setTimeout(async () => {
      this.query = this.search.value.trim();
      try {
        this.hits = this.query ? await api.searchMessages(this.query) : [];
      } catch (err) {
        this.hits = [];
        showError(err);
      }
      this.renderList();
    }, 180);
  }

  private renderList(): void {
    if (this.query) {
      replace(this.list, this.hits.length === 0
        ? h("li", { class: "list-empty" }, `No messages match “${this.query}”.`)
        : this.hits.map((hit) => h("li", {},
          h("button", { class: "conv-item hit", type: "button", "data-testid": "search-hit", onclick: () => this.open(hit.conversation_id, hit.message_id) },
            h("span", { class: "conv-title" }, hit.conversation_title),
            h("span", { class: "conv-sub snippet" }, ...snippetParts(hit.snippet).map((p) => (p.match ? h("mark", {}, p.text) : p.text)))))));
      return;
    }
    if (this.conversations.length === 0) {
      replace(this.list, h("li", { class: "list-empty" }, "No chats yet. Write a message to start one."));
      return;
    }
    replace(this.list, this.conversations.map((c) => this.conversationItem(c)));
  }

  private conversationItem(c: Conversation): HTMLElement {
    const active = c.id === this.activeId;
    if (this.renamingId === c.id) {
      const field = h("input", { class: "rename", value: c.title, "aria-label": "New title", "data-testid": "rename-input" });
      const save = async () => {
        const problem = validateTitle(field.value);
        if (problem) return showBanner(problem);
        try {
          await api.renameConversation(c.id, field.value.trim());
          this.renamingId = null;
          await this.reloadList();
          this.renderHeader();
        } catch (err) {
          showError(err);
        }
      };
      field.addEventListener("keydown", (e) => {
        if (e.key === "Enter") void save();
        if (e.key === "Escape") { this.renamingId = null; this.renderList(); }
      });
      queueMicrotask(() => { field.focus(); field.select(); });
      return h("li", { class: "conv-row editing" }, field,
        h("button", { class: "small primary", type: "button", onclick: save }, "Save"));
    }
    if (this.confirmDeleteId === c.id) {
      return h("li", { class: "conv-row confirm" },
        h("span", { class: "confirm-text" }, `Delete “${c.title}”?`),
        h("button", { class: "small danger", type: "button", "data-testid": "confirm-delete", onclick: () => this.remove(c.id) }, "Delete"),
        h("button", { class: "small", type: "button", onclick: () => { this.confirmDeleteId = null; this.renderList(); } }, "Keep"));
    }
    return h("li", { class: `conv-row${active ? " active" : ""}` },
      h("button", { class: "conv-item", type: "button", "data-testid": "conversation", "data-id": c.id, onclick: () => this.open(c.id) },
        h("span", { class: "conv-title" }, c.title),
        h("span", { class: "conv-sub" }, `${relativeTime(c.updated_at)} · ${c.message_count} message${c.message_count === 1 ? "" : "s"}`)),
      h("span", { class: "conv-actions" },
        h("button", { class: "icon-button small", type: "button", title: "Rename", "aria-label": "Rename", "data-testid": "rename", onclick: () => { this.renamingId = c.id; this.renderList(); } }, icon("edit")),
        h("button", { class: "icon-button small", type: "button", title: "Delete", "aria-label": "Delete", "data-testid": "delete", onclick: () => { this.confirmDeleteId = c.id; this.renderList(); } }, icon("trash"))));
  }

  private async remove(id: number): Promise<void> {
    this.confirmDeleteId = null;
    try {
      await api.deleteConversation(id);
      if (this.activeId === id) this.newChat();
      await this.reloadList();
    } catch (err) {
      showError(err);
      this.renderList();
    }
  }

  // ---- models --------------------------------------------------------------------------------

  private async loadPairings(): Promise<void> {
    this.pairings = [];
    const target = this.pair.target;
    // Drafts are judged for library models; a target given as a file path keeps its draft as stored.
    if (!target || !isLibraryId(target)) return;
    let pairings: PairView[];
    try {
      pairings = await api.pairings(target);
    } catch (err) {
      showError(err);
      return;
    }
    if (this.pair.target !== target) return; // another pair was chosen meanwhile
    this.pairings = pairings;
    const draft = this.pair.draft;
    if (draft && isLibraryId(draft) && !pairings.some((p) => p.draft_id === draft && p.compatible)) {
      this.pair = { ...this.pair, draft: null };
      await this.savePair();
    }
  }

  /** Saves the picker's pair: for the open conversation, and as the pair new conversations start with. */
  private async savePair(): Promise<void> {
    try {
      if (this.activeId !== null) {
        const updated = await api.setConversationModels(this.activeId, this.pair);
        this.conversations = this.conversations.map((c) => (c.id === updated.id ? updated : c));
      }
      this.defaultPair = await api.setModelPair(this.pair);
    } catch (err) {
      showError(err);
    }
  }

  private async changePair(next: ModelPair, reloadPairings: boolean): Promise<void> {
    this.pair = next;
    await this.savePair();
    if (reloadPairings) await this.loadPairings();
    this.renderHeader();
    this.renderStats();
    this.refreshPlacement();
  }

  /** Previews where the target will run when the pair or the placement setting changed; errors stay quiet. */
  private refreshPlacement(): void {
    const key = JSON.stringify([this.pair.target, this.pair.draft, this.settings.placement]);
    if (key === this.placementKey) return;
    this.placementKey = key;
    const seq = ++this.placementSeq;
    const show = (text: string) => {
      if (seq !== this.placementSeq) return;
      this.placementText = text;
      this.renderStats();
    };
    if (!this.pair.target) {
      show("");
      return;
    }
    api.placementPreview(this.pair, this.settings.placement).then((d) => show(d?.summary ?? ""), () => show(""));
  }

  private renderHeader(): void {
    const conv = this.activeConversation();
    this.title.textContent = conv ? conv.title : "New chat";
    if (this.models.length === 0 && !this.pair.target) {
      replace(this.pairBox, h("button", { class: "link-button", type: "button", "data-testid": "open-library", onclick: this.openLibrary }, "No models yet — import one in the Library"));
      return;
    }
    // A stored model that is not in the library (a file path) is offered as it is.
    const extra = (ref: string | null, known: boolean) => (ref && !known
      ? h("option", { value: ref, title: ref }, modelLabel(ref, this.models)) : null);
    const target = h("select", { class: "model-select", "aria-label": "Target model", "data-testid": "target-select", disabled: this.streaming !== null },
      ...this.models.map((m) => h("option", { value: m.id }, m.name)),
      extra(this.pair.target, this.models.some((m) => m.id === this.pair.target)));
    target.value = this.pair.target ?? "";
    target.addEventListener("change", () => this.changePair({ target: target.value, draft: null }, true));
    const compatible = this.pairings.filter((p) => p.compatible);
    const refused = this.pairings.filter((p) => !p.compatible);
    const draft = h("select", { class: "model-select", "aria-label": "Draft model", "data-testid": "draft-select", disabled: this.streaming !== null },
      h("option", { value: "" }, compatible.length || this.pair.draft ? "No draft (plain decoding)" : "No compatible draft"),
      ...compatible.map((p) => h("option", { value: p.draft_id, title: "same tokenizer, smaller: can draft" }, p.draft_name)),
      extra(this.pair.draft, compatible.some((p) => p.draft_id === this.pair.draft)),
      ...refused.map((p) => h("option", { value: p.draft_id, disabled: true }, `${p.draft_name} — ${p.reason}`)));
    draft.value = this.pair.draft ?? "";
    draft.addEventListener("change", () => this.changePair({ ...this.pair, draft: draft.value || null }, false));
    const why = refused.length === 0 ? null : h("details", { class: "refused", "data-testid": "refused-drafts" },
      h("summary", {}, `${refused.length} draft${refused.length === 1 ? "" : "s"} refused`),
      h("ul", {}, ...refused.map((p) => h("li", {}, h("strong", {}, p.draft_name), `: ${p.reason}`))));
    replace(this.pairBox,
      h("label", { class: "pair-field" }, h("span", {}, "Target"), target),
      h("label", { class: "pair-field" }, h("span", {}, "Draft"), draft),
      why);
  }

  // ---- thread --------------------------------------------------------------------------------

  private renderThread(): void {
    const entries = this.tree.thread(this.leafId);
    if (entries.length === 0 && !this.streaming) {
      replace(this.messages, this.emptyState());
      return;
    }
    const nodes: HTMLElement[] = entries.map((e) => this.messageView(e));
    if (this.streaming) nodes.push(this.streamingView(this.streaming));
    replace(this.messages, nodes);
    this.scrollToEnd();
  }

  private emptyState(): HTMLElement {
    const hasModels = this.models.length > 0;
    return h("div", { class: "empty-state", "data-testid": "chat-empty" },
      h("img", { src: "./icon.png", alt: "", class: "empty-logo" }),
      h("h3", {}, hasModels ? "Start a conversation" : "Welcome to Canopy"),
      h("p", {}, hasModels
        ? "Pick a target model and, if one fits, a draft model above. Canopy drafts a tree of tokens with the small model and verifies it in one pass of the big one."
        : "Canopy runs models larger than your GPU by drafting with a small model and verifying with the big one."),
      hasModels ? null : h("ol", { class: "steps" },
        h("li", {}, "Import a .gguf model in the Library."),
        h("li", {}, "Optionally run the hardware profile so Canopy can size its speculation tree."),
        h("li", {}, "Come back here and write a message.")),
      hasModels ? null : h("button", { class: "primary", type: "button", onclick: this.openLibrary }, "Open the Library"));
  }

  private messageView(entry: ThreadEntry): HTMLElement {
    const m = entry.message;
    const runs = this.runsByReply.get(m.id);
    const body = h("div", { class: "msg-body" });
    if (this.editingId === m.id) {
      const area = h("textarea", { class: "edit-input", "aria-label": "Edit message", "data-testid": "edit-input" });
      area.value = m.content;
      replace(body, area, h("div", { class: "edit-actions" },
        h("button", { class: "small primary", type: "button", "data-testid": "edit-send", onclick: () => this.resend(m, area.value) }, "Send as new branch"),
        h("button", { class: "small", type: "button", onclick: () => { this.editingId = null; this.renderThread(); } }, "Cancel")));
      queueMicrotask(() => area.focus());
    } else if (m.role === "assistant" && runs && this.showSources) {
      replace(body, this.runsView(m.content, runs));
    } else if (m.role === "assistant") {
      body.classList.add("markdown");
      body.innerHTML = renderMarkdown(m.content); // sanitised by renderMarkdown
    } else {
      body.classList.add("plain");
      body.textContent = m.content;
    }
    const branch = entry.siblings.length > 1
      ? h("span", { class: "branch", "data-testid": "branch" },
        h("button", { class: "icon-button tiny", type: "button", "aria-label": "Previous branch", disabled: entry.index === 0, onclick: () => this.switchBranch(entry, -1) }, "‹"),
        `${entry.index + 1}/${entry.siblings.length}`,
        h("button", { class: "icon-button tiny", type: "button", "aria-label": "Next branch", disabled: entry.index === entry.siblings.length - 1, onclick: () => this.switchBranch(entry, 1) }, "›"))
      : null;
    const busy = this.streaming !== null;
    const actions = h("div", { class: "msg-actions" },
      h("button", { class: "icon-button small", type: "button", title: "Copy", "aria-label": "Copy", onclick: async () => { if (await copyText(m.content)) showBanner("Copied to the clipboard.", "info"); } }, icon("copy")),
      m.role === "user" ? h("button", { class: "icon-button small", type: "button", title: "Edit and resend", "aria-label": "Edit and resend", "data-testid": "edit", disabled: busy, onclick: () => { this.editingId = m.id; this.renderThread(); } }, icon("edit")) : null,
      m.role === "assistant" && m.parent_id !== null ? h("button", { class: "icon-button small", type: "button", title: "Regenerate", "aria-label": "Regenerate", "data-testid": "regenerate", disabled: busy, onclick: () => this.regenerate(m) }, icon("retry")) : null);
    return h("article", { class: `msg role-${m.role}`, "data-id": m.id, "data-testid": `message-${m.role}` },
      h("div", { class: "msg-head" },
        h("span", { class: "msg-role" }, m.role === "user" ? "You" : m.role === "assistant" ? "Canopy" : "System"),
        branch,
        m.status === "interrupted" ? h("span", { class: "badge warn" }, "interrupted") : null,
        m.status === "streaming" ? h("span", { class: "badge" }, "unfinished") : null,
        actions),
      body,
      m.role === "assistant" && m.stats ? this.statsLine(m) : null);
  }

  private statsLine(m: Message): HTMLElement {
    const s = m.stats;
    if (!s) return h("div");
    const share = provenanceShare(s.provenance);
    return h("div", { class: "msg-stats" },
      `${s.tokens} tokens · ${formatRate(s.tokens_per_second)} · plan ${s.plan || "none"}`,
      s.steps > 0 && s.plan && s.plan !== "none" ? ` · ${s.mean_accepted_per_step.toFixed(2)} accepted/step` : "",
      share.draft > 0 ? ` · ${Math.round(share.share * 100)}% drafted` : "",
      share.lookup > 0 ? ` · ${Math.round(share.lookupShare * 100)}% from the conversation` : "");
  }

  /** The reply rendered as Markdown, exactly as without colouring, with each run's text in its `prov-*` span. */
  private runsView(source: string, runs: readonly Run[]): HTMLElement {
    const view = h("div", { class: "runs markdown" });
    view.innerHTML = renderMarkdown(source); // sanitised by renderMarkdown
    colourRendered(view, source, runs);
    return view;
  }

  private streamingView(s: Streaming): HTMLElement {
    return h("article", { class: "msg role-assistant streaming", "data-testid": "message-streaming" },
      h("div", { class: "msg-head" }, h("span", { class: "msg-role" }, "Canopy"), h("span", { class: "badge live" }, "generating…")),
      s.body);
  }

  private paintStream(): void {
    const s = this.streaming;
    if (!s || s.scheduled) return;
    s.scheduled = true;
    requestAnimationFrame(() => {
      s.scheduled = false;
      replace(s.body, s.acc.text.length === 0 ? h("span", { class: "thinking" }, "Loading the model…") : this.runsView(s.acc.text, s.acc.runs));
      this.renderStats();
      this.scrollToEnd();
    });
  }

  private scrollToEnd(): void {
    this.messages.scrollTop = this.messages.scrollHeight;
  }

  private switchBranch(entry: ThreadEntry, step: number): void {
    const next = this.tree.switchBranch(entry, step);
    if (!next) return;
    this.leafId = next.id;
    this.renderThread();
    this.renderStats();
  }

  private onMessagesClick(e: Event): void {
    const button = (e.target as Element).closest(".copy-code");
    if (!button) return;
    const code = button.closest(".code-block")?.querySelector("code")?.textContent ?? "";
    void copyText(code).then((ok) => { if (ok) showBanner("Code copied to the clipboard.", "info"); });
  }

  // ---- sending -------------------------------------------------------------------------------

  private async send(): Promise<void> {
    const text = this.input.value;
    if (!text.trim() || this.streaming) return;
    if (!this.pair.target) {
      showBanner("Choose a model first: import one in the Library.", "error", { label: "Open Library", run: this.openLibrary });
      return;
    }
    try {
      if (this.activeId === null) {
        const title = text.trim().split("\n")[0].slice(0, 60) || "New chat";
        const conv = await api.createConversation(title, this.pair.target, this.pair.draft);
        this.activeId = conv.id;
        this.tree = new MessageTree([]);
      }
      const leaf = this.leafId !== undefined ? this.tree.get(this.leafId) : undefined;
      const message = await api.addUserMessage(this.activeId, leaf ? leaf.id : null, text);
      this.input.value = "";
      this.autosize();
      await this.reloadThread(message.id);
      await this.reloadList();
      await this.generate(message.id);
    } catch (err) {
      showError(err);
    }
  }

  private async resend(original: Message, text: string): Promise<void> {
    if (!text.trim() || this.activeId === null) return;
    this.editingId = null;
    try {
      const message = await api.addUserMessage(this.activeId, original.parent_id, text);
      await this.reloadThread(message.id);
      await this.generate(message.id);
    } catch (err) {
      showError(err);
    }
  }

  private async regenerate(reply: Message): Promise<void> {
    if (reply.parent_id === null) return;
    this.leafId = reply.parent_id;
    this.renderThread();
    await this.generate(reply.parent_id);
  }

  private async reloadThread(leaf: number): Promise<void> {
    if (this.activeId === null) return;
    this.tree = new MessageTree(await api.messages(this.activeId));
    this.leafId = leaf;
    this.renderThread();
  }

  private async generate(parentId: number): Promise<void> {
    if (this.activeId === null || this.streaming) return;
    const conversation = this.activeId;
    const s: Streaming = {
      acc: new StreamAccumulator(), parentId, replyId: null, plan: this.pair.draft ? this.settings.plan : "none",
      body: h("div", { class: "msg-body" }, h("span", { class: "thinking" }, "Loading the model…")), scheduled: false,
    };
    this.streaming = s;
    this.setBusy(true);
    this.renderThread();
    this.renderStats();
    const onEvent = (e: ChatEvent) => {
      if (e.type === "started") {
        s.plan = e.plan;
        // The decision replaces any preview for the same pair and placement.
        this.placementSeq += 1;
        this.placementKey = JSON.stringify([this.pair.target, this.pair.draft, this.settings.placement]);
        this.placementText = e.placement.summary;
        this.renderStats();
      } else if (e.type === "reply") {
        s.replyId = e.reply_id;
      } else if (e.type === "token") {
        s.acc.push(e.text, e.sources);
        this.paintStream();
      } else if (e.type === "progress" && s.acc.text.length === 0) {
        const label = e.phase.charAt(0).toUpperCase() + e.phase.slice(1);
        replace(s.body, h("span", { class: "thinking" }, `${label}…`), h("progress", { class: "phase-progress", max: 1, value: e.fraction }));
      }
    };
    let leaf: number | undefined = parentId;
    try {
      const reply = await api.generate(conversation, parentId, this.settings, onEvent);
      this.runsByReply.set(reply.id, [...s.acc.runs]);
      leaf = reply.id;
      if (reply.status === "interrupted") showBanner("Stopped. The reply so far is saved.", "info");
    } catch (err) {
      if (s.replyId !== null) {
        this.runsByReply.set(s.replyId, [...s.acc.runs]);
        leaf = s.replyId;
      }
      const e = err as CommandError;
      if (e.kind === "crashed") {
        showError(e, { label: "Restart engine", run: () => this.restartWorker() });
      } else {
        showError(e);
      }
    } finally {
      this.streaming = null;
      this.setBusy(false);
    }
    if (this.activeId === conversation) {
      try {
        await this.reloadThread(leaf);
      } catch (err) {
        showError(err);
      }
    }
    await this.reloadList().catch(showError);
    this.renderStats();
  }

  private async restartWorker(): Promise<void> {
    try {
      await api.restartWorker();
      showBanner("The engine was restarted. Send or regenerate to continue.", "info");
    } catch (err) {
      showError(err);
    }
  }

  private async stop(): Promise<void> {
    try {
      await api.stopGeneration();
    } catch (err) {
      showError(err);
    }
  }

  private setBusy(busy: boolean): void {
    this.sendButton.hidden = busy;
    this.stopButton.hidden = !busy;
    this.renderHeader();
  }

  private autosize(): void {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 220)}px`;
  }

  // ---- statistics and settings ---------------------------------------------------------------

  private renderStats(): void {
    const s = this.streaming;
    const items: [string, string, string][] = [];
    if (s) {
      const live = s.acc.stats();
      items.push(["Speed", formatRate(live.tokensPerSecond), "stat-speed"]);
      items.push(["Accepted / step", live.targetTokens && s.plan !== "none" ? live.acceptedPerStep.toFixed(2) : "—", "stat-accepted"]);
      items.push(["Tree budget", planBudget(s.plan), "stat-budget"]);
      items.push(["Tokens", String(live.tokens), "stat-tokens"]);
    } else {
      const last = this.tree.thread(this.leafId).map((e) => e.message).reverse().find((m) => m.stats);
      const st = last?.stats;
      items.push(["Speed", st ? formatRate(st.tokens_per_second) : "—", "stat-speed"]);
      const speculated = st && st.steps > 0 && st.plan && st.plan !== "none";
      items.push(["Accepted / step", speculated ? st.mean_accepted_per_step.toFixed(2) : "—", "stat-accepted"]);
      items.push(["Plan", st?.plan || (this.pair.draft ? this.settings.plan : "none"), "stat-budget"]);
      items.push(["Tokens", st ? String(st.tokens) : "—", "stat-tokens"]);
    }
    const toggle = h("input", { type: "checkbox", "data-testid": "show-sources" });
    toggle.checked = this.showSources;
    toggle.addEventListener("change", () => {
      this.showSources = toggle.checked;
      localStorage.setItem("canopy.showSources", String(this.showSources));
      this.renderThread();
    });
    replace(this.statsBar,
      ...items.map(([label, value, cls]) => h("span", { class: `stat ${cls}` }, h("span", { class: "stat-label" }, label), h("span", { class: "stat-value" }, value))),
      h("span", { class: "stat stat-placement", title: this.placementText, hidden: !this.placementText },
        h("span", { class: "stat-label" }, "Placement"),
        h("span", { class: "stat-value placement-text", "data-testid": "status-placement" }, this.placementText)),
      h("span", { class: "legend" },
        h("span", { class: "swatch prov-draft" }), "accepted draft",
        h("span", { class: "swatch prov-lookup" }), "from the conversation",
        h("span", { class: "swatch prov-target" }), "target",
        h("label", { class: "legend-toggle" }, toggle, "colour replies")));
  }

  private toggleSettings(): void {
    this.settingsPane.hidden = !this.settingsPane.hidden;
    this.renderSettings();
  }

  private renderSettings(): void {
    if (this.settingsPane.hidden) return;
    replace(this.settingsPane, ...this.chatSettingsForm(), ...this.serverForm());
  }

  private chatSettingsForm(): HTMLElement[] {
    type Key = keyof ChatSettings;
    const draft: Record<Key, string> = {
      temperature: String(this.settings.temperature), top_k: String(this.settings.top_k), top_p: String(this.settings.top_p),
      min_p: String(this.settings.min_p), repeat_penalty: String(this.settings.repeat_penalty),
      repeat_last_n: String(this.settings.repeat_last_n), frequency_penalty: String(this.settings.frequency_penalty),
      presence_penalty: String(this.settings.presence_penalty),
      seed: String(this.settings.seed), max_tokens: String(this.settings.max_tokens), plan: this.settings.plan,
      placement: this.settings.placement, context: this.settings.context === null ? "" : String(this.settings.context),
      rpc: this.settings.rpc.join(", "),
    };
    const errors = new Map<Key, HTMLElement>();
    const save = h("button", { class: "primary", type: "button", "data-testid": "save-settings" }, "Save");
    // Typed text becomes a plan or a placement only once validateSettings accepts it.
    const current = (): ChatSettings => ({
      temperature: parseNumber(draft.temperature), top_k: parseNumber(draft.top_k), top_p: parseNumber(draft.top_p),
      min_p: parseNumber(draft.min_p), repeat_penalty: parseNumber(draft.repeat_penalty),
      repeat_last_n: parseNumber(draft.repeat_last_n), frequency_penalty: parseNumber(draft.frequency_penalty),
      presence_penalty: parseNumber(draft.presence_penalty),
      seed: parseNumber(draft.seed), max_tokens: parseNumber(draft.max_tokens), plan: draft.plan.trim() as Plan,
      placement: draft.placement.trim() as Placement, context: draft.context.trim() === "" ? null : parseNumber(draft.context),
      rpc: parseRpc(draft.rpc),
    });
    const check = () => {
      const e = validateSettings(current());
      for (const [key, el] of errors) el.textContent = e[key] ?? "";
      save.disabled = Object.keys(e).length > 0;
    };
    const wrap = (key: Key, label: string, hint: string, control: HTMLElement) => {
      const err = h("span", { class: "field-error" });
      errors.set(key, err);
      return h("label", { class: "field" }, h("span", { class: "field-label" }, label), control, h("span", { class: "field-hint" }, hint), err);
    };
    const field = (key: Key, label: string, hint: string, placeholder?: string) => {
      const input = h("input", { class: "field-input", value: draft[key], placeholder, "data-testid": `setting-${key}`, "aria-label": label });
      input.addEventListener("input", () => { draft[key] = input.value; check(); });
      return wrap(key, label, hint, input);
    };
    const placement = placementPicker(this.settings.placement, "setting-placement", (text) => { draft.placement = text; check(); });
    save.addEventListener("click", async () => {
      try {
        const next = current();
        await api.saveSettings(next);
        this.settings = next;
        showBanner("Settings saved.", "info");
        this.renderStats();
        this.refreshPlacement();
      } catch (err) {
        showError(err);
      }
    });
    const form = [
      h("h3", {}, "Sampling"),
      field("temperature", "Temperature", "0 = greedy (identical to the target's own greedy output)"),
      field("top_k", "Top-k", "0 turns it off"),
      field("top_p", "Top-p", "1 turns it off"),
      field("min_p", "Min-p", "drop tokens less likely than this share of the most likely one; 0 turns it off"),
      field("repeat_penalty", "Repetition penalty", `above 1 discourages repeating the last ${this.settings.repeat_last_n} tokens; 1 turns it off`),
      field("seed", "Seed", "same seed, same reply"),
      field("max_tokens", "Max tokens", "per reply, up to 32768"),
      field("context", "Context", "tokens; empty = the model's own, at most 4096", "model's own"),
      field("rpc", "RPC helpers", "host:port, comma-separated: machines running `canopy rpc-server` that hold part of the target", "none"),
      h("h3", {}, "Speculation"),
      field("plan", "Plan", "auto (from the profile), none, chain:K (K ≤ 255) or tree:N (N ≤ 1024)"),
      wrap("placement", "Placement", "where the target's weights live; automatic decides from the GPU's memory", placement.root),
      h("div", { class: "settings-actions" }, save,
        h("button", { type: "button", onclick: () => { this.settings = { ...DEFAULT_SETTINGS }; this.renderSettings(); this.refreshPlacement(); } }, "Defaults")),
    ];
    check();
    return form;
  }

  /** The local OpenAI-compatible server: on or off, its port and key, and where it listens. */
  private serverForm(): HTMLElement[] {
    const status = this.server;
    const saved: ServerSettings = status?.settings ?? { enabled: false, port: 8080, api_key: null };
    const enabled = h("input", { type: "checkbox", "data-testid": "server-enabled", "aria-label": "Run the local server" });
    enabled.checked = saved.enabled;
    const port = h("input", { class: "field-input", inputmode: "numeric", value: String(saved.port), "aria-label": "Port", "data-testid": "server-port" });
    const key = h("input", {
      class: "field-input", type: "password", value: saved.api_key ?? "", placeholder: "none: any local client may connect",
      autocomplete: "off", "aria-label": "API key", "data-testid": "server-key",
    });
    const portError = h("span", { class: "field-error" });
    const keyError = h("span", { class: "field-error" });
    const apply = h("button", { class: "primary", type: "button", "data-testid": "server-apply" }, "Apply");
    const current = (): ServerSettings => ({
      enabled: enabled.checked, port: parseNumber(port.value), api_key: key.value === "" ? null : key.value,
    });
    const check = () => {
      const e = validateServer(current());
      portError.textContent = e.port ?? "";
      keyError.textContent = e.api_key ?? "";
      apply.disabled = Object.keys(e).length > 0;
    };
    for (const input of [enabled, port, key]) input.addEventListener("input", check);
    enabled.addEventListener("change", check);
    apply.addEventListener("click", async () => {
      apply.disabled = true;
      try {
        this.server = await api.setServer(current());
        showBanner(this.server.address ? `Local server on at ${this.server.address}.` : "Local server off.", "info");
      } catch (err) {
        showError(err);
        this.server = await api.serverStatus().catch(() => this.server);
      }
      this.renderSettings();
    });
    check();
    const address = status?.address
      ? `${status.address}${status.model ? ` · model ${status.model}` : ""}`
      : "Not running";
    return [
      h("h3", {}, "Local server"),
      h("p", { class: "field-hint" }, "An OpenAI-compatible API on this computer that answers with the chat's models, plan and placement."),
      h("label", { class: "field toggle-field" }, enabled, h("span", { class: "field-label" }, "Serve on this computer")),
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Port"), port, h("span", { class: "field-hint" }, "1024 to 65535, on 127.0.0.1 only"), portError),
      h("label", { class: "field" }, h("span", { class: "field-label" }, "API key"), key, h("span", { class: "field-hint" }, "optional; clients send it as a Bearer token"), keyError),
      h("div", { class: `server-address${status?.address ? " running" : ""}`, "data-testid": "server-address" }, address),
      h("div", { class: "settings-actions" }, apply),
    ];
  }
}
