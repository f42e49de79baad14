//! Latency samples reduced to the figures the report gives: min, median, p99, max, and the
//! comparison of two sides (ratio of medians and of p99s, overhead in ms).
use std::time::Duration;

use serde::Serialize;

/// The order statistics of one series, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Stats {
    pub n: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Nearest-rank percentile of sorted values (`p` in 0..=1); 0 for no values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Stats {
    pub fn of_ms(samples: &[f64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)]
        let mean = if s.is_empty() {
            0.0
        } else {
            s.iter().sum::<f64>() / s.len() as f64
        };
        Self {
            n: s.len(),
            min_ms: s.first().copied().unwrap_or_default(),
            p50_ms: percentile(&s, 0.5),
            p99_ms: percentile(&s, 0.99),
            max_ms: s.last().copied().unwrap_or_default(),
            mean_ms: mean,
        }
    }
}

/// One labelled series of latencies: its statistics and the raw samples (kept in the JSON so
/// every figure can be recomputed, and plotted).
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub label: String,
    pub stats: Stats,
    pub samples_ms: Vec<f64>,
}

impl Series {
    pub fn new(label: impl Into<String>, samples: &[Duration]) -> Self {
        let samples_ms: Vec<f64> = samples.iter().copied().map(ms).collect();
        Self {
            label: label.into(),
            stats: Stats::of_ms(&samples_ms),
            samples_ms,
        }
    }
}

/// Side A (ours) against side B (the reference) measured in alternating rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub what: String,
    pub a: String,
    pub b: String,
    /// median(A) / median(B)
    pub ratio_p50: f64,
    pub ratio_p99: f64,
    /// median(A) - median(B), ms
    pub overhead_p50_ms: f64,
    pub overhead_p99_ms: f64,
}

impl Comparison {
    pub fn of(what: impl Into<String>, a: &Series, b: &Series) -> Self {
        let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
        Self {
            what: what.into(),
            a: a.label.clone(),
            b: b.label.clone(),
            ratio_p50: ratio(a.stats.p50_ms, b.stats.p50_ms),
            ratio_p99: ratio(a.stats.p99_ms, b.stats.p99_ms),
            overhead_p50_ms: a.stats.p50_ms - b.stats.p50_ms,
            overhead_p99_ms: a.stats.p99_ms - b.stats.p99_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&v, 0.5) - 50.0).abs() < f64::EPSILON);
        assert!((percentile(&v, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((percentile(&v, 1.0) - 100.0).abs() < f64::EPSILON);
        assert!((percentile(&[7.0], 0.99) - 7.0).abs() < f64::EPSILON);
        assert!(percentile(&[], 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn comparison_of_medians() {
        let a = Series::new("a", &[Duration::from_millis(11); 3]);
        let b = Series::new("b", &[Duration::from_millis(10); 3]);
        let c = Comparison::of("x", &a, &b);
        assert!((c.ratio_p50 - 1.1).abs() < 1e-9, "{c:?}");
        assert!((c.overhead_p50_ms - 1.0).abs() < 1e-9, "{c:?}");
    }
}
