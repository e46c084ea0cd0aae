//! One reconcile pass: credentials -> observe -> plan -> apply -> report.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{debug, info};

use super::plan::{self, Desired, LastApplied, UpdateReason};
use super::status::{self, CondState, READY, Readiness, SYNCED};
use super::{Context, Error, ReconcileResult, cleanup, credentials, ownership};
use crate::cloud::{self, ApiKey, types::Agent};
use crate::crd::{FINALIZER, PipecatAgent, PipecatAgentStatus};

/// What the pass did to the remote agent.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Created it.
    Created,
    /// Found it already there and took it over.
    Adopted,
    /// Sent an update.
    Updated(UpdateReason),
    /// Nothing to do.
    Unchanged,
}

impl Decision {
    fn as_str(&self) -> &'static str {
        match self {
            Decision::Created => "created",
            Decision::Adopted => "adopted",
            Decision::Updated(_) => "updated",
            Decision::Unchanged => "unchanged",
        }
    }
}

/// A successful sync.
struct Synced {
    agent: Agent,
    decision: Decision,
    desired: Desired,
}

/// The controller runtime's reconcile entry point (with metrics).
pub async fn reconcile(obj: Arc<PipecatAgent>, ctx: Arc<Context>) -> ReconcileResult {
    let started = std::time::Instant::now();
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let deleting = obj.metadata.deletion_timestamp.is_some();
    let result = if deleting {
        cleanup::cleanup(&obj, &ctx)
            .await
            .map(|a| (a, "deleted", None))
    } else {
        reconcile_apply(&obj, &ctx).await
    };
    let took = started.elapsed();
    match &result {
        Ok((_, decision, ready)) => {
            ctx.metrics.reconciled(decision, took);
            ctx.metrics
                .set_ready(key, if deleting { None } else { *ready });
        }
        Err(e) => ctx.metrics.reconcile_failed(e.reason(), took),
    }
    result.map(|(action, _, _)| action)
}

/// Create, update or observe: returns the requeue, the decision and readiness.
async fn reconcile_apply(
    obj: &Arc<PipecatAgent>,
    ctx: &Arc<Context>,
) -> Result<(Action, &'static str, Option<bool>), Error> {
    if !ctx.written.has_finalizer(obj, FINALIZER) {
        ensure_finalizer(obj, ctx).await?;
        ctx.written.finalizer_added(obj);
    }

    let old = ctx.written.status(obj);
    let outcome = sync(obj, ctx, &old).await;
    let new = next_status(obj, &old, &outcome, &Time(jiff::Timestamp::now()));
    if new != old {
        write_status(obj, ctx, &new).await?;
        ctx.written.status_written(obj, &new);
    }
    publish_transitions(obj, ctx, &old, &new, &outcome);

    match outcome {
        Ok(synced) => {
            let readiness = status::readiness(&synced.agent);
            let delay = ctx.backoff.on_success(
                &ObjectRef::from_obj(&**obj),
                readiness.ready,
                readiness.failed,
            );
            let reason = match &synced.decision {
                Decision::Updated(r) => r.describe(),
                _ => String::new(),
            };
            let log = |msg: &str| {
                info!(
                    agent = %synced.desired.name,
                    namespace = obj.namespace().unwrap_or_default(),
                    decision = synced.decision.as_str(),
                    reason = %reason,
                    ready = readiness.ready,
                    next_in_ms = delay.as_millis() as u64,
                    "{msg}"
                )
            };
            if synced.decision == Decision::Unchanged {
                debug!(agent = %synced.desired.name, ready = readiness.ready, "agent unchanged");
            } else {
                log("reconciled agent");
            }
            Ok((
                Action::requeue(delay),
                synced.decision.as_str(),
                Some(readiness.ready),
            ))
        }
        Err(e) => Err(e),
    }
}

/// Observes the remote agent, plans, and applies the plan.
async fn sync(
    obj: &PipecatAgent,
    ctx: &Context,
    status: &PipecatAgentStatus,
) -> Result<Synced, Error> {
    let loc = credentials::locate(obj, &ctx.config.default_credentials);
    let key = ctx.keys.resolve(&ctx.kube, &loc).await?;
    if let Some(owner) = ownership::owner(ctx, obj, &loc, &key).await? {
        return Err(ownership::conflict(obj, &owner));
    }
    let desired = plan::desired(obj);
    let last = last_applied(status, &desired.name);

    let observed = get(ctx, &key, &desired.name).await?;
    let adopting = observed.is_some() && last.config_hash.is_none();
    match plan::plan(&desired, observed.as_ref(), &last) {
        plan::Action::Create(req) => match ctx.cloud.create_agent(&key, &req).await {
            Ok(agent) => Ok(Synced {
                agent,
                decision: Decision::Created,
                desired,
            }),
            Err(cloud::Error::AlreadyExists { .. }) => {
                // Created by someone else (or by us, with the answer lost) since the read.
                let agent = get(ctx, &key, &desired.name)
                    .await?
                    .ok_or_else(|| Error::Cloud {
                        action: "adopt",
                        agent: desired.name.clone(),
                        source: cloud::Error::NotFound {
                            message: "the agent was reported as existing but cannot be read".into(),
                        },
                    })?;
                adopt(ctx, &key, desired, agent).await
            }
            Err(source) => Err(cloud_error("create", &desired.name, source)),
        },
        _ if adopting => adopt(ctx, &key, desired, observed.expect("observed")).await,
        action => {
            apply(
                ctx,
                &key,
                desired,
                observed.expect("observed"),
                action,
                Decision::Unchanged,
            )
            .await
        }
    }
}

/// Takes over an agent that already exists: updates it only if it differs from the spec.
async fn adopt(
    ctx: &Context,
    key: &ApiKey,
    desired: Desired,
    agent: Agent,
) -> Result<Synced, Error> {
    let action = plan::plan(&desired, Some(&agent), &LastApplied::default());
    apply(ctx, key, desired, agent, action, Decision::Adopted).await
}

async fn apply(
    ctx: &Context,
    key: &ApiKey,
    desired: Desired,
    observed: Agent,
    action: plan::Action,
    unchanged: Decision,
) -> Result<Synced, Error> {
    match action {
        plan::Action::Update { request, reason } => {
            let agent = ctx
                .cloud
                .update_agent(key, &desired.name, &request)
                .await
                .map_err(|source| cloud_error("update", &desired.name, source))?;
            Ok(Synced {
                agent: merge_sparse(agent, &observed),
                decision: Decision::Updated(reason),
                desired,
            })
        }
        plan::Action::Nothing { .. } => Ok(Synced {
            agent: observed,
            decision: unchanged,
            desired,
        }),
        plan::Action::RegionMismatch {
            desired: want,
            actual,
        } => Err(Error::InvalidSpec {
            reason: "RegionImmutable",
            message: format!(
                "agent {} runs in region {actual:?} but spec.region is {want:?}: a region cannot change; remove spec.region or set it to {actual:?}, or create a new PipecatAgent",
                desired.name
            ),
        }),
        plan::Action::Create(_) => unreachable!("create is planned only for a missing agent"),
    }
}

/// An update answer without deployment details keeps the session count and region we read.
fn merge_sparse(mut updated: Agent, observed: &Agent) -> Agent {
    if updated.active_session_count.is_none() {
        updated.active_session_count = observed.active_session_count;
    }
    if updated.region.is_none() {
        updated.region = observed.region.clone();
    }
    updated
}

async fn get(ctx: &Context, key: &ApiKey, name: &str) -> Result<Option<Agent>, Error> {
    match ctx.cloud.get_agent(key, name).await {
        Ok(agent) => Ok(Some(agent)),
        Err(cloud::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(cloud_error("read", name, source)),
    }
}

fn cloud_error(action: &'static str, agent: &str, source: cloud::Error) -> Error {
    Error::Cloud {
        action,
        agent: agent.to_string(),
        source,
    }
}

fn last_applied(status: &PipecatAgentStatus, name: &str) -> LastApplied {
    if status.agent_name.as_deref() == Some(name) {
        LastApplied {
            config_hash: status.applied_config_hash.clone(),
            redeploy_token: status.applied_redeploy_token.clone(),
        }
    } else {
        LastApplied::default()
    }
}

/// The status after this pass (pure, deterministic).
fn next_status(
    obj: &PipecatAgent,
    old: &PipecatAgentStatus,
    outcome: &Result<Synced, Error>,
    now: &Time,
) -> PipecatAgentStatus {
    let generation = obj.metadata.generation;
    let mut st = old.clone();
    st.agent_name = Some(obj.agent_name().to_string());
    match outcome {
        Ok(s) => {
            status::observe_into(&mut st, &s.agent);
            let Readiness {
                ready, condition, ..
            } = status::readiness(&s.agent);
            st.ready = ready;
            st.observed_generation = generation;
            st.applied_config_hash = Some(s.desired.hash.clone());
            st.applied_redeploy_token = s.desired.redeploy_token.clone();
            status::set_condition(&mut st.conditions, READY, condition, generation, now);
            status::set_condition(
                &mut st.conditions,
                SYNCED,
                CondState::ok(
                    "UpToDate",
                    format!("Pipecat Cloud agent {} matches the spec", s.desired.name),
                ),
                generation,
                now,
            );
        }
        Err(e) => {
            let cond = CondState::fail(e.reason(), e.to_string());
            if e.needs_user_action() || st.conditions.iter().all(|c| c.type_ != READY) {
                // The agent cannot reach the spec until the user acts (or was never seen).
                st.ready = false;
                status::set_condition(&mut st.conditions, READY, cond.clone(), generation, now);
            }
            status::set_condition(&mut st.conditions, SYNCED, cond, generation, now);
        }
    }
    st
}

async fn write_status(
    obj: &PipecatAgent,
    ctx: &Context,
    st: &PipecatAgentStatus,
) -> Result<(), Error> {
    let api: Api<PipecatAgent> =
        Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "pipecat.daily.co/v1alpha1",
        "kind": "PipecatAgent",
        "status": st,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(super::MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Kube {
        action: "write the PipecatAgent status",
        source,
    })?;
    Ok(())
}

/// Adds the cleanup finalizer (optimistic concurrency through the resourceVersion).
async fn ensure_finalizer(obj: &PipecatAgent, ctx: &Context) -> Result<(), Error> {
    if obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let api: Api<PipecatAgent> =
        Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| Error::Kube {
        action: "add the cleanup finalizer",
        source,
    })?;
    Ok(())
}

/// Events for what changed: remote actions, readiness flips, new errors.
fn publish_transitions(
    obj: &PipecatAgent,
    ctx: &Context,
    old: &PipecatAgentStatus,
    new: &PipecatAgentStatus,
    outcome: &Result<Synced, Error>,
) {
    let cond =
        |s: &PipecatAgentStatus, t: &str| s.conditions.iter().find(|c| c.type_ == t).cloned();
    if let Ok(s) = outcome {
        let deployment = s.agent.desired_deployment().unwrap_or("(pending)");
        let name = &s.desired.name;
        match &s.decision {
            Decision::Created => ctx.event(
                obj,
                EventType::Normal,
                "Created",
                format!("created agent {name} in Pipecat Cloud (deployment {deployment})"),
            ),
            Decision::Adopted => ctx.event(
                obj,
                EventType::Normal,
                "Adopted",
                format!("agent {name} already existed in Pipecat Cloud and is now managed by this resource"),
            ),
            Decision::Updated(reason) => ctx.event(
                obj,
                EventType::Normal,
                "Updated",
                format!("updated agent {name}: {} (deployment {deployment})", reason.describe()),
            ),
            Decision::Unchanged => {}
        }
    }
    let (old_ready, new_ready) = (cond(old, READY), cond(new, READY));
    if let Some(n) = &new_ready {
        let changed = old_ready
            .as_ref()
            .map(|o| (&o.status, &o.reason, &o.message))
            != Some((&n.status, &n.reason, &n.message));
        let failed = outcome
            .as_ref()
            .map(|s| status::readiness(&s.agent).failed)
            .unwrap_or(false);
        if changed && n.status == "True" && old_ready.map(|o| o.status) != Some("True".into()) {
            ctx.event(obj, EventType::Normal, "DeploymentReady", n.message.clone());
        } else if changed && failed {
            ctx.event(
                obj,
                EventType::Warning,
                "DeploymentFailed",
                n.message.clone(),
            );
        }
    }
    if let (Err(e), Some(n)) = (outcome, cond(new, SYNCED)) {
        let o = cond(old, SYNCED);
        if o.map(|o| (o.status, o.reason, o.message))
            != Some((n.status, n.reason, n.message.clone()))
        {
            ctx.event(obj, EventType::Warning, e.reason(), n.message);
        }
    }
}
