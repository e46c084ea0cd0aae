//! The ownership step of an agent's pass: who owns a remote agent when two resources name the
//! same one.
//!
//! Two `PipecatAgent`s (in different namespaces, say) can name the same remote agent with the
//! same Pipecat account. Both acting would flap the agent between two specs, and deleting
//! either would delete the other's agent. The rule: the older resource (creation time, then
//! namespace/name) owns it; a newer claimant gets `Synced=False` reason `NameConflict`, makes
//! no remote call, and does not delete the agent when it goes away. When the owner is deleted,
//! the waiting claimants are re-queued at once and the oldest takes over.

use kube::Api;

use super::context::Context;
use super::credentials;
use super::error::Error;
use super::names::Claim;
use crate::cloud::ApiKey;
use crate::crd::PipecatAgent;
use crate::runtime::credentials::SecretLocation;

/// The ownership step: fails (`NameConflict`) when an older resource owns the agent name with
/// the same account.
pub async fn check(
    ctx: &Context,
    agent: &PipecatAgent,
    loc: &SecretLocation,
    key: &ApiKey,
) -> Result<(), Error> {
    match owner(ctx, agent, loc, key).await? {
        Some(owner) => Err(conflict(agent, &owner)),
        None => Ok(()),
    }
}

/// The older resource that owns `agent`'s remote agent with the same account, if any.
pub async fn owner(
    ctx: &Context,
    agent: &PipecatAgent,
    my_loc: &SecretLocation,
    my_key: &ApiKey,
) -> Result<Option<Claim>, Error> {
    let mine = Claim::of(agent);
    for other in ctx.names.older_than(agent.agent_name(), &mine) {
        let api: Api<PipecatAgent> = Api::namespaced(ctx.kube.clone(), other.namespace());
        let Some(other_obj) = api
            .get_opt(other.name())
            .await
            .map_err(|source| Error::Kube {
                action: "read a PipecatAgent claiming the same agent name",
                source,
            })?
        else {
            continue; // gone since the index saw it
        };
        let loc = credentials::locate(&other_obj, &ctx.config.default_credentials);
        let same_account = loc == *my_loc
            || ctx
                .keys
                .resolve(&ctx.kube, &loc)
                .await
                .is_ok_and(|key| key == *my_key);
        if same_account {
            return Ok(Some(other));
        }
    }
    Ok(None)
}

/// The error a newer claimant reports.
pub fn conflict(agent: &PipecatAgent, owner: &Claim) -> Error {
    Error::InvalidSpec {
        reason: "NameConflict",
        message: format!(
            "Pipecat agent {} is already managed by PipecatAgent {}/{} (created earlier) with the same Pipecat Cloud account: set a different spec.agentName, or delete the other resource (this one then takes over)",
            agent.agent_name(),
            owner.namespace(),
            owner.name()
        ),
    }
}
