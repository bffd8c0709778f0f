// The model library: models with their facts and fit, import, download, inspect, pairing, removal.

import { api } from "../api";
import { showBanner, showError } from "../banner";
import { h, icon, replace } from "../lib/dom";
import { formatBytes, formatParams, formatRate } from "../lib/format";
import { validateDownloadSource, validateModelPath } from "../lib/validate";
import { fitBadge, pairingNote } from "../lib/models";
import { HubPanel } from "./hub";
import type { AppInfo, CatalogEntry, DownloadProgress, ModelDetails, ModelView, PairView } from "../types";

export class LibraryScreen {
  readonly root: HTMLElement;
  private models: ModelView[] = [];
  private catalog: CatalogEntry[] = [];
  private selected: string | null = null;
  private details: ModelDetails | null = null;
  private pairings: PairView[] = [];
  private downloading = false;
  private confirmRemove: string | null = null;

  private readonly table = h("div", { class: "model-table", "data-testid": "model-table" });
  private readonly detail = h("aside", { class: "model-detail", "data-testid": "model-detail" });
  private readonly pathInput = h("input", {
    class: "field-input grow", placeholder: "/path/to/model.gguf", "aria-label": "Model file path", "data-testid": "import-path",
  });
  private readonly sourceInput = h("input", {
    class: "field-input grow", placeholder: "https://…/model.gguf or a catalog id", "aria-label": "Download URL", "data-testid": "download-source",
  });
  private readonly shaInput = h("input", {
    class: "field-input grow", placeholder: "sha256 (needed for URLs outside the catalog)", "aria-label": "Expected sha256", "data-testid": "download-sha",
  });
  private readonly progress = h("div", { class: "download-progress", hidden: true, "data-testid": "download-progress" });
  private readonly catalogList = h("div", { class: "catalog" });
  private readonly usage = h("p", { class: "muted", "data-testid": "library-usage" });
  private readonly hub = new HubPanel(async (sources) => { await this.fetchAll(sources); });

  constructor(private readonly info: AppInfo | null) {
    this.pathInput.addEventListener("keydown", (e) => { if (e.key === "Enter") void this.importPath(); });
    this.root = h("div", { class: "library" },
      h("section", { class: "library-main" },
        h("header", { class: "screen-head" },
          h("div", {}, h("h1", {}, "Model library"), this.usage),
          h("button", { type: "button", "data-testid": "scan", onclick: () => this.scan() }, "Scan models folder")),
        h("div", { class: "cards" },
          h("div", { class: "card" },
            h("h3", {}, "Import a file"),
            h("p", { class: "muted" }, "A GGUF file on this computer. It is checked before anything loads it."),
            h("div", { class: "row" }, this.pathInput,
              h("button", { class: "primary", type: "button", "data-testid": "import", onclick: () => this.importPath() }, "Import"))),
          h("div", { class: "card" },
            h("h3", {}, "Download"),
            h("p", { class: "muted" }, "From the catalog or a URL; interrupted downloads resume."),
            h("div", { class: "row" }, this.sourceInput,
              h("button", { class: "primary", type: "button", "data-testid": "download", onclick: () => this.download() }, "Download")),
            h("div", { class: "row" }, this.shaInput),
            this.catalogList)),
        this.progress,
        this.hub.root,
        this.table),
      this.detail);
  }

  async show(): Promise<void> {
    await this.reload();
    try {
      this.catalog = await api.catalog();
    } catch {
      this.catalog = [];
    }
    this.renderCatalog();
    await this.hub.show();
  }

  private async reload(): Promise<void> {
    this.models = await api.listModels();
    try {
      const u = await api.libraryUsage();
      this.usage.textContent = `${u.models} model${u.models === 1 ? "" : "s"} · ${formatBytes(u.total_bytes)} on disk, ${formatBytes(u.managed_bytes)} of it in ${u.models_dir}`;
    } catch {
      this.usage.textContent = this.info ? `Models live in ${this.info.models_dir}` : "";
    }
    if (this.selected && !this.models.some((m) => m.id === this.selected)) {
      this.selected = null;
      this.details = null;
    }
    this.renderTable();
    this.renderDetail();
  }

  private renderTable(): void {
    if (this.models.length === 0) {
      replace(this.table, h("div", { class: "empty-state small", "data-testid": "library-empty" },
        h("h3", {}, "No models yet"),
        h("p", {}, "Import a .gguf file, download one from the catalog, or put files in the models folder and scan it.")));
      return;
    }
    const head = h("div", { class: "model-row head" },
      ...["Name", "Architecture", "Parameters", "Quantization", "Size", "Role", "Fit", ""].map((t) => h("span", {}, t)));
    replace(this.table, head, ...this.models.map((m) => h("div", {
      class: `model-row${m.id === this.selected ? " selected" : ""}`, "data-testid": "model-row", "data-id": m.id,
    },
    h("button", { class: "model-name", type: "button", title: m.path, onclick: () => this.inspect(m.id) }, m.name),
    h("span", {}, m.architecture ?? "—"),
    h("span", {}, formatParams(m.parameters)),
    h("span", {}, m.quantization ?? "—"),
    h("span", {}, formatBytes(m.file_size)),
    h("span", { class: "role" }, m.role),
    h("span", { class: `fit ${fitBadge(m.fit).cls}`, title: m.fit_reason }, fitBadge(m.fit).label),
    h("span", { class: "row-actions" },
      h("button", { class: "small", type: "button", "data-testid": "inspect", onclick: () => this.inspect(m.id) }, "Inspect"),
      this.confirmRemove === m.id
        ? h("span", { class: "confirm-inline" },
          h("button", { class: "small danger", type: "button", "data-testid": "confirm-remove", onclick: () => this.remove(m.id, false) }, "Remove"),
          h("button", { class: "small danger", type: "button", onclick: () => this.remove(m.id, true) }, "Remove + delete file"),
          h("button", { class: "small", type: "button", onclick: () => { this.confirmRemove = null; this.renderTable(); } }, "Keep"))
        : h("button", { class: "icon-button small", type: "button", title: "Remove", "aria-label": "Remove", "data-testid": "remove", onclick: () => { this.confirmRemove = m.id; this.renderTable(); } }, icon("trash"))))));
  }

  private renderDetail(): void {
    const d = this.details;
    if (!d) {
      replace(this.detail, h("div", { class: "detail-empty" }, h("p", { class: "muted" }, "Select a model to see its metadata and which drafts pair with it.")));
      return;
    }
    const m = d.model;
    replace(this.detail,
      h("h2", { "data-testid": "detail-name" }, m.name),
      h("p", { class: "muted path" }, m.path),
      h("div", { class: `fit-banner ${fitBadge(m.fit).cls}` }, h("strong", {}, fitBadge(m.fit).label), " — ", m.fit_reason),
      h("dl", { class: "facts" },
        ...fact("Architecture", m.architecture ?? "—"), ...fact("Parameters", formatParams(m.parameters)),
        ...fact("Quantization", m.quantization ?? "—"), ...fact("File size", formatBytes(m.file_size)),
        ...fact("Context", m.context_length ? `${m.context_length} tokens` : "—"), ...fact("Vocabulary", m.vocab_size ? String(m.vocab_size) : "—"),
        ...fact("Tensors", String(d.tensor_count))),
      h("h3", {}, "Drafts for this target"),
      this.pairings.length === 0
        ? h("p", { class: "muted" }, "No other models in the library to draft with.")
        : h("ul", { class: "pairings", "data-testid": "pairings" }, ...this.pairings.map((p) => h("li", { class: p.compatible ? "ok" : "refused" },
          h("span", { class: "mark" }, p.compatible ? "✓" : "✕"), h("strong", {}, p.draft_name), h("span", { class: "muted" }, ` ${pairingNote(p)}`)))),
      h("h3", {}, "Metadata"),
      h("div", { class: "metadata", "data-testid": "metadata" },
        h("table", {}, h("tbody", {}, ...d.metadata.map((e) => h("tr", {}, h("th", {}, e.key), h("td", {}, e.value)))))));
  }

  private async inspect(id: string): Promise<void> {
    this.selected = id;
    this.renderTable();
    try {
      this.details = await api.inspectModel(id);
      this.pairings = await api.pairings(id).catch(() => []);
    } catch (err) {
      this.details = null;
      showError(err);
    }
    this.renderDetail();
  }

  private async importPath(): Promise<void> {
    const problem = validateModelPath(this.pathInput.value);
    if (problem) return showBanner(problem);
    try {
      const model = await api.importModel(this.pathInput.value.trim());
      this.pathInput.value = "";
      showBanner(`Imported ${model.name}.`, "info");
      await this.reload();
      await this.inspect(model.id);
    } catch (err) {
      showError(err);
    }
  }

  private async scan(): Promise<void> {
    try {
      const found = await api.scanModels();
      showBanner(found.length ? `Found ${found.length} new model${found.length === 1 ? "" : "s"}.` : "No new models in the models folder.", "info");
      await this.reload();
    } catch (err) {
      showError(err);
    }
  }

  private async remove(id: string, deleteFile: boolean): Promise<void> {
    this.confirmRemove = null;
    try {
      await api.removeModel(id, deleteFile);
      await this.reload();
    } catch (err) {
      showError(err);
      this.renderTable();
    }
  }

  private renderCatalog(): void {
    if (this.catalog.length === 0) {
      replace(this.catalogList);
      return;
    }
    const pick = h("select", { "aria-label": "Catalog", "data-testid": "catalog" },
      h("option", { value: "" }, `Pick from the catalog (${this.catalog.length} models)…`),
      ...this.catalog.map((c) => h("option", { value: c.id }, `${c.name} — ${c.description}${c.size ? ` · ${formatBytes(c.size)}` : ""}`)));
    pick.addEventListener("change", () => { if (pick.value) this.sourceInput.value = pick.value; });
    replace(this.catalogList, pick);
  }

  private async download(): Promise<void> {
    const source = this.sourceInput.value.trim();
    const problem = validateDownloadSource(source);
    if (problem) return showBanner(problem);
    const sha256 = this.shaInput.value.trim() || null;
    if (await this.fetchAll([{ source, name: source }], sha256)) {
      this.sourceInput.value = "";
      this.shaInput.value = "";
    }
  }

  /** Downloads `sources` one after the other with one progress bar; stops at the first failure. */
  private async fetchAll(sources: { source: string; name: string }[], sha256: string | null = null): Promise<boolean> {
    if (this.downloading) {
      showBanner("A download is already running.");
      return false;
    }
    this.downloading = true;
    const bar = h("progress", { max: 1, value: 0 });
    const label = h("span", { class: "progress-label" }, "Starting…");
    const cancel = h("button", { class: "small", type: "button", "data-testid": "download-cancel", onclick: () => api.cancelDownload().catch(showError) }, "Cancel");
    replace(this.progress, bar, label, cancel);
    this.progress.hidden = false;
    let ok = true;
    try {
      for (const [i, item] of sources.entries()) {
        const prefix = sources.length > 1 ? `${i + 1} of ${sources.length} · ${item.name} · ` : "";
        label.textContent = `${prefix}Starting…`;
        bar.value = 0;
        const onEvent = (e: DownloadProgress) => {
          if (e.type === "progress") {
            if (e.total) bar.value = e.received / e.total; else bar.removeAttribute("value");
            label.textContent = `${prefix}${formatBytes(e.received)}${e.total ? ` of ${formatBytes(e.total)}` : ""} · ${formatRate(e.bytes_per_second / 1e6, "MB/s")}`;
          } else if (e.type === "verifying") {
            label.textContent = `${prefix}Verifying…`;
          }
        };
        const model = await api.download(item.source, sha256, onEvent);
        showBanner(`Downloaded ${model.name}.`, "info");
        await this.reload();
      }
    } catch (err) {
      ok = false;
      showError(err);
    } finally {
      this.downloading = false;
      this.progress.hidden = true;
    }
    return ok;
  }
}

function fact(label: string, value: string): HTMLElement[] {
  return [h("dt", {}, label), h("dd", {}, value)];
}
