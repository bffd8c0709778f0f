//! Robust summaries of repeated measurements: median and spread.

use serde::{Deserialize, Serialize};

/// The median and spread of repeated measurements of one quantity.
///
/// Quartiles use linear interpolation between order statistics (the common "type 7" rule), so one
/// sample gives `min = q1 = median = q3 = max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub q1: f64,
    pub q3: f64,
    /// How many samples the summary was computed from.
    pub samples: usize,
}

impl Spread {
    /// Summarises `samples`; `None` when there are none or one is not finite.
    pub fn from_samples(samples: &[f64]) -> Option<Spread> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Spread {
            median: quantile(&sorted, 0.5),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            q1: quantile(&sorted, 0.25),
            q3: quantile(&sorted, 0.75),
            samples: sorted.len(),
        })
    }

    /// A summary reported by someone else as median, minimum and maximum of `samples` samples. The
    /// quartiles were not reported, so they are widened to the range (`q1 = min`, `q3 = max`).
    pub fn from_range(median: f64, min: f64, max: f64, samples: usize) -> Spread {
        Spread {
            median,
            min,
            max,
            q1: min,
            q3: max,
            samples,
        }
    }

    /// A summary of a single figure that was not measured here (a reference or spec value).
    pub fn exact(value: f64) -> Spread {
        Spread {
            median: value,
            min: value,
            max: value,
            q1: value,
            q3: value,
            samples: 1,
        }
    }

    /// Interquartile range divided by the median: a unitless measure of noise.
    pub fn relative_iqr(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.q3 - self.q1) / self.median
        }
    }

    /// The same summary with every figure mapped by the increasing function `f`.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Spread {
        Spread {
            median: f(self.median),
            min: f(self.min),
            max: f(self.max),
            q1: f(self.q1),
            q3: f(self.q3),
            samples: self.samples,
        }
    }
}

/// The `q`-quantile of ascending `sorted` (non-empty), interpolating linearly.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_counts() {
        let s = Spread::from_samples(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(
            (s.min, s.q1, s.median, s.q3, s.max),
            (1.0, 2.0, 3.0, 4.0, 5.0)
        );
        let s = Spread::from_samples(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.q1, 1.75);
        assert_eq!(s.q3, 3.25);
        assert_eq!(s.samples, 4);
    }

    #[test]
    fn single_and_invalid() {
        assert_eq!(Spread::from_samples(&[2.0]).unwrap(), Spread::exact(2.0));
        assert!(Spread::from_samples(&[]).is_none());
        assert!(Spread::from_samples(&[1.0, f64::NAN]).is_none());
    }
}
