import { mountBanners, showBanner, showError } from "./banner";

describe("banners", () => {
  let host: HTMLElement;
  beforeEach(() => {
    host = document.createElement("div");
    mountBanners(host);
  });

  it("shows one line per message, once, and at most three", () => {
    showBanner("first");
    showBanner("first");
    expect(host.children).toHaveLength(1);
    showBanner("second");
    showBanner("third");
    showBanner("fourth");
    expect(Array.from(host.querySelectorAll(".banner-text")).map((e) => e.textContent)).toEqual([
      "second", "third", "fourth",
    ]);
  });

  it("capitalises command errors and runs the offered action", async () => {
    let ran = false;
    showError({ kind: "crashed", message: "the inference worker stopped unexpectedly" }, {
      label: "Restart engine", run: () => { ran = true; },
    });
    expect(host.querySelector(".banner-text")?.textContent).toBe("The inference worker stopped unexpectedly");
    (host.querySelector(".banner-action") as HTMLButtonElement).click();
    await Promise.resolve();
    expect(ran).toBe(true);
    expect(host.children).toHaveLength(0);
  });

  it("removes notices by themselves but keeps errors", () => {
    vi.useFakeTimers();
    showBanner("saved", "info");
    showBanner("broken", "error");
    vi.advanceTimersByTime(5000);
    expect(Array.from(host.querySelectorAll(".banner-text")).map((e) => e.textContent)).toEqual(["broken"]);
    vi.useRealTimers();
  });
});
