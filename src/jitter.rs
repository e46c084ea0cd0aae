//! Random spread for delays, so that many objects or replicas never act in lock-step.

use std::time::Duration;

use rand::Rng;

/// `d` randomly scaled by a factor in [1 - spread, 1 + spread].
pub fn jitter(d: Duration, spread: f64) -> Duration {
    let f = rand::rng().random_range((1.0 - spread)..=(1.0 + spread));
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_the_spread_and_varies() {
        let d = Duration::from_secs(10);
        let samples: Vec<Duration> = (0..200).map(|_| jitter(d, 0.1)).collect();
        for s in &samples {
            assert!(
                *s >= Duration::from_secs(9) && *s <= Duration::from_secs(11),
                "{s:?}"
            );
        }
        assert!(
            samples.iter().any(|s| *s != samples[0]),
            "jitter never varied"
        );
    }
}
