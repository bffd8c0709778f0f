// The library's hub panel: search the hub for GGUF repositories, list a repository's models by
// quantization with their fit on this machine, offer the drafts that pair with a target, and keep
// the access token for gated repositories (saved by the app, never shown back).

import { api } from "../api";
import { showBanner, showError } from "../banner";
import { h, replace } from "../lib/dom";
import { formatBytes } from "../lib/format";
import { groupByQuant, hubRepoLabel } from "../lib/hub";
import { fitBadge } from "../lib/models";
import type { HubDraftView, HubFileView, HubRepoView, HubTokenStatus } from "../types";

/** Downloads `sources` one after the other into the library (the library screen's progress bar). */
export type Downloader = (sources: { source: string; name: string }[]) => Promise<void>;

export class HubPanel {
  readonly root: HTMLElement;
  private repo: string | null = null;
  private files: HubFileView[] = [];
  private chosen: HubFileView | null = null;
  private drafts: HubDraftView[] = [];
  private busy = false;

  private readonly query = h("input", {
    class: "field-input grow", placeholder: "Search the hub, e.g. qwen2.5 coder gguf", "aria-label": "Search the hub", "data-testid": "hub-query",
  });
  private readonly results = h("div", { class: "hub-results", "data-testid": "hub-results" });
  private readonly filesBox = h("div", { class: "hub-files", "data-testid": "hub-files" });
  private readonly tokenInput = h("input", {
    class: "field-input grow", type: "password", autocomplete: "off", placeholder: "hf_…", "aria-label": "Hub access token", "data-testid": "hub-token",
  });
  private readonly tokenRow = h("div", { class: "hub-token" });

  constructor(private readonly download: Downloader) {
    this.query.addEventListener("keydown", (e) => { if (e.key === "Enter") void this.search(); });
    this.root = h("div", { class: "card hub", "data-testid": "hub" },
      h("h3", {}, "Hugging Face hub"),
      h("p", { class: "muted" }, "GGUF models verified against the sha256 the hub lists; split models arrive as one."),
      h("div", { class: "row" }, this.query,
        h("button", { class: "primary", type: "button", "data-testid": "hub-search", onclick: () => this.search() }, "Search")),
      this.results, this.filesBox, this.tokenRow);
  }

  async show(): Promise<void> {
    try {
      this.renderToken(await api.hubTokenStatus());
    } catch (err) {
      showError(err);
    }
  }

  /** Marks files already in the library after a download. */
  async refresh(): Promise<void> {
    if (this.repo) await this.openRepo(this.repo, false);
  }

  private async search(): Promise<void> {
    const query = this.query.value.trim();
    if (!query) return showBanner("Type a few words of a model's name to search the hub.");
    replace(this.results, h("p", { class: "muted" }, "Searching…"));
    try {
      this.renderResults(await api.hubSearch(query), query);
    } catch (err) {
      replace(this.results);
      showError(err);
    }
  }

  private renderResults(found: HubRepoView[], query: string): void {
    if (found.length === 0) {
      replace(this.results, h("p", { class: "muted" }, `No GGUF repositories match “${query}”.`));
      return;
    }
    replace(this.results, ...found.map((r) => h("button", {
      class: `hub-repo${r.id === this.repo ? " selected" : ""}`, type: "button", "data-testid": "hub-repo", "data-id": r.id,
      onclick: () => this.openRepo(r.id, true),
    }, h("span", { class: "hub-repo-name" }, r.id), h("span", { class: "muted" }, hubRepoLabel(r)))));
  }

  private async openRepo(repo: string, fresh: boolean): Promise<void> {
    this.repo = repo;
    for (const b of this.results.querySelectorAll<HTMLElement>(".hub-repo")) b.classList.toggle("selected", b.dataset.id === repo);
    if (fresh) {
      this.chosen = null;
      this.drafts = [];
      replace(this.filesBox, h("p", { class: "muted" }, `Listing ${repo}…`));
    }
    try {
      this.files = await api.hubFiles(repo, null);
      if (this.chosen) this.chosen = this.files.find((f) => f.source === this.chosen?.source) ?? null;
      if (this.chosen) this.drafts = await api.hubDrafts(this.chosen.source);
    } catch (err) {
      this.files = [];
      showError(err);
    }
    this.renderFiles();
  }

  private renderFiles(): void {
    if (!this.repo) return replace(this.filesBox);
    if (this.files.length === 0) {
      replace(this.filesBox, h("p", { class: "muted" }, `${this.repo} has no GGUF files.`));
      return;
    }
    const groups = groupByQuant(this.files).map(([quant, files]) => h("div", { class: "hub-group", "data-testid": "hub-group", "data-quant": quant },
      h("div", { class: "hub-quant" }, quant),
      ...files.map((f) => this.fileRow(f))));
    replace(this.filesBox, h("div", { class: "hub-repo-head" }, h("strong", {}, this.repo)), ...groups, this.draftsBox());
  }

  private fileRow(f: HubFileView): HTMLElement {
    const badge = fitBadge(f.fit);
    const unavailable = f.fit === null;
    return h("div", { class: `hub-file${f.source === this.chosen?.source ? " selected" : ""}`, "data-testid": "hub-file", "data-source": f.source },
      h("button", { class: "hub-file-name", type: "button", title: "Show the drafts that pair with it", onclick: () => this.choose(f) }, f.name),
      h("span", {}, formatBytes(f.size)),
      h("span", { class: "muted" }, f.parts > 1 ? `${f.parts} parts` : ""),
      h("span", { class: `fit ${unavailable ? "fit-too-big" : badge.cls}`, title: f.fit_reason, "data-testid": "hub-fit" },
        unavailable ? "Incomplete" : badge.label),
      f.in_library
        ? h("span", { class: "muted", "data-testid": "hub-in-library" }, "In library")
        : h("button", {
          class: "small", type: "button", "data-testid": "hub-download", disabled: unavailable || this.busy,
          onclick: () => this.fetch([{ source: f.source, name: f.name }]),
        }, "Download"));
  }

  private async choose(f: HubFileView): Promise<void> {
    this.chosen = f;
    try {
      this.drafts = await api.hubDrafts(f.source);
    } catch (err) {
      this.drafts = [];
      showError(err);
    }
    this.renderFiles();
  }

  private draftsBox(): HTMLElement | null {
    const target = this.chosen;
    if (!target) return h("p", { class: "muted hub-hint" }, "Pick a file to see the drafts that pair with it.");
    if (this.drafts.length === 0) {
      return h("p", { class: "muted hub-hint", "data-testid": "hub-drafts" },
        `No catalog draft shares ${target.name}'s tokenizer family; a draft already in the library is checked in its details.`);
    }
    return h("div", { class: "hub-drafts", "data-testid": "hub-drafts" },
      h("div", { class: "hub-quant" }, `Drafts for ${target.name}`),
      ...this.drafts.map((d) => h("div", { class: "hub-file", "data-testid": "hub-draft", "data-source": d.source },
        h("span", { class: "hub-file-name", title: d.name }, d.name),
        h("span", {}, d.approx_size ? `≈ ${formatBytes(d.approx_size)}` : ""),
        h("span", { class: "muted" }, d.note),
        h("span", {}, d.in_library ? "draft in library" : ""),
        h("button", {
          class: "small primary", type: "button", "data-testid": "hub-download-pair", disabled: this.busy || target.fit === null,
          onclick: () => this.fetch([
            ...(target.in_library ? [] : [{ source: target.source, name: target.name }]),
            ...(d.in_library ? [] : [{ source: d.source, name: d.name }]),
          ]),
        }, target.in_library && d.in_library ? "Both in library" : "Download pair"))));
  }

  private async fetch(sources: { source: string; name: string }[]): Promise<void> {
    if (this.busy || sources.length === 0) return;
    this.busy = true;
    this.renderFiles();
    try {
      await this.download(sources);
    } finally {
      this.busy = false;
      await this.refresh();
    }
  }

  private renderToken(status: HubTokenStatus): void {
    const text = status.saved
      ? "A token is saved for gated repositories (readable by you only)."
      : status.from_environment
        ? "Gated repositories use the token in HF_TOKEN."
        : "Gated repositories (Llama, for one) need an access token from your hub account.";
    this.tokenInput.value = "";
    replace(this.tokenRow,
      h("p", { class: "muted", "data-testid": "hub-token-status" }, text),
      h("div", { class: "row" }, this.tokenInput,
        h("button", { class: "small", type: "button", "data-testid": "hub-token-save", onclick: () => this.saveToken(this.tokenInput.value) }, status.saved ? "Replace" : "Save token"),
        status.saved ? h("button", { class: "small", type: "button", "data-testid": "hub-token-remove", onclick: () => this.saveToken(null) }, "Remove") : null));
  }

  private async saveToken(token: string | null): Promise<void> {
    if (token !== null && !token.trim()) return showBanner("Paste the token first.");
    try {
      this.renderToken(await api.setHubToken(token === null ? null : token.trim()));
      showBanner(token === null ? "Token removed." : "Token saved.", "info");
    } catch (err) {
      showError(err);
    }
  }
}
