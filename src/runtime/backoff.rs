//! Delays every kind's passes share: the growing poll of something rolling out, and the
//! per-object exponential backoff with jitter after errors (a server's Retry-After is a floor).
//! Never a fixed delay for every error: that is a hot loop or a stall.

use std::time::Duration;

use super::Config;
use crate::jitter::jitter;

/// Poll interval after `polls` polls: grows by half each time, up to `max`.
pub fn poll_delay(base: Duration, max: Duration, polls: u32) -> Duration {
    let factor = 1.5f64.powi(polls.saturating_sub(1).min(30) as i32);
    base.mul_f64(factor).min(max)
}

/// Exponential backoff: base * 2^(failures-1), capped, with +-20% jitter; errors that wait for
/// the user (`needs_user_action`) start at the slow end; a server's Retry-After is a floor.
pub fn error_delay(
    cfg: &Config,
    failures: u32,
    needs_user_action: bool,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let mut delay = cfg
        .backoff_base
        .saturating_mul(1u32 << exp)
        .min(cfg.backoff_cap);
    if needs_user_action {
        // Still retried (a Secret may appear, a key may be fixed), but without storms.
        delay = delay.max(cfg.backoff_base * 5).min(cfg.backoff_cap);
    }
    let delay = jitter(delay, 0.2);
    match retry_after {
        Some(ra) => delay.max(ra),
        None => delay,
    }
}
