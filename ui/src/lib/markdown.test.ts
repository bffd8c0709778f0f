import { highlight, renderMarkdown, sanitize } from "./markdown";

describe("renderMarkdown", () => {
  it("renders emphasis, lists and tables", () => {
    const html = renderMarkdown("**bold** and *it*\n\n- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |");
    expect(html).toContain("<strong>bold</strong>");
    expect(html).toContain("<li>a</li>");
    expect(html).toContain("<td>1</td>");
  });

  it("highlights fenced code with a known language", () => {
    const html = renderMarkdown("```rust\nfn main() { let x = 1; }\n```");
    expect(html).toContain('class="hljs language-rust"');
    expect(html).toContain("hljs-keyword");
    expect(html).toContain("copy-code");
  });

  it("escapes code in an unknown language instead of guessing", () => {
    const html = renderMarkdown("```klingon\n<b>not bold</b>\n```");
    expect(html).toContain("&lt;b&gt;not bold&lt;/b&gt;");
    expect(html).not.toContain("<b>not bold</b>");
  });

  it("drops scripts, event handlers and javascript: links from model output", () => {
    const html = renderMarkdown(
      '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>' +
        '<p onclick="alert(4)" style="color:red">hi</p><iframe src="https://evil"></iframe>',
    );
    expect(html).not.toMatch(/script|onerror|onclick|javascript:|iframe|style=|<img/i);
    expect(html).toContain("hi");
  });

  it("keeps ordinary links but no remote images", () => {
    const html = renderMarkdown("[site](https://example.org) ![pic](https://example.org/p.png)");
    expect(html).toContain('href="https://example.org"');
    expect(html).not.toContain("<img");
  });
});

describe("sanitize", () => {
  it("removes form controls and inline styles", () => {
    expect(sanitize('<input type="text" value="x"><p style="position:fixed">p</p>')).toBe("<p>p</p>");
  });
});

describe("highlight", () => {
  it("accepts aliases", () => {
    expect(highlight("let a = 1", "ts").language).toBe("ts");
    expect(highlight("echo hi", "sh").html).toContain("hljs");
  });
});
