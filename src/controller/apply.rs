//! Applying: resolve the key, observe the remote agent, plan, and carry the plan out (create,
//! adopt or update). Returns what was done and the agent as Pipecat Cloud now reports it.

use super::observe::{self, last_applied, merge_sparse};
use super::outcome::Outcome;
use super::plan::{self, Desired, LastApplied, Plan};
use super::readiness::{Readiness, readiness};
use super::{Context, Error, credentials, ownership};
use crate::cloud::{self, ApiKey, types::Agent};
use crate::crd::{PipecatAgent, PipecatAgentStatus};

/// A successful sync with Pipecat Cloud.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The agent as last reported (the update's answer, or the read).
    pub agent: Agent,
    /// What was done.
    pub outcome: Outcome,
    /// What the spec asks for.
    pub desired: Desired,
    /// How far the agent's deployment is (computed once per pass).
    pub readiness: Readiness,
}

impl Applied {
    fn new(agent: Agent, outcome: Outcome, desired: Desired) -> Self {
        let readiness = readiness(&agent);
        Applied {
            agent,
            outcome,
            desired,
            readiness,
        }
    }
}

/// Observes the remote agent, plans, and applies the plan. `status` is the latest status
/// (what this resource last applied).
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
    let last = last_applied(status, &desired.name);

    let observed = observe::remote_agent(ctx, &key, &desired.name).await?;
    let adopting = observed.is_some() && last.config_hash.is_none();
    match plan::plan(&desired, observed.as_ref(), &last) {
        Plan::Create(req) => match ctx.cloud.create_agent(&key, &req).await {
            Ok(agent) => Ok(Applied::new(agent, Outcome::Created, desired)),
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
            carry_out(ctx, &key, desired, observed, step, Outcome::Unchanged).await
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
    carry_out(ctx, key, desired, agent, step, Outcome::Adopted).await
}

/// Carries out an update (or nothing) planned for an existing agent; `unchanged` is the
/// outcome when no update is needed.
async fn carry_out(
    ctx: &Context,
    key: &ApiKey,
    desired: Desired,
    observed: Agent,
    step: Plan,
    unchanged: Outcome,
) -> Result<Applied, Error> {
    match step {
        Plan::Update { request, reason } => {
            let agent = ctx
                .cloud
                .update_agent(key, &desired.name, &request)
                .await
                .map_err(|source| Error::cloud("update", &desired.name, source))?;
            Ok(Applied::new(
                merge_sparse(agent, &observed),
                Outcome::Updated(reason),
                desired,
            ))
        }
        Plan::Nothing => Ok(Applied::new(observed, unchanged, desired)),
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
