import { extent, linePath, linearScale, log2Scale, niceStep, tickLabel } from "./chart";

describe("chart scales", () => {
  it("picks nice steps", () => {
    expect(niceStep(10, 5)).toBe(2);
    expect(niceStep(0.9, 5)).toBeCloseTo(0.2);
    expect(niceStep(0, 5)).toBe(1);
  });

  it("widens extents to nice bounds and handles degenerate input", () => {
    expect(extent([0.013, 0.26])).toEqual([0, 0.3]);
    expect(extent([])).toEqual([0, 1]);
    expect(extent([5, 5], false)).toEqual([5, 7.5]);
    expect(extent([NaN, 2])).toEqual([0, 2]);
  });

  it("maps linearly and inverts the y range", () => {
    const y = linearScale([0, 10], [100, 0]);
    expect(y(0)).toBe(100);
    expect(y(5)).toBe(50);
    expect(y.ticks(5)).toEqual([0, 2, 4, 6, 8, 10]);
  });

  it("maps budgets on a log2 axis", () => {
    const x = log2Scale([1, 1024], [0, 100]);
    expect(x(1)).toBe(0);
    expect(x(32)).toBe(50);
    expect(x(1024)).toBe(100);
    expect(x(0)).toBe(0);
    expect(x.ticks()).toHaveLength(11);
  });

  it("draws paths and skips gaps", () => {
    expect(linePath([[0, 0], [1.234, 2], [NaN, 1], [3, 4]])).toBe("M0,0L1.2,2M3,4");
  });

  it("labels ticks briefly", () => {
    expect(tickLabel(1500)).toBe("1.5k");
    expect(tickLabel(0.25)).toBe("0.25");
    expect(tickLabel(2_000_000)).toBe("2M");
  });
});
