import { StreamAccumulator, kindOf, provenanceShare } from "./stream";

describe("StreamAccumulator", () => {
  it("merges adjacent pieces of the same provenance into runs", () => {
    let t = 0;
    const acc = new StreamAccumulator(() => t);
    acc.push("The", ["target"]);
    t = 100;
    acc.push(" quick", ["draft"]);
    acc.push(" brown", ["draft"]);
    t = 200;
    acc.push(" fox", ["target"]);
    acc.push(" jumps over", ["draft", "target"]);
    expect(acc.text).toBe("The quick brown fox jumps over");
    expect(acc.runs.map((r) => [r.kind, r.text, r.tokens])).toEqual([
      ["target", "The", 1],
      ["draft", " quick brown", 2],
      ["target", " fox", 1],
      ["mixed", " jumps over", 2],
    ]);
  });

  it("computes live statistics", () => {
    let t = 1000;
    const acc = new StreamAccumulator(() => t);
    expect(acc.stats().tokensPerSecond).toBe(0);
    acc.push("a", ["draft", "draft", "target"]);
    t = 2000;
    acc.push("b", ["draft", "target"]);
    const s = acc.stats();
    expect(s.tokens).toBe(5);
    expect(s.draftTokens).toBe(3);
    expect(s.targetTokens).toBe(2);
    expect(s.tokensPerSecond).toBeCloseTo(4);
    expect(s.acceptedPerStep).toBeCloseTo(1.5);
    expect(s.draftShare).toBeCloseTo(0.6);
  });

  it("keeps text that arrives without token sources", () => {
    const acc = new StreamAccumulator(() => 0);
    acc.push("x", []);
    expect(acc.text).toBe("x");
    expect(acc.stats().tokens).toBe(0);
  });
});

describe("kindOf / provenanceShare", () => {
  it("classifies pieces", () => {
    expect(kindOf(["draft"])).toBe("draft");
    expect(kindOf(["target", "target"])).toBe("target");
    expect(kindOf(["draft", "target"])).toBe("mixed");
  });

  it("summarises stored provenance", () => {
    expect(provenanceShare(["draft", "draft", "target", "draft"])).toEqual({
      draft: 3, lookup: 0, target: 1, share: 0.75, lookupShare: 0,
    });
    expect(provenanceShare(["target", "target"])).toEqual({ draft: 0, lookup: 0, target: 2, share: 0, lookupShare: 0 });
    expect(provenanceShare(["lookup", "lookup", "draft", "target"])).toEqual({
      draft: 1, lookup: 2, target: 1, share: 0.25, lookupShare: 0.5,
    });
    expect(provenanceShare([]).share).toBe(0);
  });
});
