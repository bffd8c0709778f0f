// The placement picker (see the `Placement` type) shared by the chat's settings and the profile screen: where the target's
// weights live (`auto`, `cpu`, `stream`, `gpu` or `layers:N`).

import { h } from "./dom";

export type PlacementChoice = "auto" | "cpu" | "stream" | "gpu" | "layers";

export const PLACEMENT_CHOICES: readonly { value: PlacementChoice; label: string }[] = [
  { value: "auto", label: "Automatic" },
  { value: "cpu", label: "CPU only" },
  { value: "stream", label: "Stream from RAM" },
  { value: "gpu", label: "All on GPU" },
  { value: "layers", label: "Some layers on GPU…" },
];

/** Splits a placement into the picker's choice and its layer count (text, empty unless `layers:N`). */
export function splitPlacement(placement: string): { choice: PlacementChoice; layers: string } {
  const m = /^layers:(.*)$/.exec(placement);
  if (m) return { choice: "layers", layers: m[1] };
  const choice = PLACEMENT_CHOICES.find((c) => c.value === placement && c.value !== "layers");
  return { choice: choice ? choice.value : "auto", layers: "" };
}

/** The placement text for a choice and a layer count (the count is only read for `layers`). */
export function joinPlacement(choice: PlacementChoice, layers: string): string {
  return choice === "layers" ? `layers:${layers.trim()}` : choice;
}

export interface PlacementPicker {
  /** The select and, for `layers:N`, the layer count field. */
  readonly root: HTMLElement;
  /** The placement as typed; check it with `isPlacement` (validate.ts). */
  value(): string;
}

/**
 * A select of the placements with a layer count field shown for "Some layers on GPU…".
 * `testid` names the select; the count field is `${testid}-layers`.
 */
export function placementPicker(initial: string, testid: string, onChange: (text: string) => void, disabled = false): PlacementPicker {
  const start = splitPlacement(initial);
  const select = h("select", { class: "placement-select", "aria-label": "Placement", "data-testid": testid, disabled },
    ...PLACEMENT_CHOICES.map((c) => h("option", { value: c.value }, c.label)));
  select.value = start.choice;
  const layers = h("input", {
    class: "field-input layers-input", inputmode: "numeric", placeholder: "layers", value: start.layers,
    "aria-label": "Target layers on the GPU", title: "Target layers kept on the GPU; the rest stream from RAM",
    "data-testid": `${testid}-layers`, hidden: start.choice !== "layers", disabled,
  });
  const value = () => joinPlacement(select.value as PlacementChoice, layers.value);
  select.addEventListener("change", () => {
    layers.hidden = select.value !== "layers";
    if (!layers.hidden) layers.focus();
    onChange(value());
  });
  layers.addEventListener("input", () => onChange(value()));
  return { root: h("span", { class: "placement-picker" }, select, layers), value };
}

