//! Applying: resolve the key, observe the remote agent, plan, and carry the plan out (create,
//! adopt or update). Returns what was done, the agent as Pipecat Cloud now reports it, the
//! deployment this operator is waiting for, and whether Pipecat Cloud took the spec.

use super::compare::compare;
use super::desired::Desired;
use super::observe::{self, last_applied, merge_sparse};
use super::outcome::Outcome;
use super::plan::{self, LastApplied, Plan, Stuck, UpdateReason};
use super::readiness::{Readiness, readiness};
use super::{Context, Error, credentials, ownership};
use crate::cloud::types::{Agent, defaults};
use crate::cloud::{self, ApiKey};
use crate::crd::{PipecatAgent, PipecatAgentStatus, RequestedDeployment};

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
        }
    }
}

/// Observes the remote agent, plans, and applies the plan. `status` is the latest status
/// (what this resource last applied); `drift_corrections` the corrections made in a row.
pub async fn sync(
    obj: &PipecatAgent,
    ctx: &Context,
    status: &PipecatAgentStatus,
) -> Result<Applied, Error> {
    let loc = credentials::locate(obj, &ctx.config.default_credentials);
    let key = ctx.keys.resolve(&ctx.kube, &loc).await?;
    if let Some(owner) = ownership::owner(ctx, obj, &loc, &key).await? {
        return Err(ownership::conflict(obj, &owner));
    }
    let desired = plan::desired(obj);
    let last = last_applied(status, &desired.name, ctx.objects.drift_corrections(obj));
    let requested = status.requested_deployment.clone();

    let observed = observe::remote_agent(ctx, &key, &desired.name).await?;
    let adopting = observed.is_some() && last.config_hash.is_none();
    match plan::plan(&desired, observed.as_ref(), &last) {
        Plan::Create(req) => match ctx.cloud.create_agent(&key, &req).await {
            Ok(agent) => Ok(created(desired, agent)),
            Err(cloud::Error::AlreadyExists { .. }) => {
                // Created by someone else (or by us, with the answer lost) since the read.
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
                adopt(ctx, &key, desired, agent).await
            }
            Err(source) => Err(Error::cloud("create", &desired.name, source)),
        },
        _ if adopting => adopt(ctx, &key, desired, observed.expect("observed")).await,
        step => {
            let observed = observed.expect("only a missing agent is planned as a create");
            carry_out(
                ctx,
                &key,
                desired,
                observed,
                step,
                Outcome::Unchanged,
                requested,
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
) -> Result<Applied, Error> {
    let step = plan::plan(&desired, Some(&agent), &LastApplied::default());
    carry_out(ctx, key, desired, agent, step, Outcome::Adopted, None).await
}

/// Carries out an update (or nothing) planned for an existing agent; `unchanged` is the
/// outcome when no update is needed; `requested` the deployment asked for before.
async fn carry_out(
    ctx: &Context,
    key: &ApiKey,
    desired: Desired,
    observed: Agent,
    step: Plan,
    unchanged: Outcome,
    requested: Option<RequestedDeployment>,
) -> Result<Applied, Error> {
    match step {
        Plan::Update { request, reason } => {
            let answer = ctx
                .cloud
                .update_agent(key, &desired.name, &request)
                .await
                .map_err(|source| Error::cloud("update", &desired.name, source))?;
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
    let stuck = (!still.is_empty()).then_some(Stuck::Refused(still));
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
    let stuck = (!still.is_empty()).then_some(Stuck::Refused(still));
    Applied::new(answer, Outcome::Updated(reason), desired, requested, stuck)
}

fn in_place(observed: &Agent) -> Option<RequestedDeployment> {
    observed.desired_deployment().map(|id| RequestedDeployment {
        id: id.to_string(),
        replaces: None,
    })
}
