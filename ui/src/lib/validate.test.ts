import { GRAMMAR_EXAMPLES } from "../bindings";
import type { ChatSettings } from "../types";
import {
  DEFAULT_SETTINGS, isPlacement, isPlan, mergeSettings, parseNumber, planBudget, validateDownloadSource, validateModelPath,
  validateServer, validateSettings, validateTitle,
} from "./validate";

/** Settings with fields as typed by the user (any text), as the settings form builds them. */
function typed(fields: Partial<Record<keyof ChatSettings, unknown>>): ChatSettings {
  return { ...DEFAULT_SETTINGS, ...fields } as ChatSettings;
}

describe("validateSettings", () => {
  it("accepts the defaults", () => {
    expect(validateSettings(DEFAULT_SETTINGS)).toEqual({});
  });

  it("reports each bad field", () => {
    const e = validateSettings(typed({
      temperature: -1, top_k: 1.5, top_p: 0, seed: -3, max_tokens: 0, plan: "tree:0", placement: "vram", context: 0,
    }));
    expect(Object.keys(e).sort()).toEqual(["context", "max_tokens", "placement", "plan", "seed", "temperature", "top_k", "top_p"]);
  });

  it("has the back end's defaults: llama.cpp's sampling", () => {
    expect(DEFAULT_SETTINGS).toMatchObject({
      temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1, repeat_last_n: 64,
      frequency_penalty: 0, presence_penalty: 0,
    });
  });

  it("bounds min-p and the penalties as the back end does", () => {
    const ok = typed({ min_p: 1, repeat_penalty: 2, repeat_last_n: 4096, frequency_penalty: -2, presence_penalty: 2 });
    expect(validateSettings(ok)).toEqual({});
    expect(validateSettings(typed({ min_p: 0, repeat_penalty: 0.5, repeat_last_n: 0 }))).toEqual({});
    const e = validateSettings(typed({
      min_p: 1.01, repeat_penalty: 0, repeat_last_n: 4097, frequency_penalty: 2.5, presence_penalty: -2.5,
    }));
    expect(Object.keys(e).sort()).toEqual(["frequency_penalty", "min_p", "presence_penalty", "repeat_last_n", "repeat_penalty"]);
    expect(validateSettings(typed({ min_p: -0.1, repeat_penalty: 2.1, repeat_last_n: 1.5 }))).toMatchObject({
      min_p: expect.any(String), repeat_penalty: expect.stringMatching(/at most 2/), repeat_last_n: expect.any(String),
    });
    expect(validateSettings(typed({ min_p: parseNumber("") })).min_p).toBeDefined();
  });

  it("accepts plans within the engine's limits", () => {
    for (const plan of ["none", "auto", "chain:1", "chain:4", "chain:255", "tree:2", "tree:64", "tree:1024"]) {
      expect(validateSettings(typed({ plan }))).toEqual({});
    }
    for (const plan of ["tree:1025", "tree:2048", "tree:1", "chain:0", "chain:256", "bush", "tree:", "Tree:4"]) {
      expect(validateSettings(typed({ plan })).plan, plan).toMatch(/255.*1024/);
    }
  });

  it("accepts placements", () => {
    for (const placement of ["auto", "cpu", "stream", "gpu", "layers:0", "layers:40"]) {
      expect(isPlacement(placement), placement).toBe(true);
      expect(validateSettings(typed({ placement }))).toEqual({});
    }
    for (const placement of ["", "layers:", "layers:-1", "vram", "GPU", "layers:x"]) {
      expect(isPlacement(placement), placement).toBe(false);
      expect(validateSettings(typed({ placement })).placement).toBeDefined();
    }
  });

  it("accepts an empty or a positive context", () => {
    expect(validateSettings(typed({ context: null }))).toEqual({});
    expect(validateSettings(typed({ context: 8192 }))).toEqual({});
    expect(validateSettings(typed({ context: 1.5 })).context).toBeDefined();
  });

  it("bounds max tokens by the back end's limit", () => {
    expect(validateSettings(typed({ max_tokens: 32768 }))).toEqual({});
    expect(validateSettings(typed({ max_tokens: 32769 })).max_tokens).toMatch(/32768/);
  });

  it("treats empty number fields as errors", () => {
    expect(validateSettings(typed({ temperature: parseNumber(" ") })).temperature).toBeDefined();
  });
});

describe("planBudget", () => {
  it("gives the tokens a step verifies", () => {
    expect(planBudget("tree:64")).toBe("64");
    expect(planBudget("chain:4")).toBe("5");
    expect(planBudget("none")).toBe("1");
    expect(planBudget("auto")).toBe("auto");
    expect(planBudget("bush")).toBe("—");
  });
});

describe("validateServer", () => {
  it("checks the port and the key", () => {
    expect(validateServer({ enabled: true, port: 8080, api_key: null })).toEqual({});
    expect(validateServer({ enabled: true, port: 8080, api_key: "sk-local" })).toEqual({});
    expect(validateServer({ enabled: true, port: 80, api_key: null }).port).toMatch(/1024/);
    expect(validateServer({ enabled: true, port: 70000, api_key: null }).port).toBeDefined();
    expect(validateServer({ enabled: true, port: 8080, api_key: "a b" }).api_key).toBeDefined();
    expect(validateServer({ enabled: true, port: 8080, api_key: "" }).api_key).toBeDefined();
  });
});

describe("mergeSettings", () => {
  it("keeps valid stored fields and replaces bad ones", () => {
    const s = mergeSettings({ temperature: 0, top_k: "x", plan: "chain:3", placement: "layers:20", context: -1, extra: 1 });
    expect(s).toEqual({ ...DEFAULT_SETTINGS, temperature: 0, plan: "chain:3", placement: "layers:20" });
    expect(mergeSettings(null)).toEqual(DEFAULT_SETTINGS);
  });
});

describe("form fields", () => {
  it("validates titles", () => {
    expect(validateTitle("  ")).toMatch(/empty/);
    expect(validateTitle("a\nb")).toMatch(/one line/);
    expect(validateTitle("x".repeat(121))).toMatch(/120/);
    expect(validateTitle("Trip plan")).toBeNull();
  });

  it("validates download sources", () => {
    expect(validateDownloadSource("https://example.org/m.gguf")).toBeNull();
    expect(validateDownloadSource("smollm2-135m")).toBeNull();
    expect(validateDownloadSource("ftp://x")).not.toBeNull();
    expect(validateDownloadSource("")).not.toBeNull();
  });

  it("validates model paths", () => {
    expect(validateModelPath("/models/a.gguf")).toBeNull();
    expect(validateModelPath("a.gguf")).toMatch(/absolute/);
    expect(validateModelPath("/models/a.bin")).toMatch(/GGUF/);
  });
});

describe("the back end's grammar", () => {
  it("accepts exactly the plans canopy-types parses", () => {
    for (const [text, ok] of GRAMMAR_EXAMPLES.plan) {
      expect(isPlan(text), JSON.stringify(text)).toBe(ok);
    }
  });

  it("accepts exactly the placements canopy-types parses", () => {
    for (const [text, ok] of GRAMMAR_EXAMPLES.placement) {
      expect(isPlacement(text), JSON.stringify(text)).toBe(ok);
    }
  });
});
