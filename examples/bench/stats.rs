//! Rounding and distributions of the figures.

use std::time::Duration;

use serde_json::{Value, json};

pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn distribution(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    json!({
        "count": v.len(),
        "p50": round1(percentile(&v, 0.50)),
        "p90": round1(percentile(&v, 0.90)),
        "p99": round1(percentile(&v, 0.99)),
        "max": round1(v.last().copied().unwrap_or(f64::NAN)),
    })
}
