import {
  DEFAULT_SETTINGS, mergeSettings, parseNumber, validateDownloadSource, validateModelPath,
  validateSettings, validateTitle,
} from "./validate";

describe("validateSettings", () => {
  it("accepts the defaults", () => {
    expect(validateSettings(DEFAULT_SETTINGS)).toEqual({});
  });

  it("reports each bad field", () => {
    const e = validateSettings({
      temperature: -1, top_k: 1.5, top_p: 0, seed: -3, max_tokens: 0, plan: "tree:0",
    });
    expect(Object.keys(e).sort()).toEqual(["max_tokens", "plan", "seed", "temperature", "top_k", "top_p"]);
  });

  it("accepts plans and refuses huge trees", () => {
    for (const plan of ["none", "auto", "chain:4", "tree:64", "tree:1024"]) {
      expect(validateSettings({ ...DEFAULT_SETTINGS, plan })).toEqual({});
    }
    expect(validateSettings({ ...DEFAULT_SETTINGS, plan: "tree:2048" }).plan).toMatch(/1024/);
    expect(validateSettings({ ...DEFAULT_SETTINGS, plan: "bush" }).plan).toBeDefined();
  });

  it("treats empty number fields as errors", () => {
    expect(validateSettings({ ...DEFAULT_SETTINGS, temperature: parseNumber(" ") }).temperature).toBeDefined();
  });
});

describe("mergeSettings", () => {
  it("keeps valid stored fields and replaces bad ones", () => {
    const s = mergeSettings({ temperature: 0, top_k: "x", plan: "chain:3", extra: 1 });
    expect(s).toEqual({ ...DEFAULT_SETTINGS, temperature: 0, plan: "chain:3" });
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
