//! The execute step of an agent's pass: the Pipecat Cloud calls a decision needs, and nothing
//! else (what was written before is [`super::intent`]'s, what the answers mean is
//! [`super::assess`]'s).

use super::context::Context;
use super::error::Error;
use super::observe;
use super::plan::Plan;
use crate::cloud::types::{Agent, CreateAgentRequest, UpdateAgentRequest};
use crate::cloud::{self, ApiKey};
use crate::crd::PipecatAgentStatus;

/// What a pass over an existing agent does to the world: the status write announcing a
/// rotation's redeploy, and the update. The apiserver and Pipecat Cloud in the
/// operator ([`super::reconcile`]); the property tests' model of Pipecat Cloud drives the same
/// order.
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

/// What a create found.
#[derive(Clone, Debug)]
pub enum Created {
    /// The new agent.
    Agent(Agent),
    /// The agent already existed (it appeared since the read), as it reads now.
    Existing(Agent),
}

/// Creates the agent; an agent that already exists is read back.
pub async fn create(
    ctx: &Context,
    key: &ApiKey,
    name: &str,
    request: &CreateAgentRequest,
) -> Result<Created, Error> {
    match ctx.cloud.create_agent(key, request).await {
        Ok(agent) => Ok(Created::Agent(agent)),
        Err(cloud::Error::AlreadyExists { .. }) => observe::remote_agent(ctx, key, name)
            .await?
            .map(Created::Existing)
            .ok_or_else(|| {
                Error::cloud(
                    "adopt",
                    name,
                    cloud::Error::NotFound {
                        message: "the agent was reported as existing but cannot be read".into(),
                    },
                )
            }),
        Err(source) => Err(Error::cloud("create", name, source)),
    }
}

/// Sends the update `plan` holds, if any: its answer, or Pipecat Cloud's error as the client
/// classified it (`None`: nothing to send).
pub(super) async fn update(
    effects: &mut impl Effects,
    name: &str,
    plan: &Plan,
) -> Option<Result<Agent, cloud::Error>> {
    match plan {
        Plan::Update { request, .. } => Some(effects.update(name, request).await),
        _ => None,
    }
}

/// Sends an adoption's update, if any.
pub async fn adopt(
    ctx: &Context,
    key: &ApiKey,
    name: &str,
    request: Option<&UpdateAgentRequest>,
) -> Result<Option<Agent>, Error> {
    let Some(request) = request else {
        return Ok(None);
    };
    ctx.cloud
        .update_agent(key, name, request)
        .await
        .map(Some)
        .map_err(|source| Error::cloud("update", name, source))
}
