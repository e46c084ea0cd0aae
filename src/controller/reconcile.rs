//! One reconcile pass, the controller runtime's entry point: a resource being deleted goes to
//! [`cleanup`](super::cleanup); any other goes credentials -> observe -> plan -> apply
//! ([`apply::sync`]) -> status -> events. Metrics and logs read the pass's [`Outcome`].

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{debug, info};

use super::outcome::{OrphanReason, Outcome};
use super::plan::UpdateReason;
use super::{Context, Error, apply, backoff, cleanup, events, status};
use crate::crd::PipecatAgent;

/// The result of a successful pass.
struct Pass {
    /// When to come back.
    requeue: Action,
    /// What was done (`None`: nothing to do for a resource already released).
    outcome: Option<Outcome>,
    /// The agent's readiness (`None` once the resource is being deleted).
    ready: Option<bool>,
    /// True when its deployment failed.
    failed: bool,
}

/// Reconciles one resource (with metrics).
pub async fn reconcile(obj: Arc<PipecatAgent>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = if obj.metadata.deletion_timestamp.is_some() {
        release(&obj, &ctx).await
    } else {
        converge(&obj, &ctx).await
    };
    let took = started.elapsed();
    match &result {
        Ok(pass) => {
            if let Some(outcome) = &pass.outcome {
                ctx.metrics.reconciled(outcome.label(), took);
            }
            if let Some(ready) = pass.ready {
                ctx.objects.set_ready(&obj, ready);
                ctx.objects.set_failed(&obj, pass.failed);
            }
        }
        Err(e) => ctx.metrics.reconcile_failed(e.reason(), took),
    }
    result.map(|pass| pass.requeue)
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
        requeue: Action::await_change(),
        outcome,
        ready: None,
        failed: false,
    })
}

/// Create, update or observe, then report.
async fn converge(obj: &PipecatAgent, ctx: &Context) -> Result<Pass, Error> {
    let old = ctx.objects.status(obj);
    let result = apply::sync(obj, ctx, &old).await;
    let new = status::next_status(obj, &old, &result, &Time(jiff::Timestamp::now()));
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
    for note in events::transitions(&old, &new, &result) {
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
            next_in_ms = delay.as_millis() as u64,
            "reconciled agent"
        );
    } else {
        debug!(agent = %applied.desired.name, ready, "agent unchanged");
    }
    Ok(Pass {
        requeue: Action::requeue(delay),
        outcome: Some(applied.outcome),
        ready: Some(ready),
        failed: applied.readiness.failed,
    })
}
