import { renderMarkdown } from "./markdown";
import { colourRendered, provTitle } from "./provenance";
import type { Run, RunKind } from "./stream";

/** Runs from `[kind, text]` pairs; the source is their concatenation. */
function runs(...pieces: [RunKind, string][]): Run[] {
  return pieces.map(([kind, text]) => ({ kind, text, tokens: 1 }));
}

function rendered(source: string): HTMLElement {
  const div = document.createElement("div");
  div.innerHTML = renderMarkdown(source);
  return div;
}

/** Renders and colours `pieces`, and checks that no text was lost or added on the way. */
function colour(...pieces: [RunKind, string][]): HTMLElement {
  const r = runs(...pieces);
  const source = r.map((p) => p.text).join("");
  const div = rendered(source);
  colourRendered(div, source, r);
  expect(div.textContent).toBe(rendered(source).textContent);
  return div;
}

/** The text of every span of one provenance, in document order. */
function texts(root: Element, kind: RunKind): string[] {
  return Array.from(root.querySelectorAll(`.prov-${kind}`)).map((e) => e.textContent ?? "");
}

describe("colourRendered", () => {
  it("colours bold and emphasis inside the rendered elements, not the markers", () => {
    const div = colour(["target", "This is "], ["draft", "**very** important"], ["target", " and *quite* small."]);
    expect(div.querySelector("strong")?.innerHTML).toBe('<span class="prov-draft" title="accepted draft tokens">very</span>');
    expect(div.querySelector("em .prov-target")?.textContent).toBe("quite");
    expect(texts(div, "draft")).toEqual(["very", " important"]);
    expect(texts(div, "target").join("")).toBe("This is  and quite small.");
    expect(div.textContent).not.toContain("*");
  });

  it("colours inline code", () => {
    const div = colour(["target", "Call `"], ["draft", "len(xs)"], ["target", "` here."]);
    expect(div.querySelector("code .prov-draft")?.textContent).toBe("len(xs)");
    expect(texts(div, "target")).toEqual(["Call ", " here."]);
  });

  it("colours a highlighted fenced code block without colouring its label or button", () => {
    const div = colour(
      ["target", "Here:\n\n```python\ndef "],
      ["draft", "add(a, b):\n    return a + b"],
      ["target", "\n```\n"],
    );
    const code = div.querySelector("code.hljs.language-python");
    expect(code?.querySelector(".hljs-keyword")).not.toBeNull();
    expect(code?.textContent).toBe("def add(a, b):\n    return a + b");
    expect(Array.from(code?.querySelectorAll(".prov-draft") ?? []).map((e) => e.textContent).join("")).toBe("add(a, b):\n    return a + b");
    expect(code?.querySelector(".hljs-keyword .prov-target")?.textContent).toBe("def");
    expect(div.querySelector(".code-head")?.querySelector("[class^=prov-]")).toBeNull();
    expect(div.querySelector(".code-lang")?.textContent).toBe("python");
    expect(div.querySelector(".copy-code")?.textContent).toBe("Copy");
  });

  it("colours list items and leaves the markup's own line breaks alone", () => {
    const div = colour(["target", "- oak\n- "], ["draft", "birch\n- maple"], ["target", "\n\n1. one\n2. two"]);
    expect(Array.from(div.querySelectorAll("ul > li")).map((li) => li.innerHTML)).toEqual([
      '<span class="prov-target" title="target tokens">oak</span>',
      '<span class="prov-draft" title="accepted draft tokens">birch</span>',
      '<span class="prov-draft" title="accepted draft tokens">maple</span>',
    ]);
    expect(Array.from(div.querySelectorAll("ol > li")).map((li) => li.textContent)).toEqual(["one", "two"]);
    for (const list of Array.from(div.querySelectorAll("ul, ol"))) {
      for (const child of Array.from(list.childNodes)) expect(["LI", undefined]).toContain((child as Element).tagName);
    }
  });

  it("colours a heading", () => {
    const div = colour(["draft", "## Trees"], ["target", " of Europe\n\nText."]);
    expect(div.querySelector("h2")?.innerHTML).toBe(
      '<span class="prov-draft" title="accepted draft tokens">Trees</span><span class="prov-target" title="target tokens"> of Europe</span>',
    );
    expect(div.querySelector("p .prov-target")?.textContent).toBe("Text.");
  });

  it("keeps HTML special characters as text, in prose and in code", () => {
    const div = colour(
      ["target", "If a < b && c > d "],
      ["draft", "then <b>not bold</b> & done."],
      ["target", "\n\n```klingon\nx < y && <i>z</i>\n```\n\n`"],
      ["draft", "a<b&c"],
      ["target", "`"],
    );
    // Raw HTML in the reply goes through the sanitiser, as without colouring: <b> stays, markup in code is text.
    expect(div.querySelector("b .prov-draft")?.textContent).toBe("not bold");
    expect(div.querySelector("pre i")).toBeNull();
    expect(texts(div, "target").join("")).toContain("If a < b && c > d ");
    expect(div.querySelector("pre code .prov-target")?.textContent).toBe("x < y && <i>z</i>");
    expect(div.querySelector("p > code .prov-draft")?.textContent).toBe("a<b&c");
    expect(texts(div, "draft").join("")).toContain("not bold");
    expect(texts(div, "draft").join("")).toContain(" & done.");
  });

  it("lines up entities written in the source with the characters they stand for", () => {
    const div = colour(["target", "Fish &amp; "], ["draft", "chips &lt;3 &#169;"]);
    expect(div.textContent).toBe("Fish & chips <3 ©\n");
    expect(texts(div, "target")).toEqual(["Fish & "]);
    expect(texts(div, "draft")).toEqual(["chips <3 ©"]);
  });

  it("cuts a word where a run boundary falls inside it", () => {
    const div = colour(["target", "The photosyn"], ["draft", "thesis of **chloro"], ["target", "phyll** is"]);
    expect(div.querySelector("p")?.firstElementChild?.textContent).toBe("The photosyn");
    expect(texts(div, "draft")).toEqual(["thesis of ", "chloro"]);
    expect(div.querySelector("strong")?.textContent).toBe("chlorophyll");
    expect(div.querySelector("strong .prov-target")?.textContent).toBe("phyll");
  });

  it("never cuts an emoji in half", () => {
    const emoji = "🌲";
    const div = colour(["target", `A ${emoji[0]}`], ["draft", `${emoji[1]} tree`]);
    for (const span of Array.from(div.querySelectorAll("span"))) expect(span.textContent).not.toMatch(/^[\uDC00-\uDFFF]|[\uD800-\uDBFF]$/);
    expect(div.textContent).toBe(`A ${emoji} tree\n`);
  });

  it("loses nothing in a long mixed reply, and colours almost all of it", () => {
    const source = [
      "# Trees\n\nHere are **three** trees, with a [link](https://example.com/a/very/long/path?q=1) and `code`:\n\n",
      "1. *Oak* — strong\n2. Birch\n3. Maple & friends\n\n> A quote with <angle> brackets.\n\n",
      "| Tree | Height |\n|:-----|-------:|\n| Oak | 40 m |\n\n",
      "```rust\nfn main() {\n    let s = \"<b>&amp;</b>\";\n    println!(\"{s}\");\n}\n```\n\nDone.\n",
    ].join("");
    // Alternate draft and target every 7 characters.
    const pieces: [RunKind, string][] = [];
    for (let i = 0; i < source.length; i += 7) pieces.push([i % 14 === 0 ? "draft" : "target", source.slice(i, i + 7)]);
    const div = colour(...pieces);
    const coloured = texts(div, "draft").join("").length + texts(div, "target").join("").length;
    const visible = (div.textContent ?? "").replace(/Copy|rust|\n/g, "").length;
    expect(coloured).toBeGreaterThanOrEqual(visible);
  });

  it("leaves text it cannot line up uncoloured instead of dropping it", () => {
    const div = rendered("Hello **world**");
    colourRendered(div, "something else entirely", runs(["draft", "something else entirely"]));
    expect(div.textContent).toBe(rendered("Hello **world**").textContent);
    const div2 = rendered("Hello world");
    colourRendered(div2, "Hello world", runs(["draft", "Hello"]));
    expect(texts(div2, "draft")).toEqual(["Hello"]);
    expect(div2.textContent).toBe("Hello world\n");
  });

  it("names each provenance for the hover text", () => {
    expect(provTitle("draft")).toBe("accepted draft tokens");
    expect(provTitle("target")).toBe("target tokens");
    expect(provTitle("mixed")).toBe("mixed");
  });
});
