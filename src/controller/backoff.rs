//! When to come back to an object: polling while a deployment rolls out, jittered resyncs once
//! it is ready, and per-object exponential backoff with jitter after errors (honouring
//! Retry-After). Never a fixed delay for every error: that is a hot loop or a stall.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use tracing::warn;

use super::{Config, Context, Error};
use crate::crd::PipecatAgent;
use crate::jitter::jitter;

/// When to come back in the change lane after a successful pass: `ready`, never (periodic
/// refreshes are the background lane's, [`super::lanes`]); `failed` (the deployment failed), a
/// slow poll; otherwise the `polls`-th poll of a rolling-out deployment.
pub fn after_success(cfg: &Config, polls: u32, ready: bool, failed: bool) -> Option<Duration> {
    if ready {
        None
    } else if failed {
        Some(jitter(cfg.max_poll_interval, 0.1))
    } else {
        Some(jitter(
            poll_delay(cfg.poll_interval, cfg.max_poll_interval, polls),
            0.1,
        ))
    }
}

/// Poll interval after `polls` polls: grows by half each time, up to `max`.
pub fn poll_delay(base: Duration, max: Duration, polls: u32) -> Duration {
    let factor = 1.5f64.powi(polls.saturating_sub(1).min(30) as i32);
    base.mul_f64(factor).min(max)
}

/// Exponential backoff: base * 2^(failures-1), capped, with +-20% jitter; errors that wait for
/// the user (`needs_user_action`) start at the slow end; a server's Retry-After is a floor.
/// Both controllers (agents and secret sets) back off with it.
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

/// The controller runtime's error hook.
pub fn error_policy(obj: Arc<PipecatAgent>, err: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(retry_delay(&obj, err, &ctx))
}

/// Counts a failed pass and returns when to retry it (logged).
pub fn retry_delay(obj: &PipecatAgent, err: &Error, ctx: &Context) -> Duration {
    let failures = ctx.objects.failed(obj);
    let delay = error_delay(
        &ctx.config,
        failures,
        err.needs_user_action(),
        err.retry_after(),
    );
    warn!(
        agent = %obj.agent_name(),
        namespace = obj.metadata.namespace.as_deref().unwrap_or_default(),
        reason = err.reason(),
        error = %err,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    delay
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud;

    fn transient() -> Error {
        Error::Cloud {
            action: "get",
            agent: "a".into(),
            source: cloud::Error::Transient {
                status: Some(503),
                message: "x".into(),
                retry_after: None,
            },
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cfg = Config {
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            ..Config::default()
        };
        let within = |d: Duration, s: f64| {
            let secs = d.as_secs_f64();
            secs >= s * 0.8 - 1e-9 && secs <= s * 1.2 + 1e-9
        };
        for (n, s) in [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
            (6, 32.0),
            (7, 60.0),
            (40, 60.0),
        ] {
            let d = error_delay(&cfg, n, transient().needs_user_action(), None);
            assert!(within(d, s), "failure {n}: {d:?} not ~{s}s");
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let cfg = Config::default();
        let err = Error::Cloud {
            action: "update",
            agent: "a".into(),
            source: cloud::Error::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
            },
        };
        assert!(
            error_delay(&cfg, 1, err.needs_user_action(), err.retry_after())
                >= Duration::from_secs(30)
        );
    }

    #[test]
    fn user_errors_do_not_retry_fast() {
        let cfg = Config::default();
        let err = Error::CredentialsNotFound("missing".into());
        assert!(
            error_delay(&cfg, 1, err.needs_user_action(), err.retry_after())
                >= Duration::from_secs(4)
        );
    }

    #[test]
    fn polling_grows_then_resets_when_ready() {
        let cfg = Config {
            poll_interval: Duration::from_secs(5),
            max_poll_interval: Duration::from_secs(60),
            ..Config::default()
        };
        assert_eq!(
            poll_delay(cfg.poll_interval, cfg.max_poll_interval, 1),
            Duration::from_secs(5)
        );
        assert_eq!(
            poll_delay(cfg.poll_interval, cfg.max_poll_interval, 2),
            Duration::from_millis(7500)
        );
        assert_eq!(
            poll_delay(cfg.poll_interval, cfg.max_poll_interval, 50),
            Duration::from_secs(60)
        );

        assert_eq!(
            after_success(&cfg, 0, true, false),
            None,
            "a ready agent is the background lane's"
        );
        let d = after_success(&cfg, 2, false, false).expect("polled");
        assert!(
            d >= Duration::from_millis(6750) && d <= Duration::from_millis(8250),
            "the second poll of a roll-out: {d:?}"
        );
        let d = after_success(&cfg, 1, false, true).expect("polled");
        assert!(
            d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
            "a failed deployment is polled slowly: {d:?}"
        );
    }
}
