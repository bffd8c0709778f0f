//! Engine cost curves: the measured time of one target pass over `n` new tokens and of one draft
//! level over `k` nodes, with warm-up, medians and spread.
//!
//! The engine supplies the measurement through [`PassTimer`]; this module only decides what to time,
//! how often, and how to summarise it, so it is tested here with a deterministic timer.

use serde::{Deserialize, Serialize};

use crate::{HwError, Spread, TimerError};

/// Times single passes of the real engine.
pub trait PassTimer {
    /// Seconds taken by one target verification pass over `n` new tokens, in the placement the engine
    /// will use for generation (streamed weights, resident layers, op-offload threshold).
    fn target_pass(&mut self, n: usize) -> Result<f64, TimerError>;
    /// Seconds taken by one draft pass over a level of `k` tree nodes.
    fn draft_level(&mut self, k: usize) -> Result<f64, TimerError>;
    /// The target and draft being timed, recorded in the profile next to their curves.
    fn models(&self) -> Option<(crate::ModelRef, crate::ModelRef)> {
        None
    }
    /// The placement the target runs in (see [`crate::model::recommend_placement`]), recorded in the
    /// profile as the chosen op-offload threshold and resident layers.
    fn placement(&self) -> Option<crate::LayerSplit> {
        None
    }
    /// Times a whole grid in one request, for engines where starting a request costs more than a
    /// pass (a worker process that builds its contexts per request). Each point is `repeats` timed
    /// passes after the engine's own warm-up. `progress` gets the fraction done, 0..=1.
    ///
    /// `None` (the default) means the engine times pass by pass through [`PassTimer::target_pass`]
    /// and [`PassTimer::draft_level`].
    fn time_grid(
        &mut self,
        _grid: &CurveGrid,
        _repeats: usize,
        _progress: &mut dyn FnMut(f64),
    ) -> Option<Result<GridTimes, TimerError>> {
        None
    }
}

/// A grid timed in one request by [`PassTimer::time_grid`].
#[derive(Debug, Clone, PartialEq)]
pub struct GridTimes {
    pub target: Vec<CurvePoint>,
    pub draft: Vec<CurvePoint>,
    /// Untimed passes the engine ran before each point.
    pub warmup: usize,
}

/// The budgets to time: target tree sizes `n` and draft level widths `k`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurveGrid {
    target: Vec<usize>,
    draft: Vec<usize>,
}

impl CurveGrid {
    /// A grid of the given points, sorted and deduplicated.
    ///
    /// Fails with [`HwError::InvalidSetting`] when either list is empty or contains 0.
    pub fn new(mut target: Vec<usize>, mut draft: Vec<usize>) -> Result<CurveGrid, HwError> {
        for (what, list) in [("target", &mut target), ("draft", &mut draft)] {
            if list.is_empty() {
                return Err(HwError::InvalidSetting(format!("the {what} grid is empty")));
            }
            if list.contains(&0) {
                return Err(HwError::InvalidSetting(format!(
                    "the {what} grid contains 0 (a pass needs at least one token)"
                )));
            }
            list.sort_unstable();
            list.dedup();
        }
        Ok(CurveGrid { target, draft })
    }

    /// Powers of two up to `max_target` (always including `max_target`) for the target and up to
    /// `max_draft` for the draft, plus `op_offload_min_batch - 1` and `op_offload_min_batch`, where
    /// llama.cpp switches from the CPU to the GPU and the curve jumps. `quick` keeps every other power.
    ///
    /// Fails with [`HwError::InvalidSetting`] when a maximum is 0.
    pub fn standard(
        max_target: usize,
        max_draft: usize,
        op_offload_min_batch: Option<usize>,
        quick: bool,
    ) -> Result<CurveGrid, HwError> {
        let powers = |max: usize| {
            let mut v: Vec<usize> = std::iter::successors(Some(1usize), |x| x.checked_mul(2))
                .take_while(|x| *x <= max)
                .enumerate()
                .filter(|(i, _)| !quick || i % 2 == 0)
                .map(|(_, x)| x)
                .collect();
            v.push(max);
            v
        };
        let mut target = powers(max_target);
        if let Some(t) = op_offload_min_batch {
            target.extend(
                [t.saturating_sub(1), t]
                    .into_iter()
                    .filter(|x| (1..=max_target).contains(x)),
            );
        }
        CurveGrid::new(target, powers(max_draft))
    }

    /// Adds every target size from 1 to `n` (within the grid's largest). Where a pass grows with
    /// its size (the CPU path), llama.cpp's matrix kernels change with the batch (tiles of 4, 8
    /// and 16 columns, the split between threads), so the curve between two powers of two is not
    /// a line: on a 2-core AMD EPYC (`zen4`) a Qwen2.5 1.5B Q4_K_M pass took 286 ms over 16
    /// tokens, 366 ms over 15 and 298 ms over 8. Every size the planner may choose is then timed.
    pub fn with_every_target_up_to(mut self, n: usize) -> CurveGrid {
        let max = self.target.last().copied().unwrap_or(1);
        self.target.extend(1..=n.min(max));
        self.target.sort_unstable();
        self.target.dedup();
        self
    }

    pub fn target(&self) -> &[usize] {
        &self.target
    }

    pub fn draft(&self) -> &[usize] {
        &self.draft
    }
}

/// The timing of one grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub n: usize,
    /// Seconds per pass.
    pub seconds: Spread,
}

/// The target's passes timed both ways llama.cpp can run layers that live in host memory: copied
/// to the GPU for the pass (`gpu`, op offload) and run by the CPU (`cpu`). Plain decoding and small
/// trees can be faster on the CPU; copying pays from some batch on. Where the curves cross is the
/// op-offload threshold ([`OffloadPaths::threshold`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadPaths {
    pub gpu: CostCurve,
    pub cpu: CostCurve,
}

impl OffloadPaths {
    /// The smallest timed batch at which the GPU path is no slower than the CPU path: llama.cpp's
    /// `GGML_OP_OFFLOAD_MIN_BATCH` for this target and placement. Batches between grid points are
    /// given to the CPU (the GPU path was measured faster only from here). When the CPU path wins
    /// at every batch timed on both, one more than the largest of them.
    pub fn threshold(&self) -> u32 {
        let gpu = self.gpu.medians();
        let cpu = self.cpu.medians();
        let both: Vec<(usize, f64, f64)> = cpu
            .iter()
            .filter_map(|&(n, c)| gpu.iter().find(|(m, _)| *m == n).map(|&(_, g)| (n, g, c)))
            .collect();
        let crossing = both.iter().find(|(_, g, c)| g <= c).map(|(n, _, _)| *n);
        let n = crossing.unwrap_or_else(|| both.iter().map(|(n, _, _)| n + 1).max().unwrap_or(1));
        u32::try_from(n.max(1)).unwrap_or(u32::MAX)
    }

    /// The pass times generation will see with [`OffloadPaths::threshold`]: the CPU path below it,
    /// the GPU path from it (at every `n` of the GPU curve, and of the CPU curve below the
    /// threshold).
    pub fn merged(&self) -> CostCurve {
        let t = self.threshold() as usize;
        let mut points: Vec<CurvePoint> = self
            .cpu
            .points
            .iter()
            .filter(|p| p.n < t)
            .cloned()
            .chain(self.gpu.points.iter().filter(|p| p.n >= t).cloned())
            .collect();
        points.sort_by_key(|p| p.n);
        points.dedup_by_key(|p| p.n);
        CostCurve { points }
    }
}

/// Pass time as a function of the number of tokens, measured at grid points (ascending `n`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostCurve {
    pub points: Vec<CurvePoint>,
}

impl CostCurve {
    /// The (n, median seconds) pairs, the shape the planner takes.
    pub fn medians(&self) -> Vec<(usize, f64)> {
        self.points
            .iter()
            .map(|p| (p.n, p.seconds.median))
            .collect()
    }

    /// The median pass time at `n`, interpolated; see [`interpolate`]. `None` for an empty curve.
    pub fn at(&self, n: usize) -> Option<f64> {
        interpolate(&self.medians(), n)
    }
}

/// Piecewise-linear interpolation of ascending `(n, seconds)` points at `n`.
///
/// Below the first point the first value is used (a pass never gets cheaper than the smallest one
/// measured); above the last point the last segment's slope is extended, never decreasing.
/// `None` when `points` is empty.
pub fn interpolate(points: &[(usize, f64)], n: usize) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    if n <= first.0 {
        return Some(first.1);
    }
    if n >= last.0 {
        if points.len() < 2 {
            return Some(last.1);
        }
        let prev = points[points.len() - 2];
        let slope = ((last.1 - prev.1) / (last.0 - prev.0) as f64).max(0.0);
        return Some(last.1 + slope * (n - last.0) as f64);
    }
    let i = points.partition_point(|p| p.0 <= n);
    let (a, b) = (points[i - 1], points[i]);
    if a.0 == n {
        return Some(a.1);
    }
    let frac = (n - a.0) as f64 / (b.0 - a.0) as f64;
    Some(a.1 + (b.1 - a.1) * frac)
}

/// Target and draft curves measured in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredCurves {
    pub target: CostCurve,
    pub draft: CostCurve,
    pub warmup: usize,
    pub repeats: usize,
}

/// Which curve a progress step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurveKind {
    Target,
    Draft,
}

/// One finished timed (or warm-up) pass, for progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurveStep {
    pub kind: CurveKind,
    pub n: usize,
    /// Passes done so far over the whole measurement, and the total.
    pub done: usize,
    pub total: usize,
}

/// Times every grid point: `warmup` untimed passes then `repeats` timed ones, keeping the median and
/// spread. Draft levels are timed first (they are cheap), then target passes from small to large.
/// An engine that times whole grids ([`PassTimer::time_grid`]) is asked once instead, with its own
/// warm-up; its points are checked like single passes.
///
/// Fails with [`HwError::InvalidSetting`] for zero repeats, [`HwError::Timer`] when the engine fails,
/// and [`HwError::BadTiming`] when it reports a time that is not positive and finite (or, for a
/// grid, a point missing or out of order).
pub fn measure_curves(
    timer: &mut dyn PassTimer,
    grid: &CurveGrid,
    repeats: usize,
    warmup: usize,
    progress: &mut dyn FnMut(CurveStep),
) -> Result<MeasuredCurves, HwError> {
    if repeats == 0 {
        return Err(HwError::InvalidSetting(
            "cost curves need at least one repeat".into(),
        ));
    }
    let points = grid.target.len() + grid.draft.len();
    let mut on_fraction = |fraction: f64| {
        let done = ((fraction.clamp(0.0, 1.0) * points as f64).round() as usize).min(points);
        let (kind, n) = match done.checked_sub(1) {
            Some(i) if i < grid.target.len() => (CurveKind::Target, grid.target[i]),
            Some(i) => (CurveKind::Draft, grid.draft[i - grid.target.len()]),
            None => (CurveKind::Target, grid.target[0]),
        };
        progress(CurveStep {
            kind,
            n,
            done,
            total: points,
        });
    };
    if let Some(result) = timer.time_grid(grid, repeats, &mut on_fraction) {
        let times = result.map_err(|source| HwError::Timer {
            what: "grid",
            n: grid.target.last().copied().unwrap_or(0),
            source,
        })?;
        let target = checked_grid_curve("target", &grid.target, times.target)?;
        let draft = checked_grid_curve("draft", &grid.draft, times.draft)?;
        return Ok(MeasuredCurves {
            target,
            draft,
            warmup: times.warmup,
            repeats,
        });
    }
    let per_point = repeats + warmup;
    let total = per_point * (grid.draft.len() + grid.target.len());
    let mut done = 0;
    let mut curve = |kind: CurveKind, ns: &[usize], timer: &mut dyn PassTimer| {
        let mut points = Vec::with_capacity(ns.len());
        for &n in ns {
            let mut samples = Vec::with_capacity(repeats);
            for i in 0..per_point {
                let (what, result) = match kind {
                    CurveKind::Target => ("target", timer.target_pass(n)),
                    CurveKind::Draft => ("draft", timer.draft_level(n)),
                };
                let seconds = result.map_err(|source| HwError::Timer { what, n, source })?;
                if !(seconds.is_finite() && seconds > 0.0) {
                    return Err(HwError::BadTiming { what, n, seconds });
                }
                if i >= warmup {
                    samples.push(seconds);
                }
                done += 1;
                progress(CurveStep {
                    kind,
                    n,
                    done,
                    total,
                });
            }
            let seconds = Spread::from_samples(&samples).ok_or(HwError::BadTiming {
                what: "summary",
                n,
                seconds: f64::NAN,
            })?;
            points.push(CurvePoint { n, seconds });
        }
        Ok(CostCurve { points })
    };
    let draft = curve(CurveKind::Draft, &grid.draft, timer)?;
    let target = curve(CurveKind::Target, &grid.target, timer)?;
    Ok(MeasuredCurves {
        target,
        draft,
        warmup,
        repeats,
    })
}

/// Checks that a grid timed in one request has exactly the asked points with positive finite times.
fn checked_grid_curve(
    what: &'static str,
    asked: &[usize],
    points: Vec<CurvePoint>,
) -> Result<CostCurve, HwError> {
    if points.len() != asked.len() {
        return Err(HwError::BadTiming {
            what,
            n: asked.get(points.len()).copied().unwrap_or(0),
            seconds: f64::NAN,
        });
    }
    for (p, &n) in points.iter().zip(asked) {
        let s = &p.seconds;
        let bad = [s.median, s.min, s.max]
            .into_iter()
            .find(|x| !(x.is_finite() && *x > 0.0));
        if p.n != n || bad.is_some() {
            return Err(HwError::BadTiming {
                what,
                n,
                seconds: bad.unwrap_or(f64::NAN),
            });
        }
    }
    Ok(CostCurve { points })
}

/// The smallest measured `n` at which the GPU-path curve is no slower than the CPU-path curve, for
/// choosing llama.cpp's op-offload threshold from two measured curves of the same target (one with
/// offload forced off, one forced on). Both are interpolated at every `n` from 1 to the largest grid
/// point of either. `None` when the GPU path never wins in that range or a curve is empty.
pub fn crossover(cpu: &CostCurve, gpu: &CostCurve) -> Option<usize> {
    let (c, g) = (cpu.medians(), gpu.medians());
    let max = c.last()?.0.max(g.last()?.0);
    (1..=max).find(|&n| interpolate(&g, n) <= interpolate(&c, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(usize, f64)]) -> CostCurve {
        CostCurve {
            points: points
                .iter()
                .map(|&(n, s)| CurvePoint {
                    n,
                    seconds: Spread::exact(s),
                })
                .collect(),
        }
    }

    /// The H200 run's `layers:45` curves (70B shapes, q4_0): the CPU path wins below 8 tokens.
    #[test]
    fn the_offload_threshold_is_where_the_measured_paths_cross() {
        let paths = OffloadPaths {
            gpu: curve(&[
                (1, 0.840),
                (2, 1.107),
                (4, 1.105),
                (8, 0.945),
                (16, 0.723),
                (32, 0.402),
                (64, 0.415),
                (256, 0.551),
            ]),
            cpu: curve(&[(1, 0.377), (2, 0.515), (4, 0.726), (8, 1.533), (16, 2.740)]),
        };
        assert_eq!(paths.threshold(), 8);
        let merged = paths.merged().medians();
        assert_eq!(
            merged,
            vec![
                (1, 0.377),
                (2, 0.515),
                (4, 0.726),
                (8, 0.945),
                (16, 0.723),
                (32, 0.402),
                (64, 0.415),
                (256, 0.551)
            ]
        );
    }

    #[test]
    fn a_cpu_path_that_always_wins_puts_the_threshold_past_the_timed_batches() {
        let paths = OffloadPaths {
            gpu: curve(&[(1, 2.0), (2, 2.0), (4, 2.0), (64, 2.1)]),
            cpu: curve(&[(1, 0.1), (2, 0.2), (4, 0.4)]),
        };
        assert_eq!(paths.threshold(), 5);
        assert_eq!(
            paths.merged().medians(),
            vec![(1, 0.1), (2, 0.2), (4, 0.4), (64, 2.1)]
        );
        let gpu_always = OffloadPaths {
            gpu: curve(&[(1, 0.1), (2, 0.1)]),
            cpu: curve(&[(1, 0.3), (2, 0.5)]),
        };
        assert_eq!(gpu_always.threshold(), 1);
    }

    #[test]
    fn interpolation_between_and_beyond_points() {
        let pts = [(1, 1.0), (4, 2.5), (8, 2.5), (16, 6.5)];
        assert_eq!(interpolate(&pts, 1), Some(1.0));
        assert_eq!(interpolate(&pts, 0), Some(1.0));
        assert_eq!(interpolate(&pts, 2), Some(1.5));
        assert_eq!(interpolate(&pts, 4), Some(2.5));
        assert_eq!(interpolate(&pts, 6), Some(2.5));
        assert_eq!(interpolate(&pts, 12), Some(4.5));
        // Beyond the last point the last slope (0.5 s per token) continues.
        assert_eq!(interpolate(&pts, 20), Some(8.5));
        assert_eq!(interpolate(&[(2, 3.0)], 100), Some(3.0));
        assert_eq!(interpolate(&[], 1), None);
        // A falling last segment is not extended downwards.
        assert_eq!(interpolate(&[(1, 2.0), (2, 1.0)], 10), Some(1.0));
    }

    #[test]
    fn standard_grid_includes_threshold_and_maximum() {
        let g = CurveGrid::standard(100, 8, Some(32), false).unwrap();
        assert_eq!(g.target(), &[1, 2, 4, 8, 16, 31, 32, 64, 100]);
        assert_eq!(g.draft(), &[1, 2, 4, 8]);
        let q = CurveGrid::standard(64, 8, None, true).unwrap();
        assert_eq!(q.target(), &[1, 4, 16, 64]);
        assert_eq!(q.draft(), &[1, 4, 8]);
        assert!(CurveGrid::new(vec![], vec![1]).is_err());
        assert!(CurveGrid::new(vec![0, 1], vec![1]).is_err());
        let dense = CurveGrid::standard(64, 8, None, false)
            .unwrap()
            .with_every_target_up_to(16);
        assert_eq!(dense.target()[..16], (1..=16).collect::<Vec<_>>()[..]);
        assert_eq!(dense.target()[16..], [32, 64]);
        let capped = CurveGrid::standard(8, 8, None, false)
            .unwrap()
            .with_every_target_up_to(16);
        assert_eq!(capped.target(), (1..=8).collect::<Vec<_>>());
    }

    /// A deterministic engine: target pass = 1 s + 0.01 s per token, draft = 0.001 s per node, with a
    /// slow first call (a cold cache) that warm-up must discard, and a little alternating jitter.
    struct Scripted {
        calls: usize,
    }

    impl PassTimer for Scripted {
        fn target_pass(&mut self, n: usize) -> Result<f64, TimerError> {
            self.calls += 1;
            let cold = if self.calls == 1 { 10.0 } else { 0.0 };
            let jitter = if self.calls & 1 == 0 { 0.001 } else { -0.001 };
            Ok(1.0 + 0.01 * n as f64 + cold + jitter)
        }
        fn draft_level(&mut self, k: usize) -> Result<f64, TimerError> {
            self.calls += 1;
            if k > 64 {
                return Err("draft context too small".into());
            }
            Ok(0.001 * k as f64 + if self.calls == 1 { 5.0 } else { 0.0 })
        }
    }

    #[test]
    fn warmup_medians_and_progress() {
        let grid = CurveGrid::new(vec![1, 10, 100], vec![1, 4]).unwrap();
        let mut timer = Scripted { calls: 0 };
        let mut steps = Vec::new();
        let curves = measure_curves(&mut timer, &grid, 3, 1, &mut |s| steps.push(s)).unwrap();
        assert_eq!(steps.len(), 4 * 5);
        assert_eq!(steps.last().unwrap().done, 20);
        assert_eq!(steps[0].kind, CurveKind::Draft);
        // The cold first draft call is discarded by warm-up.
        assert!((curves.draft.points[0].seconds.median - 0.001).abs() < 1e-12);
        let t = &curves.target.points[1];
        assert_eq!(t.n, 10);
        assert!((t.seconds.median - 1.1).abs() < 0.0011);
        assert!(t.seconds.max - t.seconds.min <= 0.0021);
        assert_eq!(t.seconds.samples, 3);
        assert!((curves.target.at(55).unwrap() - 1.55).abs() < 0.002);
    }

    #[test]
    fn engine_failures_and_bad_times_are_reported() {
        let grid = CurveGrid::new(vec![1], vec![128]).unwrap();
        let err = measure_curves(&mut Scripted { calls: 0 }, &grid, 1, 0, &mut |_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                HwError::Timer {
                    what: "draft",
                    n: 128,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("draft context too small"));

        struct Zero;
        impl PassTimer for Zero {
            fn target_pass(&mut self, _: usize) -> Result<f64, TimerError> {
                Ok(0.0)
            }
            fn draft_level(&mut self, _: usize) -> Result<f64, TimerError> {
                Ok(f64::NAN)
            }
        }
        let err = measure_curves(&mut Zero, &grid, 1, 0, &mut |_| {}).unwrap_err();
        assert!(matches!(err, HwError::BadTiming { what: "draft", .. }));
        assert!(measure_curves(&mut Zero, &grid, 0, 0, &mut |_| {}).is_err());
    }

    /// An engine that answers whole grids: target = 0.1 s per token, draft = 0.01 s per node.
    struct Batched {
        drop_last: bool,
    }

    impl PassTimer for Batched {
        fn target_pass(&mut self, _: usize) -> Result<f64, TimerError> {
            Err("pass by pass is not used".into())
        }
        fn draft_level(&mut self, _: usize) -> Result<f64, TimerError> {
            Err("pass by pass is not used".into())
        }
        fn time_grid(
            &mut self,
            grid: &CurveGrid,
            repeats: usize,
            progress: &mut dyn FnMut(f64),
        ) -> Option<Result<GridTimes, TimerError>> {
            let point = |n: usize, per: f64| CurvePoint {
                n,
                seconds: Spread::from_range(
                    per * n as f64,
                    per * n as f64 * 0.9,
                    per * n as f64 * 1.1,
                    repeats,
                ),
            };
            let mut target: Vec<_> = grid.target().iter().map(|&n| point(n, 0.1)).collect();
            if self.drop_last {
                target.pop();
            }
            progress(0.5);
            progress(1.0);
            Some(Ok(GridTimes {
                target,
                draft: grid.draft().iter().map(|&k| point(k, 0.01)).collect(),
                warmup: 1,
            }))
        }
    }

    #[test]
    fn whole_grids_are_checked_and_reported() {
        let grid = CurveGrid::new(vec![1, 2, 4], vec![1, 8]).unwrap();
        let mut steps = Vec::new();
        let curves = measure_curves(&mut Batched { drop_last: false }, &grid, 3, 0, &mut |s| {
            steps.push(s)
        })
        .unwrap();
        assert_eq!((curves.warmup, curves.repeats), (1, 3));
        assert_eq!(curves.target.medians(), vec![(1, 0.1), (2, 0.2), (4, 0.4)]);
        assert_eq!(curves.draft.points[1].seconds.samples, 3);
        assert_eq!(steps.last().map(|s| (s.done, s.total)), Some((5, 5)));
        let err =
            measure_curves(&mut Batched { drop_last: true }, &grid, 3, 0, &mut |_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                HwError::BadTiming {
                    what: "target",
                    n: 4,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn crossover_of_cpu_and_gpu_curves() {
        let curve = |pts: &[(usize, f64)]| CostCurve {
            points: pts
                .iter()
                .map(|&(n, s)| CurvePoint {
                    n,
                    seconds: Spread::exact(s),
                })
                .collect(),
        };
        // CPU: 0.1 s per token; GPU: flat 1.7 s. They cross at n = 17.
        let cpu = curve(&[(1, 0.1), (64, 6.4)]);
        let gpu = curve(&[(1, 1.7), (64, 1.7)]);
        assert_eq!(crossover(&cpu, &gpu), Some(17));
        assert_eq!(crossover(&gpu, &cpu), Some(1));
        let never = curve(&[(1, 100.0), (64, 100.0)]);
        assert_eq!(crossover(&cpu, &never), None);
    }
}
