import { beforeEach, describe, expect, it, vi } from "vitest";

import type { LiveCheck, ProfileView } from "../types";

let latest: ProfileView | null = null;

vi.mock("@tauri-apps/api/core", () => ({
  invoke: async (command: string) => {
    if (command === "latest_profile") return latest;
    if (command === "list_models") return [];
    throw { kind: "internal", message: `no handler for ${command}` };
  },
  Channel: class {
    onmessage: (e: unknown) => void = () => {};
  },
}));

const { ProfileScreen } = await import("./profile");

function profile(live: LiveCheck | null): ProfileView {
  return {
    name: "here", created_at: "2026-12-05T06:00:00Z", source: "measured", system: [], bandwidth: [],
    target_model: null, draft_model: null, placement: null, target_curve: [{ n: 1, seconds: 0.05 }], draft_curve: [],
    acceptance: [], plan: "none", budget: 1, depth: 0, tree: [], expected_tokens_per_step: 1,
    predicted_tokens_per_second: 20, plain_tokens_per_second: 20, live,
  };
}

const q = (root: HTMLElement, testid: string) => root.querySelector(`[data-testid="${testid}"]`) as HTMLElement | null;

describe("ProfileScreen", () => {
  beforeEach(() => {
    latest = null;
  });

  it("says when live measurements disagree with the saved profile", async () => {
    latest = profile({
      factor: 2.4, disagrees: true, measured_at: "2026-12-05T06:10:00Z",
      summary: "live measurements disagree with this profile: passes up to 2.40x away",
    });
    const screen = new ProfileScreen();
    await screen.show();
    const note = q(screen.root, "profile-live");
    expect(note?.textContent).toContain("Live measurements disagree with this profile");
    expect(note?.classList.contains("live-disagrees")).toBe(true);
  });

  it("says quietly when they agree, and nothing before any reply planned from it", async () => {
    latest = profile({ factor: 1.05, disagrees: false, measured_at: "2026-12-05T06:10:00Z", summary: "live measurements agree with this profile (within 1.05x)" });
    const screen = new ProfileScreen();
    await screen.show();
    expect(q(screen.root, "profile-live")?.classList.contains("live-disagrees")).toBe(false);
    latest = profile(null);
    await screen.show();
    expect(q(screen.root, "profile-live")).toBeNull();
  });
});
