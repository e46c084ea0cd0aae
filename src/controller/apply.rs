//! Applying: resolve the key, observe the remote agent, plan, and carry the plan out (create,
//! adopt or update). Returns what was done, the agent as Pipecat Cloud now reports it, the
//! deployment this operator is waiting for, and whether Pipecat Cloud took the spec.

use super::compare::compare;
use super::desired::Desired;
use super::observe::{self, last_applied, merge_sparse};
use super::outcome::Outcome;
use super::plan::{self, LastApplied, Plan, Stuck, UpdateReason};
use super::readiness::{Readiness, readiness};
use super::rotation::{self, ManagedSet};
use super::{Context, Error, credentials, finalizer, ownership, secret_finalizer, status, watch};
use crate::cloud::types::{Agent, Resets, UpdateAgentRequest, defaults};
use crate::cloud::{self, ApiKey};
use crate::crd::{
    DeletionPolicy, FINALIZER, PipecatAgent, PipecatAgentStatus, RequestedDeployment,
    SecretSetRevision,
};
use tracing::warn;

/// A successful sync with Pipecat Cloud.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The agent as last reported (the update's answer, or the read).
    pub agent: Agent,
    /// What was done.
    pub outcome: Outcome,
    /// What the spec asks for.
    pub desired: Desired,
    /// The deployment readiness waits for (see [`readiness`]).
    pub requested: Option<RequestedDeployment>,
    /// How far that deployment is (computed once per pass).
    pub readiness: Readiness,
    /// Set when Pipecat Cloud does not take the spec.
    pub stuck: Option<Stuck>,
    /// The managed secret sets' revisions the agent's deployment now has
    /// (`status.secretSetRevisions`).
    pub secret_sets: Vec<SecretSetRevision>,
}

impl Applied {
    fn new(
        agent: Agent,
        outcome: Outcome,
        desired: Desired,
        requested: Option<RequestedDeployment>,
        stuck: Option<Stuck>,
    ) -> Self {
        let readiness = readiness(&agent, requested.as_ref());
        Applied {
            agent,
            outcome,
            desired,
            requested,
            readiness,
            stuck,
            secret_sets: Vec::new(),
        }
    }

    /// The same result, recording these secret set revisions.
    pub fn with_secret_sets(mut self, revisions: Vec<SecretSetRevision>) -> Self {
        self.secret_sets = revisions;
        self
    }
}

/// Observes the remote agent, plans, and applies the plan. `status` is the latest status
/// (what this resource last applied).
///
/// Ownership: the operator touches only an agent this resource created (its status records an
/// apply, or the create marker names it) or was told to adopt (`spec.adopt`). Any other agent
/// of the same name is left alone: `AgentExists`, no finalizer, nothing deleted.
///
/// Secret sets: while a set the agent uses is managed by a PipecatSecretSet that is not ready,
/// nothing is sent (`SecretSetNotReady`); a rotation of such a set is sent as one forced
/// redeploy, announced in the status first (see [`rotation`]).
pub async fn sync(
    obj: &PipecatAgent,
    ctx: &Context,
    status: &PipecatAgentStatus,
) -> Result<Applied, Error> {
    let sets = managed_sets(obj, ctx).await?;
    let loc = credentials::locate(obj, &ctx.config.default_credentials);
    let key = ctx.keys.resolve(&ctx.kube, &loc).await?;
    if let Some(owner) = ownership::owner(ctx, obj, &loc, &key).await? {
        return Err(ownership::conflict(obj, &owner));
    }
    let desired = plan::desired(obj);
    let last = last_applied(status, &desired.name, ctx.objects.drift_corrections(obj));
    let marked_before = ctx.objects.marked_creating(obj, &desired.name);

    let Some(observed) = observe::remote_agent(ctx, &key, &desired.name).await? else {
        let Plan::Create(req) = plan::plan(&desired, None, &last) else {
            unreachable!("a missing agent is always planned as a create")
        };
        check_region(ctx, &key, &desired).await?;
        // The finalizer and the create marker, in one write, before the call.
        prepare(ctx, obj, &loc, Some(&desired.name)).await?;
        return match ctx.cloud.create_agent(&key, &req).await {
            Ok(agent) => Ok(created(desired, agent).with_secret_sets(rotation::current(&sets))),
            Err(cloud::Error::AlreadyExists { .. }) => {
                // It appeared since the read: ours only if an earlier pass sent a create whose
                // answer was lost.
                let agent = observe::remote_agent(ctx, &key, &desired.name)
                    .await?
                    .ok_or_else(|| {
                        Error::cloud(
                            "adopt",
                            &desired.name,
                            cloud::Error::NotFound {
                                message: "the agent was reported as existing but cannot be read"
                                    .into(),
                            },
                        )
                    })?;
                if marked_before {
                    let step = plan::plan(&desired, Some(&agent), &last);
                    let mut remote = Remote {
                        ctx,
                        obj,
                        key: &key,
                    };
                    carry_out(&mut remote, desired, agent, step, Outcome::Unchanged, None)
                        .await
                        .map(|a| a.with_secret_sets(rotation::current(&sets)))
                } else {
                    take_over(obj, ctx, &key, &loc, desired, agent)
                        .await
                        .map(|a| a.with_secret_sets(rotation::current(&sets)))
                }
            }
            Err(source) => Err(Error::cloud("create", &desired.name, source)),
        };
    };
    if last.config_hash.is_some() || marked_before {
        prepare(ctx, obj, &loc, None).await?;
        let mut remote = Remote {
            ctx,
            obj,
            key: &key,
        };
        manage(&mut remote, obj, status, &sets, desired, &last, observed).await
    } else {
        take_over(obj, ctx, &key, &loc, desired, observed)
            .await
            .map(|a| a.with_secret_sets(rotation::current(&sets)))
    }
}

/// Before a create: the spec's region is one Pipecat Cloud offers the key's organization
/// (`GET /regions`); otherwise nothing is created (`UnknownRegion`, until the spec changes). A
/// spec without a region gets Pipecat Cloud's default, and a server that does not serve
/// `/regions` (404) is not asked again in this pass: the create's own answer decides.
async fn check_region(ctx: &Context, key: &ApiKey, desired: &Desired) -> Result<(), Error> {
    let Some(region) = desired.region.as_deref() else {
        return Ok(());
    };
    let regions = match ctx.cloud.list_regions(key).await {
        Ok(regions) => regions,
        Err(cloud::Error::NotFound { .. }) => return Ok(()),
        Err(source) => return Err(Error::cloud("list regions for", &desired.name, source)),
    };
    if regions.iter().any(|r| r == region) {
        return Ok(());
    }
    Err(Error::InvalidSpec {
        reason: "UnknownRegion",
        message: format!(
            "spec.region {region:?} is not a Pipecat Cloud region of this account (it offers: {}); agent {} was not created: set spec.region to one of these, or remove it for Pipecat Cloud's default ({})",
            if regions.is_empty() {
                "none".to_string()
            } else {
                regions.join(", ")
            },
            desired.name,
            defaults::REGION
        ),
    })
}

/// The managed secret sets the agent uses, all ready; otherwise the agent waits
/// (`SecretSetNotReady`). A pass right after a start waits for the first list of
/// PipecatSecretSets, so that a managed set is never taken for an unmanaged one.
async fn managed_sets(obj: &PipecatAgent, ctx: &Context) -> Result<Vec<ManagedSet>, Error> {
    if !ctx.sets.wait_synced(watch::SET_LIST_TIMEOUT).await {
        return Err(Error::SecretSetNotReady {
            message: "the operator has not listed the PipecatSecretSets yet; the agent waits"
                .into(),
            failed: false,
        });
    }
    let sets = ctx.sets.used_by(obj);
    match rotation::wait_for(obj.agent_name(), &sets) {
        Some(wait) => Err(Error::SecretSetNotReady {
            message: wait.message,
            failed: wait.failed,
        }),
        None => Ok(sets),
    }
}

/// What a pass over an existing agent does to the world: the status write announcing a
/// rotation's redeploy, and the update. [`Remote`] in the operator; the property tests' model
/// of Pipecat Cloud drives the same order ([`manage`]).
pub(super) trait Effects {
    /// Writes `status` (the latest one with a redeploy announced) before the update is sent.
    async fn announce(&mut self, status: &PipecatAgentStatus) -> Result<(), Error>;
    /// Sends the update; the answer, or Pipecat Cloud's error as the client classified it.
    async fn update(
        &mut self,
        name: &str,
        request: &UpdateAgentRequest,
    ) -> Result<Agent, cloud::Error>;
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

/// One pass over an agent this resource manages, in its order: plan, rotations folded in
/// ([`rotation::step`]), a rotation's redeploy recorded in the status before it is sent (see
/// [`rotation`]), the update or nothing, the secret set revisions recorded.
pub(super) async fn manage(
    effects: &mut impl Effects,
    obj: &PipecatAgent,
    status: &PipecatAgentStatus,
    sets: &[ManagedSet],
    desired: Desired,
    last: &LastApplied,
    observed: Agent,
) -> Result<Applied, Error> {
    let step = rotation::step(
        plan::plan(&desired, Some(&observed), last),
        &desired,
        status,
        sets,
        &observed,
        last.config_hash.is_none(),
        obj.spec.secret_rotation,
    );
    if let Some(pending) = step.announce {
        let mut st = status.clone();
        st.pending_rotation = Some(pending);
        effects.announce(&st).await?;
    }
    let applied = carry_out(
        effects,
        desired,
        observed,
        step.plan,
        Outcome::Unchanged,
        step.requested,
    )
    .await?;
    Ok(applied.with_secret_sets(step.record))
}

/// The finalizer (with the create marker when a create follows), and, under
/// `deletionPolicy: Delete`, the credentials Secret marked in use: before the operator touches
/// anything remotely.
async fn prepare(
    ctx: &Context,
    obj: &PipecatAgent,
    loc: &credentials::SecretLocation,
    creating: Option<&str>,
) -> Result<(), Error> {
    if obj.spec.deletion_policy == DeletionPolicy::Delete {
        secret_finalizer::ensure(ctx, loc).await?;
    }
    let has = ctx.objects.has_finalizer(obj, FINALIZER);
    let need_marker = creating.is_some_and(|a| !ctx.objects.marked_creating(obj, a));
    if finalizer::add(&ctx.kube, obj, creating.filter(|_| need_marker), has).await? {
        ctx.objects.finalizer_added(obj);
        if let Some(agent) = creating {
            ctx.objects.marker_added(obj, agent);
        }
    }
    Ok(())
}

/// An agent this resource did not create: adopted when `spec.adopt` says so, else untouched.
async fn take_over(
    obj: &PipecatAgent,
    ctx: &Context,
    key: &ApiKey,
    loc: &credentials::SecretLocation,
    desired: Desired,
    agent: Agent,
) -> Result<Applied, Error> {
    if !obj.spec.adopt {
        return Err(Error::InvalidSpec {
            reason: "AgentExists",
            message: format!(
                "agent {} already exists in Pipecat Cloud and was not created by this resource: it is left untouched. To manage it from this resource, set spec.adopt: true (it is then updated to this spec, and deleted with this resource under deletionPolicy Delete); or set another spec.agentName",
                desired.name
            ),
        });
    }
    prepare(ctx, obj, loc, None).await?;
    adopt(ctx, key, desired, agent).await
}

/// Takes over an existing agent: the whole desired body is sent once, unless every field is
/// reported and already means the spec (fields the answers do not report are never assumed
/// to match).
async fn adopt(
    ctx: &Context,
    key: &ApiKey,
    desired: Desired,
    agent: Agent,
) -> Result<Applied, Error> {
    let cmp = compare(&desired.config, &desired.omitted, &agent);
    if cmp.differ.is_empty() && cmp.unknown.is_empty() && cmp.resets.is_empty() {
        // Every field is reported and already means the spec (e.g. a manifest written by
        // `pipecat-operator export`): nothing to send.
        return Ok(kept(desired, agent, Outcome::Adopted, None, None));
    }
    // Every omitted field back to its default, but a secret set is detached only when the
    // agent is seen to have one (see `compare`).
    let resets = desired
        .omitted
        .iter()
        .copied()
        .filter(|r| !r.detaches_a_set() || cmp.resets.contains(r))
        .collect();
    let request = UpdateAgentRequest {
        config: desired.config.clone(),
        resets: Resets(resets),
        force_redeploy: false,
    };
    let answer = ctx
        .cloud
        .update_agent(key, &desired.name, &request)
        .await
        .map_err(|source| Error::cloud("update", &desired.name, source))?;
    let mut applied = updated(desired, &agent, answer, false, UpdateReason::Adopt, None);
    applied.outcome = Outcome::Adopted;
    Ok(applied)
}

/// Carries out an update (or nothing) planned for an existing agent; `unchanged` is the
/// outcome when no update is needed; `requested` the deployment asked for before.
async fn carry_out(
    effects: &mut impl Effects,
    desired: Desired,
    observed: Agent,
    step: Plan,
    unchanged: Outcome,
    requested: Option<RequestedDeployment>,
) -> Result<Applied, Error> {
    match step {
        Plan::Update { request, reason } => {
            let answer = match effects.update(&desired.name, &request).await {
                Ok(answer) => answer,
                Err(source) => {
                    return removal_refused(desired, observed, &request, requested, source);
                }
            };
            Ok(updated(
                desired,
                &observed,
                answer,
                request.force_redeploy,
                reason,
                requested,
            ))
        }
        Plan::Nothing => Ok(kept(desired, observed, unchanged, requested, None)),
        Plan::NotConverging(stuck) => Ok(kept(
            desired,
            observed,
            Outcome::NotConverging,
            requested,
            Some(stuck),
        )),
        Plan::RegionMismatch {
            desired: want,
            actual,
        } => Err(Error::InvalidSpec {
            reason: "RegionImmutable",
            message: format!(
                "agent {} runs in region {actual:?} but spec.region is {want:?}: a region cannot change; remove spec.region or set it to {actual:?}, or create a new PipecatAgent",
                desired.name
            ),
        }),
        Plan::Create(_) => unreachable!("create is planned only for a missing agent"),
    }
}

/// A refused update that detached a secret set (pure): Pipecat Cloud's API documents no way
/// to detach one, so a 4xx answer to it is kept as [`Stuck::RemovalRefused`] (recorded in the
/// status like any update the server did not take: never sent again for this spec). Any other
/// failure is the pass's error.
fn removal_refused(
    desired: Desired,
    observed: Agent,
    request: &UpdateAgentRequest,
    requested: Option<RequestedDeployment>,
    source: cloud::Error,
) -> Result<Applied, Error> {
    let detaching = request.resets.0.iter().any(|r| r.detaches_a_set());
    let refused = matches!(
        source.kind(),
        cloud::ErrorKind::InvalidRequest | cloud::ErrorKind::NotFound
    );
    if !(detaching && refused) {
        return Err(Error::cloud("update", &desired.name, source));
    }
    let differ = compare(&desired.config, &desired.omitted, &observed).differ;
    warn!(
        agent = %desired.name,
        error = %source,
        "Pipecat Cloud refused an update that detaches a secret set; not sending it again"
    );
    let stuck = Stuck::refused(&desired, differ);
    Ok(kept(
        desired,
        observed,
        Outcome::NotConverging,
        requested,
        Some(stuck),
    ))
}

/// The result of a create (pure): the agent is waited for, and checked against the spec (a
/// server may store something else than it was asked for).
pub fn created(desired: Desired, mut agent: Agent) -> Applied {
    // The region it was created in, for later checks when answers omit it.
    if agent.region.is_none() {
        agent.region = Some(
            desired
                .region
                .clone()
                .unwrap_or_else(|| defaults::REGION.into()),
        );
    }
    let requested = Some(RequestedDeployment {
        id: agent.desired_deployment().unwrap_or_default().to_string(),
        replaces: None,
    });
    let still = compare(&desired.config, &desired.omitted, &agent).differ;
    let stuck = (!still.is_empty()).then(|| Stuck::refused(&desired, still));
    Applied::new(agent, Outcome::Created, desired, requested, stuck)
}

/// The result of a pass that sent no update (pure). Nothing asked for yet (adopted, or a
/// status from before this was recorded): the deployment in place is the one to wait for.
pub fn kept(
    desired: Desired,
    observed: Agent,
    outcome: Outcome,
    requested: Option<RequestedDeployment>,
    stuck: Option<Stuck>,
) -> Applied {
    let requested = requested.or_else(|| in_place(&observed));
    Applied::new(observed, outcome, desired, requested, stuck)
}

/// The result of an update (pure): `observed` is the agent read before it, `answer` the
/// update's answer, `forced` whether a redeploy was forced, `requested` the deployment asked
/// for before.
pub fn updated(
    desired: Desired,
    observed: &Agent,
    answer: Agent,
    forced: bool,
    reason: UpdateReason,
    requested: Option<RequestedDeployment>,
) -> Applied {
    let answer = merge_sparse(answer, observed);
    let requested = if answer.warning.is_some() && !forced {
        // "Nothing changed": no new deployment to wait for.
        requested.or_else(|| in_place(observed))
    } else {
        let before = observed.desired_deployment();
        let after = answer.desired_deployment().filter(|a| Some(*a) != before);
        Some(RequestedDeployment {
            // An answer that still names the old deployment does not say which one was
            // made: any deployment but the replaced one will do.
            id: after.unwrap_or_default().to_string(),
            replaces: before.map(str::to_string),
        })
    };
    let still = compare(&desired.config, &desired.omitted, &answer).differ;
    let stuck = (!still.is_empty()).then(|| Stuck::refused(&desired, still));
    Applied::new(answer, Outcome::Updated(reason), desired, requested, stuck)
}

fn in_place(observed: &Agent) -> Option<RequestedDeployment> {
    observed.desired_deployment().map(|id| RequestedDeployment {
        id: id.to_string(),
        replaces: None,
    })
}
