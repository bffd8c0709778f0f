import { snippetParts } from "./snippet";

describe("snippetParts", () => {
  it("splits marked matches", () => {
    expect(snippetParts("a [cat] sat on [mat]")).toEqual([
      { text: "a ", match: false }, { text: "cat", match: true }, { text: " sat on ", match: false },
      { text: "mat", match: true },
    ]);
    expect(snippetParts("plain")).toEqual([{ text: "plain", match: false }]);
  });
});
