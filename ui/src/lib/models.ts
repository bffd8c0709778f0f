// How models, fits and pairings read in the UI.

import type { Fit, ModelView, PairView } from "../types";

const FIT_LABEL: Record<Fit, string> = {
  fits: "Fits",
  tight: "Tight fit",
  "too-big": "Too big",
};

/** The fit badge's label and class; a missing file (`null`) has an unknown fit. */
export function fitBadge(fit: ModelView["fit"]): { label: string; cls: string } {
  return fit === null ? { label: "Unknown fit", cls: "fit-unknown" } : { label: FIT_LABEL[fit] ?? fit, cls: `fit-${fit}` };
}

/** What the pairing list says about a draft: why it cannot draft, or that it can. */
export function pairingNote(p: PairView): string {
  return p.compatible ? "same tokenizer, smaller: can draft" : p.reason;
}

/** The file name of a model path without `.gguf` (what the library calls a model), for stored paths. */
export function modelFileName(path: string): string {
  const name = path.split(/[\\/]/).filter(Boolean).pop() ?? path;
  return name.replace(/\.gguf$/i, "") || path;
}

/** How a stored model reference (a library id or a file path) reads: the model's name when it is in the library. */
export function modelLabel(ref: string, models: readonly ModelView[]): string {
  return models.find((m) => m.id === ref)?.name ?? modelFileName(ref);
}
