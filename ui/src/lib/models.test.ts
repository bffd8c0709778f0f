import type { ModelView } from "../types";
import { fitBadge, modelFileName, modelLabel, pairingNote } from "./models";

describe("models", () => {
  it("labels fits, with an unknown fit for a missing file", () => {
    expect(fitBadge("fits")).toEqual({ label: "Fits", cls: "fit-fits" });
    expect(fitBadge("too-big")).toEqual({ label: "Too big", cls: "fit-too-big" });
    expect(fitBadge(null)).toEqual({ label: "Unknown fit", cls: "fit-unknown" });
  });

  it("says why a draft pairs or not", () => {
    expect(pairingNote({ draft_id: "2", draft_name: "d", compatible: true, reason: "" })).toBe("same tokenizer, smaller: can draft");
    expect(pairingNote({ draft_id: "2", draft_name: "d", compatible: false, reason: "vocabularies differ" })).toBe("vocabularies differ");
  });

  it("names stored references", () => {
    const models = [{ id: "3", name: "SmolLM2-135M" } as ModelView];
    expect(modelLabel("3", models)).toBe("SmolLM2-135M");
    expect(modelLabel("/models/qwen2.5-0.5b.Q4_K_M.gguf", models)).toBe("qwen2.5-0.5b.Q4_K_M");
    expect(modelFileName("C:\\models\\a.GGUF")).toBe("a");
  });
});
