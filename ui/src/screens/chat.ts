// The chat screen: conversations, the model pair, the thread with branches, streaming and statistics.

import { api } from "../api";
import { showBanner, showError } from "../banner";
import { copyText } from "../lib/clipboard";
import { h, icon, replace } from "../lib/dom";
import { formatRate, relativeTime } from "../lib/format";
import { renderMarkdown } from "../lib/markdown";
import { colourRendered } from "../lib/provenance";
import { snippetParts } from "../lib/snippet";
import { StreamAccumulator, provenanceShare, type Run } from "../lib/stream";
import { MessageTree, type ThreadEntry } from "../lib/thread";
import { DEFAULT_SETTINGS, parseNumber, validateSettings, validateTitle } from "../lib/validate";
import type {
  ChatEvent, CommandError, Conversation, GenerateSettings, Message, ModelPair, ModelView, Pairing, SearchHit,
} from "../types";

interface Streaming {
  acc: StreamAccumulator;
  parentId: number;
  replyId: number | null;
  plan: string;
  budget: number;
  body: HTMLElement;
  scheduled: boolean;
}

export class ChatScreen {
  readonly root: HTMLElement;
  private conversations: Conversation[] = [];
  private activeId: number | null = null;
  private tree = new MessageTree([]);
  private leafId: number | undefined;
  private streaming: Streaming | null = null;
  private readonly runsByReply = new Map<number, readonly Run[]>();
  private settings: GenerateSettings = { ...DEFAULT_SETTINGS };
  private pair: ModelPair = { target: null, draft: null };
  private models: ModelView[] = [];
  private pairings: Pairing[] = [];
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
    const [conversations, settings, pair, models] = await Promise.all([
      api.listConversations(), api.loadSettings(), api.getModelPair(), api.listModels().catch((e) => { showError(e); return []; }),
    ]);
    this.conversations = conversations;
    this.settings = settings;
    this.models = models;
    this.pair = pair;
    if (this.pair.target && !models.some((m) => m.id === this.pair.target)) this.pair = { target: null, draft: null };
    if (!this.pair.target && models.length > 0) {
      this.pair = { target: models[0].id, draft: null };
      await this.savePair();
    }
    await this.loadPairings();
    if (this.activeId !== null && !conversations.some((c) => c.id === this.activeId)) this.activeId = null;
    if (this.activeId === null && conversations.length > 0 && !this.streaming) await this.open(conversations[0].id);
    this.renderList();
    this.renderHeader();
    this.renderThread();
    this.renderStats();
    this.renderSettings();
  }

  // ---- conversations -------------------------------------------------------------------------

  private async reloadList(): Promise<void> {
    this.conversations = await api.listConversations();
    this.renderList();
  }

  private async open(id: number, leaf?: number): Promise<void> {
    this.activeId = id;
    this.editingId = null;
    const messages = await api.messages(id);
    this.tree = new MessageTree(messages);
    this.leafId = leaf !== undefined ? this.tree.latestLeaf(leaf)?.id ?? leaf : this.tree.newestLeaf()?.id;
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
    this.renderList();
    this.renderHeader();
    this.renderThread();
    this.input.focus();
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
    if (!this.pair.target) return;
    try {
      this.pairings = await api.pairings(this.pair.target);
    } catch (err) {
      showError(err);
    }
    if (this.pair.draft && !this.pairings.some((p) => p.draft_id === this.pair.draft && p.compatible)) {
      this.pair.draft = null;
      await this.savePair();
    }
  }

  private async savePair(): Promise<void> {
    try {
      this.pair = await api.setModelPair(this.pair);
    } catch (err) {
      showError(err);
    }
  }

  private renderHeader(): void {
    const conv = this.conversations.find((c) => c.id === this.activeId);
    this.title.textContent = conv ? conv.title : "New chat";
    if (this.models.length === 0) {
      replace(this.pairBox, h("button", { class: "link-button", type: "button", "data-testid": "open-library", onclick: this.openLibrary }, "No models yet — import one in the Library"));
      return;
    }
    const target = h("select", { class: "model-select", "aria-label": "Target model", "data-testid": "target-select", disabled: this.streaming !== null },
      ...this.models.map((m) => h("option", { value: m.id }, m.name)));
    target.value = this.pair.target ?? "";
    target.addEventListener("change", async () => {
      this.pair = { target: target.value, draft: null };
      await this.savePair();
      await this.loadPairings();
      this.renderHeader();
    });
    const compatible = this.pairings.filter((p) => p.compatible);
    const refused = this.pairings.filter((p) => !p.compatible);
    const draft = h("select", { class: "model-select", "aria-label": "Draft model", "data-testid": "draft-select", disabled: this.streaming !== null },
      h("option", { value: "" }, compatible.length ? "No draft (plain decoding)" : "No compatible draft"),
      ...compatible.map((p) => h("option", { value: p.draft_id }, p.draft_name)),
      ...refused.map((p) => h("option", { value: p.draft_id, disabled: true }, `${p.draft_name} — ${p.reason}`)));
    draft.value = this.pair.draft ?? "";
    draft.addEventListener("change", async () => {
      this.pair = { ...this.pair, draft: draft.value || null };
      await this.savePair();
      this.renderStats();
    });
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
      share.draft > 0 ? ` · ${Math.round(share.share * 100)}% drafted` : "");
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
      acc: new StreamAccumulator(), parentId, replyId: null, plan: this.settings.plan, budget: 0,
      body: h("div", { class: "msg-body" }, h("span", { class: "thinking" }, "Loading the model…")), scheduled: false,
    };
    this.streaming = s;
    this.setBusy(true);
    this.renderThread();
    this.renderStats();
    const onEvent = (e: ChatEvent) => {
      if (e.type === "started") {
        s.replyId = e.reply_id;
        s.plan = e.plan;
        s.budget = e.budget;
        this.renderStats();
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
      items.push(["Tree budget", s.budget > 0 ? String(s.budget) : s.plan === "auto" ? "auto" : "—", "stat-budget"]);
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
      h("span", { class: "legend" },
        h("span", { class: "swatch prov-draft" }), "accepted draft",
        h("span", { class: "swatch prov-target" }), "target",
        h("label", { class: "legend-toggle" }, toggle, "colour replies")));
  }

  private toggleSettings(): void {
    this.settingsPane.hidden = !this.settingsPane.hidden;
    this.renderSettings();
  }

  private renderSettings(): void {
    if (this.settingsPane.hidden) return;
    const draft: Record<keyof GenerateSettings, string> = {
      temperature: String(this.settings.temperature), top_k: String(this.settings.top_k), top_p: String(this.settings.top_p),
      seed: String(this.settings.seed), max_tokens: String(this.settings.max_tokens), plan: this.settings.plan,
    };
    const errors = new Map<keyof GenerateSettings, HTMLElement>();
    const save = h("button", { class: "primary", type: "button", "data-testid": "save-settings" }, "Save");
    const current = (): GenerateSettings => ({
      temperature: parseNumber(draft.temperature), top_k: parseNumber(draft.top_k), top_p: parseNumber(draft.top_p),
      seed: parseNumber(draft.seed), max_tokens: parseNumber(draft.max_tokens), plan: draft.plan.trim(),
    });
    const check = () => {
      const e = validateSettings(current());
      for (const [key, el] of errors) el.textContent = e[key] ?? "";
      save.disabled = Object.keys(e).length > 0;
    };
    const field = (key: keyof GenerateSettings, label: string, hint: string) => {
      const input = h("input", { class: "field-input", value: draft[key], "data-testid": `setting-${key}`, "aria-label": label });
      input.addEventListener("input", () => { draft[key] = input.value; check(); });
      const err = h("span", { class: "field-error" });
      errors.set(key, err);
      return h("label", { class: "field" }, h("span", { class: "field-label" }, label), input, h("span", { class: "field-hint" }, hint), err);
    };
    save.addEventListener("click", async () => {
      try {
        const next = current();
        await api.saveSettings(next);
        this.settings = next;
        showBanner("Settings saved.", "info");
        this.renderStats();
      } catch (err) {
        showError(err);
      }
    });
    replace(this.settingsPane,
      h("h3", {}, "Sampling"),
      field("temperature", "Temperature", "0 = greedy (identical to the target's own greedy output)"),
      field("top_k", "Top-k", "0 turns it off"),
      field("top_p", "Top-p", "1 turns it off"),
      field("seed", "Seed", "same seed, same reply"),
      field("max_tokens", "Max tokens", "per reply"),
      h("h3", {}, "Speculation"),
      field("plan", "Plan", "auto (from the profile), none, chain:K or tree:N"),
      h("div", { class: "settings-actions" }, save,
        h("button", { type: "button", onclick: () => { this.settings = { ...DEFAULT_SETTINGS }; this.renderSettings(); } }, "Defaults")));
    check();
  }
}
