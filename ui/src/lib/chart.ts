// Small chart helpers: scales, tick values and SVG path data, drawn by charts.ts.

export interface Scale {
  (value: number): number;
  domain: [number, number];
  range: [number, number];
  ticks(count?: number): number[];
}

/** "Nice" step for `span / count`: 1, 2 or 5 times a power of ten. */
export function niceStep(span: number, count: number): number {
  if (!(span > 0) || !(count > 0)) return 1;
  const raw = span / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

/** Domain of `values` widened to nice steps and including `includeZero` when asked. */
export function extent(values: readonly number[], includeZero = true): [number, number] {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (includeZero) {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
  }
  if (lo === hi) {
    hi = lo === 0 ? 1 : lo + Math.abs(lo) * 0.5;
  }
  const step = niceStep(hi - lo, 5);
  return [clean(Math.floor(lo / step) * step), clean(Math.ceil(hi / step) * step)];
}

export function linearScale(domain: [number, number], range: [number, number]): Scale {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  const scale = ((v: number) => r0 + ((v - d0) / span) * (r1 - r0)) as Scale;
  scale.domain = domain;
  scale.range = range;
  scale.ticks = (count = 5) => {
    const step = niceStep(d1 - d0, count);
    const out: number[] = [];
    for (let v = Math.ceil(d0 / step) * step; v <= d1 + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  };
  return scale;
}

/** A log₂ scale, for budgets like 1, 2, 4 … 1024. Values ≤ 0 are clamped to the domain start. */
export function log2Scale(domain: [number, number], range: [number, number]): Scale {
  const lo = Math.log2(Math.max(domain[0], 1e-12));
  const hi = Math.log2(Math.max(domain[1], domain[0] * 2, 1e-12));
  const [r0, r1] = range;
  const scale = ((v: number) => {
    const l = Math.log2(Math.max(v, domain[0], 1e-12));
    return r0 + ((l - lo) / (hi - lo || 1)) * (r1 - r0);
  }) as Scale;
  scale.domain = domain;
  scale.range = range;
  scale.ticks = () => {
    const out: number[] = [];
    for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) out.push(Math.pow(2, e));
    return out;
  };
  return scale;
}

/** SVG path data through the points, skipping non-finite ones. */
export function linePath(points: readonly [number, number][]): string {
  let d = "";
  let pen = false;
  for (const [x, y] of points) {
    if (!Number.isFinite(x) || !Number.isFinite(y)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${round(x)},${round(y)}`;
    pen = true;
  }
  return d;
}

/** Short tick label: 1.5k, 250m, 0.25. */
export function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e3) return `${trim(v / 1e3)}k`;
  return trim(v);
}

function trim(v: number): string {
  return Number(v.toPrecision(3)).toString();
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}

/** Removes floating-point noise such as 0.30000000000000004. */
function clean(v: number): number {
  return Number(v.toPrecision(12));
}
