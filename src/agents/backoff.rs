//! When to come back to an agent: polling while its deployment rolls out, the background lane
//! once it is ready, and the runtime's per-object backoff after errors
//! ([`crate::runtime::backoff`]).

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use tracing::warn;

use super::context::Context;
use super::error::Error;
use crate::crd::PipecatAgent;
use crate::jitter::jitter;
use crate::runtime::Config;
use crate::runtime::backoff::{error_delay, poll_delay};

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
