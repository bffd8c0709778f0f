// The hardware profile wizard: detect → bandwidth → cost curves → acceptance → plan.

import { api } from "../api";
import { showBanner, showError } from "../banner";
import { acceptanceChart, bandwidthChart, curveChart, treePicture } from "../lib/charts";
import { h, replace } from "../lib/dom";
import { formatRate, relativeTimeOf } from "../lib/format";
import { modelLabel } from "../lib/models";
import { placementPicker } from "../lib/placement";
import { isPlacement } from "../lib/validate";
import type { ModelView, PairView, Placement, ProfileEvent, ProfileView, Step } from "../types";

const STEPS: { id: Step; label: string; what: string }[] = [
  { id: "detect", label: "Detect", what: "CPU, memory and GPUs" },
  { id: "bandwidth", label: "Bandwidth", what: "memory and host→GPU copy speed" },
  { id: "costs", label: "Cost curves", what: "time of one pass over n tokens" },
  { id: "acceptance", label: "Acceptance", what: "how often the target accepts draft tokens" },
  { id: "plan", label: "Plan", what: "the tree that maximises tokens per second" },
];

interface StepState {
  fraction: number;
  note: string;
  done: boolean;
}

export class ProfileScreen {
  readonly root: HTMLElement;
  private profile: ProfileView | null = null;
  private models: ModelView[] = [];
  private pairings: PairView[] = [];
  /** The chosen target and draft (undefined until the first choice is made). */
  private target: string | null | undefined;
  private draft: string | null | undefined;
  /** The placement override as typed; `auto` lets the back end choose. */
  private placement = "auto";
  private running = false;
  private steps = new Map<Step, StepState>();
  private readonly stepper = h("ol", { class: "stepper", "data-testid": "stepper" });
  private readonly controls = h("div", { class: "profile-controls" });
  private readonly results = h("div", { class: "profile-results", "data-testid": "profile-results" });

  constructor() {
    this.root = h("div", { class: "profile" },
      h("header", { class: "screen-head" },
        h("div", {}, h("h1", {}, "Hardware profile"),
          h("p", { class: "muted" }, "Canopy measures this machine and the chosen models, then sizes its speculation tree to maximise tokens per second. The chat uses the saved profile."))),
      this.controls, this.stepper, this.results);
  }

  async show(): Promise<void> {
    const [profile, models] = await Promise.all([api.latestProfile(), api.listModels().catch(() => [])]);
    this.models = models;
    if (!this.running) this.profile = profile;
    if (this.target === undefined) {
      const bigToSmall = [...models].sort((a, b) => (b.parameters ?? 0) - (a.parameters ?? 0));
      this.target = bigToSmall[0]?.id ?? null;
    }
    await this.loadPairings();
    this.renderControls();
    this.renderStepper();
    this.renderResults();
  }

  private renderControls(): void {
    const bigToSmall = [...this.models].sort((a, b) => (b.parameters ?? 0) - (a.parameters ?? 0));
    if (this.target === undefined) this.target = bigToSmall[0]?.id ?? null;
    if (this.target !== null && !this.models.some((m) => m.id === this.target)) this.target = bigToSmall[0]?.id ?? null;
    const targets = h("select", { class: "model-select", "aria-label": "Target model", "data-testid": "profile-target", disabled: this.running },
      h("option", { value: "" }, "No model (machine only)"), ...this.models.map((m) => h("option", { value: m.id }, m.name)));
    targets.value = this.target ?? "";
    const compatible = this.pairings.filter((p) => p.compatible);
    if (this.draft && !compatible.some((p) => p.draft_id === this.draft)) this.draft = null;
    const drafts = h("select", { class: "model-select", "aria-label": "Draft model", "data-testid": "profile-draft", disabled: this.running || !this.target },
      h("option", { value: "" }, compatible.length ? "No draft" : "No compatible draft"),
      ...compatible.map((p) => h("option", { value: p.draft_id }, p.draft_name)),
      ...this.pairings.filter((p) => !p.compatible).map((p) => h("option", { value: p.draft_id, disabled: true }, `${p.draft_name} — ${p.reason}`)));
    drafts.value = this.draft ?? "";
    targets.addEventListener("change", async () => {
      this.target = targets.value || null;
      this.draft = null;
      await this.loadPairings();
      this.renderControls();
    });
    drafts.addEventListener("change", () => { this.draft = drafts.value || null; });
    const placement = placementPicker(this.placement, "profile-placement-choice",
      (text) => { this.placement = text; }, this.running || !this.target);
    replace(this.controls,
      h("label", { class: "pair-field" }, h("span", {}, "Target"), targets),
      h("label", { class: "pair-field" }, h("span", {}, "Draft"), drafts),
      h("label", { class: "pair-field", title: "Where the target runs while it is timed; automatic uses the chat's rule" }, h("span", {}, "Placement"), placement.root),
      h("button", { class: "primary", type: "button", disabled: this.running, "data-testid": "run-quick", onclick: () => this.run(true) }, "Quick profile"),
      h("button", { type: "button", disabled: this.running, "data-testid": "run-full", onclick: () => this.run(false) }, "Full profile"),
      this.running ? h("button", { class: "danger", type: "button", "data-testid": "cancel-profile", onclick: () => api.cancelProfile().catch(showError) }, "Cancel") : null);
  }

  private async loadPairings(): Promise<void> {
    this.pairings = [];
    if (!this.target) return;
    try {
      this.pairings = await api.pairings(this.target);
    } catch (err) {
      showError(err);
    }
    if (this.draft === undefined || this.draft === null) {
      // Offer the largest compatible draft by default: it usually has the best acceptance.
      const compatible = this.pairings.filter((p) => p.compatible);
      this.draft = compatible.length ? compatible[compatible.length - 1].draft_id : null;
    }
  }

  private renderStepper(): void {
    replace(this.stepper, ...STEPS.map((s, i) => {
      const st = this.steps.get(s.id);
      const state = st?.done ? "done" : st ? "active" : "waiting";
      const bar = h("progress", { max: 1, value: st ? (st.done ? 1 : st.fraction) : 0 });
      return h("li", { class: `step ${state}`, "data-step": s.id, "data-testid": `step-${s.id}` },
        h("span", { class: "step-index" }, st?.done ? "✓" : String(i + 1)),
        h("div", { class: "step-body" },
          h("div", { class: "step-title" }, s.label),
          h("div", { class: "step-note muted" }, st?.note || s.what),
          bar));
    }));
  }

  private async run(quick: boolean): Promise<void> {
    if (this.running) return;
    const target = this.target ?? null;
    const draft = target ? this.draft ?? null : null;
    if (draft && draft === target) {
      showBanner("Choose a draft that differs from the target, or no draft.");
      return;
    }
    if (!isPlacement(this.placement)) {
      showBanner("Placement must be automatic, CPU only, stream, all on GPU or a number of GPU layers.");
      return;
    }
    // Automatic is the back end's default; only an override is sent.
    const placement: Placement | null = target && this.placement !== "auto" ? this.placement : null;
    this.running = true;
    this.steps = new Map();
    this.renderControls();
    this.renderStepper();
    const onEvent = (e: ProfileEvent) => {
      if (e.type === "step") {
        const prev = this.steps.get(e.step);
        this.steps.set(e.step, { fraction: e.fraction, note: e.note, done: prev?.done ?? false });
        this.renderStepper();
      } else if (e.type === "step_done") {
        const prev = this.steps.get(e.step);
        this.steps.set(e.step, { fraction: 1, note: prev?.note ?? "", done: true });
        this.profile = e.profile;
        this.renderStepper();
        this.renderResults();
      }
    };
    try {
      this.profile = await api.runProfile(quick, target, draft, placement, onEvent);
      for (const s of STEPS) {
        const st = this.steps.get(s.id);
        this.steps.set(s.id, { fraction: 1, note: st?.note ?? "", done: true });
      }
      showBanner("Profile saved. The chat now plans with it.", "info");
    } catch (err) {
      showError(err);
    } finally {
      this.running = false;
      this.renderControls();
      this.renderStepper();
      this.renderResults();
    }
  }

  /** Which models the profile measured, by name when they are in the library. */
  private modelsLine(p: ProfileView): HTMLElement | null {
    if (!p.target_model) return null;
    const target = modelLabel(p.target_model, this.models);
    return h("div", { class: "muted", "data-testid": "profile-models" },
      p.draft_model ? `Target ${target}, draft ${modelLabel(p.draft_model, this.models)}` : `Target ${target}, no draft (plain decoding)`);
  }

  private renderResults(): void {
    const p = this.profile;
    if (!p) {
      replace(this.results, h("div", { class: "empty-state small", "data-testid": "profile-empty" },
        h("h3", {}, "No profile yet"),
        h("p", {}, "Run the quick profile (about a minute) to measure this machine. Pick a target and a draft to also measure their costs and acceptance.")));
      return;
    }
    const speedup = p.plain_tokens_per_second > 0 ? p.predicted_tokens_per_second / p.plain_tokens_per_second : 0;
    replace(this.results,
      h("div", { class: "prediction", "data-testid": "prediction" },
        h("div", { class: "big-number" }, formatRate(p.predicted_tokens_per_second)),
        h("div", {},
          h("div", {}, `predicted with plan ${p.plan}`),
          h("div", { class: "muted" }, `${formatRate(p.plain_tokens_per_second)} without speculation${speedup > 0 ? ` · ×${speedup.toFixed(2)}` : ""} · ${p.expected_tokens_per_step.toFixed(2)} tokens per step · saved ${relativeTimeOf(p.created_at)}`),
          p.source ? h("div", { class: "muted", "data-testid": "profile-source" }, p.source) : null,
          this.modelsLine(p),
          p.placement ? h("div", { class: "muted", "data-testid": "profile-placement" }, `Target placement: ${p.placement}`) : null,
          p.live ? h("div", { class: p.live.disagrees ? "fit-banner live-disagrees" : "muted", "data-testid": "profile-live", title: `measured ${p.live.measured_at}` },
            `${p.live.summary.charAt(0).toUpperCase()}${p.live.summary.slice(1)}.`) : null)),
      h("div", { class: "chart-grid" },
        chartCard(`Chosen tree: ${p.budget} node${p.budget === 1 ? "" : "s"}, depth ${p.depth}`, p.tree.length > 1 ? treePicture(p.tree) : h("p", { class: "muted" }, "No speculation: plain decoding is fastest on this machine for these models."), "wide", "chosen-tree"),
        chartCard("Machine", h("dl", { class: "facts" }, ...p.system.flatMap((e) => [h("dt", {}, e.key), h("dd", {}, e.value)]))),
        chartCard("Bandwidth", bandwidthChart(p.bandwidth, "no GPU in use: nothing is streamed")),
        chartCard("Target pass time t_target(n)", curveChart([{ name: "target", points: p.target_curve, cls: "s-target" }], "tokens per pass (n)", "no target model chosen")),
        chartCard("Draft pass time t_draft(k)", curveChart([{ name: "draft", points: p.draft_curve, cls: "s-draft" }], "tokens per level (k)", "no draft model chosen")),
        chartCard("Acceptance by draft rank p[k]", acceptanceChart(p.acceptance, "no draft model chosen")),
      ));
  }
}

function chartCard(title: string, body: Element, extra = "", testid?: string): HTMLElement {
  return h("section", { class: `chart-card ${extra}`, "data-testid": testid }, h("h3", {}, title), body);
}
