//! One pass over an agent, step by step: a resource being deleted goes to
//! [`cleanup`]; any other goes gate -> credentials -> ownership -> observe ->
//! decide -> intent -> execute -> assess (`sync`) -> status -> events (`converge`).
//! Metrics and logs read the pass's [`Outcome`]. The same pass runs in either lane
//! ([`super::lanes`]): [`reconcile`] is the controller runtime's entry point (changes and
//! follow-ups), [`refresh`] the background pacer's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{debug, info};

use super::context::Context;
use super::decide::{self, Decision};
use super::desired::Desired;
use super::error::Error;
use super::execute::{self, Created, Effects};
use super::observe::{self};
use super::pass::{Applied, OrphanReason, Outcome};
use super::plan::{self, UpdateReason};
use super::rotation::{self, ManagedSet, Step};
use super::{
    assess, backoff, cleanup, credentials, events, gate, intent, lanes, ownership, status,
};
use crate::cloud::types::{Agent, UpdateAgentRequest};
use crate::cloud::{self, ApiKey, Lane};
use crate::crd::{PipecatAgent, PipecatAgentStatus};
use crate::runtime::credentials::SecretLocation;

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
        let cap = crate::runtime::lanes::follow_up_slots(ctx.config.concurrency);
        let slot = ctx.busy.follow_up(cap);
        if limited && slot.is_none() {
            debug!(agent = %obj.agent_name(), "follow-up deferred: its slots are taken");
            return Ok(Action::requeue(ctx.config.poll_interval));
        }
        let promotion = held.lower(Lane::FollowUp, &obj);
        let _lane = ctx.cloud.occupy(Lane::FollowUp);
        cloud::in_lane(promotion, pass(&obj, &ctx)).await
    } else {
        let _lane = ctx.cloud.occupy(Lane::Change);
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

/// The pass over a live resource ([`sync`]), then its report: the status (written only when it
/// changed) and the events.
async fn converge(obj: &PipecatAgent, ctx: &Context) -> Result<Pass, Error> {
    let result = sync(obj, ctx, &ctx.objects.status(obj)).await;
    // The latest status, including a rotation's redeploy announced during the pass: a failed
    // pass keeps the announcement (the next one checks whether the redeploy happened).
    let old = ctx.objects.status(obj);
    let now = crate::runtime::conditions::now();
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

/// The steps of a pass over a live resource, in order, up to its result. `status` is the
/// latest status (what this resource last applied).
async fn sync(
    obj: &PipecatAgent,
    ctx: &Context,
    status: &PipecatAgentStatus,
) -> Result<Applied, Error> {
    let sets = gate::managed_sets(obj, ctx).await?;
    let (loc, key) = credentials::resolve(ctx, obj).await?;
    ownership::check(ctx, obj, &loc, &key).await?;
    let desired = plan::desired(obj);
    let observed = observe::observe(ctx, obj, status, &key, &desired).await?;
    let decision = decide::decide(obj, status, &sets, &desired, &observed)?;
    let mut remote = Remote {
        ctx,
        obj,
        key: &key,
    };
    match decision {
        Decision::Create(request) => {
            intent::prepare(ctx, obj, &loc, Some(&desired.name)).await?;
            match execute::create(ctx, &key, &desired.name, &request).await? {
                Created::Agent(agent) => {
                    Ok(assess::created(desired, agent).with_secret_sets(rotation::current(&sets)))
                }
                Created::Existing(agent) => {
                    let decision = decide::after_race(obj, &sets, &desired, &observed, &agent)?;
                    carry(&mut remote, &loc, status, &sets, desired, agent, decision).await
                }
            }
        }
        decision => {
            let agent = observed
                .remote
                .clone()
                .expect("only a missing agent is created");
            carry(&mut remote, &loc, status, &sets, desired, agent, decision).await
        }
    }
}

/// Intent, execute and assess for an existing agent `agent`.
async fn carry(
    remote: &mut Remote<'_>,
    loc: &SecretLocation,
    status: &PipecatAgentStatus,
    sets: &[ManagedSet],
    desired: Desired,
    agent: Agent,
    decision: Decision,
) -> Result<Applied, Error> {
    intent::prepare(remote.ctx, remote.obj, loc, None).await?;
    match decision {
        Decision::Manage(step) => managed(remote, status, desired, agent, step).await,
        Decision::Adopt(request) => {
            let answer =
                execute::adopt(remote.ctx, remote.key, &desired.name, request.as_ref()).await?;
            Ok(assess::adopted(desired, agent, answer).with_secret_sets(rotation::current(sets)))
        }
        Decision::Create(_) => unreachable!("an existing agent is never created"),
    }
}

/// An agent this resource manages, from its plan on: the announcement, the update or nothing,
/// what the answer means, the secret set revisions recorded.
async fn managed(
    effects: &mut impl Effects,
    status: &PipecatAgentStatus,
    desired: Desired,
    observed: Agent,
    step: Step,
) -> Result<Applied, Error> {
    intent::announce(effects, status, &step).await?;
    let answer = execute::update(effects, &desired.name, &step.plan).await;
    let applied = assess::carried_out(
        desired,
        observed,
        step.plan,
        answer,
        Outcome::Unchanged,
        step.requested,
    )?;
    Ok(applied.with_secret_sets(step.record))
}

/// One pass over an agent this resource manages, from the observed agent on, through
/// `effects`: the property tests drive the operator's own order with a model of Pipecat Cloud.
#[cfg(test)]
pub(super) async fn manage(
    effects: &mut impl Effects,
    obj: &PipecatAgent,
    status: &PipecatAgentStatus,
    sets: &[ManagedSet],
    desired: Desired,
    last: &plan::LastApplied,
    observed: Agent,
) -> Result<Applied, Error> {
    let step = decide::manage(obj, status, sets, &desired, last, &observed);
    managed(effects, status, desired, observed, step).await
}

/// The apiserver and Pipecat Cloud.
struct Remote<'a> {
    ctx: &'a Context,
    obj: &'a PipecatAgent,
    key: &'a ApiKey,
}

impl Effects for Remote<'_> {
    async fn announce(&mut self, st: &PipecatAgentStatus) -> Result<(), Error> {
        self.ctx.objects.status_pending(self.obj, st);
        status::write(&self.ctx.kube, self.obj, st).await?;
        self.ctx.objects.status_written(self.obj, st);
        Ok(())
    }

    async fn update(
        &mut self,
        name: &str,
        request: &UpdateAgentRequest,
    ) -> Result<Agent, cloud::Error> {
        self.ctx.cloud.update_agent(self.key, name, request).await
    }
}

#[cfg(test)]
mod properties;
