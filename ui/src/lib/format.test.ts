import { formatBytes, formatParams, formatRate, formatSeconds, relativeTime, relativeTimeOf } from "./format";

describe("format", () => {
  it("formats sizes, parameters, rates and times", () => {
    expect(formatBytes(98_362_432)).toBe("98.4 MB");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(null)).toBe("—");
    expect(formatParams(134_515_008)).toBe("135M");
    expect(formatParams(70_000_000_000)).toBe("70B");
    expect(formatRate(12.345)).toBe("12.3 tok/s");
    expect(formatRate(0)).toBe("— tok/s");
    expect(formatSeconds(0.013)).toBe("13.0 ms");
    expect(formatSeconds(0.0005)).toBe("500 µs");
    expect(relativeTime(1000, 1000 + 5 * 60_000)).toBe("5 min ago");
  });

  it("reads RFC 3339 timestamps", () => {
    const at = Date.parse("2025-06-01T12:00:00Z");
    expect(relativeTimeOf("2025-06-01T12:00:00Z", at + 2 * 3600_000)).toBe("2 h ago");
    expect(relativeTimeOf("2025-06-01T12:00:00.123456Z", at + 30_000)).toBe("just now");
    expect(relativeTimeOf("not a date", at)).toBe("not a date");
  });
});
