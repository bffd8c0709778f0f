import { formatBytes, formatParams, formatRate, formatSeconds, relativeTime } from "./format";

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
});
