//! One reconcile pass: a resource being deleted goes to [`cleanup`](super::cleanup); any other
//! goes credentials -> observe -> plan -> apply ([`apply::sync`]) -> status -> events. Metrics
//! and logs read the pass's [`Outcome`]. The same pass runs in either lane
//! ([`super::lanes`]): [`reconcile`] is the controller runtime's entry point (changes),
//! [`refresh`] the background pacer's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{debug, info};

use super::outcome::{OrphanReason, Outcome};
use super::plan::UpdateReason;
use super::{Context, Error, apply, backoff, cleanup, events, lanes, status};
use crate::cloud::{self, Lane};
use crate::crd::PipecatAgent;

/// The result of a successful pass.
struct Pass {
    /// When to come back in the change lane (`None`: on the next change, or in the background
    /// lane for a ready agent).
    next: Option<Duration>,
    /// What was done (`None`: nothing to do for a resource already released).
    outcome: Option<Outcome>,
    /// The agent's readiness (`None` once the resource is being deleted).
    ready: Option<bool>,
    /// True when its deployment failed.
    failed: bool,
}

/// Reconciles one resource in the change lane: after any refresh under way for it, and with
/// every Pipecat Cloud call ahead of background work; a follow-up (a roll-out poll, an error
/// retry: [`lanes::follow_up`]) reads after changes. A ready agent is left to the background
/// lane (no requeue).
pub async fn reconcile(obj: Arc<PipecatAgent>, ctx: Arc<Context>) -> Result<Action, Error> {
    let mut held = ctx.busy.enter(&obj).await;
    // Decided once the object is held: a refresh that ran meanwhile may have moved the status.
    let next = if lanes::follow_up(&obj, Some(&ctx.objects.status(&obj))) {
        // Under a budget a follow-up may wait for tokens: it holds at most its share of the
        // controller's slots, so that changes always find one.
        let limited = ctx.cloud.background_rate().is_some();
        let cap = lanes::follow_up_slots(ctx.config.concurrency);
        let slot = ctx.busy.follow_up(cap);
        if limited && slot.is_none() {
            debug!(agent = %obj.agent_name(), "follow-up deferred: its slots are taken");
            return Ok(Action::requeue(ctx.config.poll_interval));
        }
        let promotion = held.lower(Lane::FollowUp, &obj);
        let _pass = ctx.cloud.pass(Lane::FollowUp);
        cloud::in_lane(promotion, pass(&obj, &ctx)).await
    } else {
        let _pass = ctx.cloud.pass(Lane::Change);
        pass(&obj, &ctx).await
    };
    drop(held);
    next.map(|next| match next {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    })
}

/// Refreshes one ready resource (the background lane, with its object held by the caller);
/// returns when the change lane must take it over (an error to retry, a roll-out to poll).
pub async fn refresh(obj: Arc<PipecatAgent>, ctx: Arc<Context>) -> Option<Duration> {
    match pass(&obj, &ctx).await {
        Ok(next) => next,
        Err(err) => Some(backoff::retry_delay(&obj, &err, &ctx)),
    }
}

/// One pass (with metrics); `Some(delay)`: come back in the change lane.
async fn pass(obj: &Arc<PipecatAgent>, ctx: &Arc<Context>) -> Result<Option<Duration>, Error> {
    let started = Instant::now();
    let result = if obj.metadata.deletion_timestamp.is_some() {
        release(obj, ctx).await
    } else {
        converge(obj, ctx).await
    };
    let took = started.elapsed();
    match &result {
        Ok(pass) => {
            if let Some(outcome) = &pass.outcome {
                ctx.metrics.reconciled(outcome.label(), took);
            }
            if let Some(ready) = pass.ready {
                ctx.objects.set_ready(obj, ready);
                ctx.objects.set_failed(obj, pass.failed);
            }
        }
        Err(e) => ctx.metrics.reconcile_failed(e.reason(), took),
    }
    result.map(|pass| pass.next)
}

/// Deletion: clean up, then forget the object.
async fn release(obj: &PipecatAgent, ctx: &Context) -> Result<Pass, Error> {
    let outcome = cleanup::cleanup(obj, ctx).await?;
    if let Some(outcome) = &outcome {
        let why = match outcome {
            Outcome::Deleted => "deleted the remote agent".to_string(),
            Outcome::Orphaned(OrphanReason::Policy) => {
                "deletionPolicy is Orphan: left the remote agent in place".to_string()
            }
            Outcome::Orphaned(OrphanReason::OwnedBy(owner)) => {
                format!("agent belongs to an older resource ({owner}); not deleting it")
            }
            _ => "the remote agent was not created or adopted by this resource: not deleting it"
                .to_string(),
        };
        info!(
            agent = %obj.agent_name(),
            namespace = obj.namespace().unwrap_or_default(),
            decision = outcome.label(),
            "released the resource: {why}"
        );
    }
    ctx.forget(obj);
    Ok(Pass {
        next: None,
        outcome,
        ready: None,
        failed: false,
    })
}

/// Create, update or observe, then report.
async fn converge(obj: &PipecatAgent, ctx: &Context) -> Result<Pass, Error> {
    let result = apply::sync(obj, ctx, &ctx.objects.status(obj)).await;
    // The latest status, including a rotation's redeploy announced during the pass: a failed
    // pass keeps the announcement (the next one checks whether the redeploy happened).
    let old = ctx.objects.status(obj);
    let now = status::now();
    let mut new = status::next_status(obj, &old, &result, &now);
    if new != old && result.is_ok() {
        // Only with a write that happens anyway: a resync that changes nothing writes nothing.
        // Whole seconds, as the apiserver keeps it (the copy then equals the object's).
        new.observed_at = jiff::Timestamp::from_second(now.0.as_second())
            .ok()
            .map(Time);
    }
    if new != old || ctx.objects.unwritten(obj) {
        // Remembered before the write: should it fail, the next pass still knows what was
        // applied (a forced redeploy is never sent twice).
        ctx.objects.status_pending(obj, &new);
        if !status::deferrable(&result) {
            status::write(&ctx.kube, obj, &new).await?;
            ctx.objects.status_written(obj, &new);
        }
    }
    ctx.objects.set_gauges(obj, &new);
    for note in events::transitions(&old, &new, &result)
        .into_iter()
        .chain(events::ignored_fields(&obj.spec, &old, &new))
    {
        ctx.events.publish(obj, note);
    }

    let applied = result?;
    match &applied.outcome {
        Outcome::Updated(UpdateReason::Drift(_)) => ctx.objects.drift_corrected(obj, true),
        Outcome::NotConverging => {}
        _ => ctx.objects.drift_corrected(obj, false),
    }
    let ready = applied.readiness.ready;
    let polls = ctx.objects.succeeded(obj, ready);
    let delay = backoff::after_success(&ctx.config, polls, ready, applied.readiness.failed);
    if applied.outcome.is_notable() {
        let reason = match &applied.outcome {
            Outcome::Updated(r) => r.describe(),
            _ => String::new(),
        };
        info!(
            agent = %applied.desired.name,
            namespace = obj.namespace().unwrap_or_default(),
            decision = applied.outcome.label(),
            reason = %reason,
            ready,
            next_in_ms = delay.map_or(0, |d| d.as_millis() as u64),
            "reconciled agent"
        );
    } else {
        debug!(agent = %applied.desired.name, ready, "agent unchanged");
    }
    Ok(Pass {
        next: delay,
        outcome: Some(applied.outcome),
        ready: Some(ready),
        failed: applied.readiness.failed,
    })
}
