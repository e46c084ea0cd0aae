//! One pass over a secret set, step by step (the controller runtime's entry point): a resource
//! being deleted goes to [`cleanup`]; any other goes credentials -> observe -> plan -> intent
//! -> execute -> assess (`sync`) -> report (`converge`). When to come back: a poll while
//! Pipecat Cloud provisions, a jittered resync once settled, exponential backoff with jitter
//! per object after errors (Retry-After is a floor).

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{debug, warn};

use super::context::Context;
use super::error::Error;
use super::pass::{Outcome, RemoteStatus, Synced, Target};
use super::{assess, cleanup, credentials, execute, intent, observe, plan, report};
use crate::crd::secret_set::{PipecatSecretSet, PipecatSecretSetStatus};
use crate::jitter::jitter;
use crate::runtime::backoff::{error_delay, poll_delay};

/// Reconciles one resource.
pub async fn reconcile(obj: Arc<PipecatSecretSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        cleanup::release(&obj, &ctx).await
    } else {
        converge(&obj, &ctx).await
    }
}

/// The pass over a live resource ([`sync`]), then its [`report`], and when to come back.
async fn converge(obj: &PipecatSecretSet, ctx: &Context) -> Result<Action, Error> {
    let old = ctx.objects.status(obj);
    let result = sync(obj, ctx, &old).await;
    report::report(obj, ctx, &old, &result).await?;
    let synced = result?;
    ctx.metrics.secret_set_reconciled(synced.outcome.label());
    let settled = matches!(
        synced.outcome,
        Outcome::Nothing | Outcome::NotConverging { .. }
    ) && synced
        .remote
        .as_ref()
        .is_some_and(|r| r.status != RemoteStatus::Pending);
    let polls = ctx.objects.succeeded(obj, settled);
    let delay = if settled {
        jitter(ctx.config.resync_interval, 0.1)
    } else {
        jitter(
            poll_delay(
                ctx.config.poll_interval,
                ctx.config.max_poll_interval,
                polls,
            ),
            0.1,
        )
    };
    debug!(set = %synced.set, namespace = obj.namespace().unwrap_or_default(), action = ?synced.outcome, next_in_ms = delay.as_millis() as u64, "reconciled secret set");
    Ok(Action::requeue(delay))
}

/// The steps of a pass over a live resource, in order, up to its result. `old` is the status
/// it starts from.
async fn sync(
    obj: &PipecatSecretSet,
    ctx: &Context,
    old: &PipecatSecretSetStatus,
) -> Result<Synced, Error> {
    let target = Target::of(obj, old);
    let (loc, key) = credentials::resolve(obj, ctx).await?;
    let observed = observe::observe(obj, ctx, &key, &target.set).await?;
    let plan = plan::decide(obj, old, &target, &observed)?;
    intent::prepare(ctx, obj, old, &loc, &target, &plan).await?;
    let answer = execute::execute(ctx, obj, &key, &target, &observed.values, &plan).await;
    assess::assess(target, observed, old.set_name.is_some(), plan, answer)
}

/// The controller runtime's error hook.
pub fn error_policy(obj: Arc<PipecatSecretSet>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.secret_set_failed(err.reason());
    let failures = ctx.objects.failed(&obj);
    let delay = error_delay(
        &ctx.config,
        failures,
        err.needs_user_action(),
        err.retry_after(),
    );
    warn!(
        set = %obj.set_name(),
        namespace = obj.namespace().unwrap_or_default(),
        reason = err.reason(),
        error = %err,
        retry_in_ms = delay.as_millis() as u64,
        "secret set reconcile failed"
    );
    Action::requeue(delay)
}
