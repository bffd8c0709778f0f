import { defineConfig } from "vitest/config";

// The desktop app loads the built files through Tauri's custom protocol; no dev server is needed.
export default defineConfig({
  clearScreen: false,
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "safari15",
    // One CSS file and module scripts only: the CSP forbids inline scripts.
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1500,
  },
  test: {
    environment: "jsdom",
    globals: true,
    include: ["src/**/*.test.ts"],
  },
});
