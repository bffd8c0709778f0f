import { describe, expect, it } from "vitest";
import { groupByQuant, hubRepoLabel } from "./hub";
import type { HubFileView } from "../types";

function file(name: string, quant: string | null): HubFileView {
  return { source: `hf:o/r/${name}.gguf`, name, quant, size: 1, parts: 1, fit: "fits", fit_reason: "", in_library: false };
}

describe("groupByQuant", () => {
  it("keeps the hub's order and names files without a quantization Other", () => {
    const groups = groupByQuant([file("a-Q4_K_M", "Q4_K_M"), file("b-Q8_0", "Q8_0"), file("c-Q4_K_M", "Q4_K_M"), file("d", null)]);
    expect(groups.map(([q, fs]) => [q, fs.map((f) => f.name)])).toEqual([
      ["Q4_K_M", ["a-Q4_K_M", "c-Q4_K_M"]], ["Q8_0", ["b-Q8_0"]], ["Other", ["d"]],
    ]);
  });
});

describe("hubRepoLabel", () => {
  it("abbreviates counts and leaves out unknown ones", () => {
    expect(hubRepoLabel({ id: "o/r", downloads: 12345, likes: 3 })).toBe("12.3k downloads · 3 likes");
    expect(hubRepoLabel({ id: "o/r", downloads: 2000000, likes: null })).toBe("2M downloads");
    expect(hubRepoLabel({ id: "o/r", downloads: null, likes: null })).toBe("");
  });
});
