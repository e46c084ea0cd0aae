//! The gate of an agent's pass: while a secret set the agent uses is managed by a
//! PipecatSecretSet that is not ready, the pass stops here (`SecretSetNotReady`) and nothing is
//! sent. A pass right after a start waits for the first list of PipecatSecretSets, so that a
//! managed set is never taken for an unmanaged one.

use std::time::Duration;

use super::context::Context;
use super::error::Error;
use super::rotation::{self, ManagedSet};
use crate::crd::PipecatAgent;

/// How long a pass waits for the first list of PipecatSecretSets before it reports waiting.
pub const SET_LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// The managed secret sets the agent uses, all ready; otherwise the agent waits
/// (`SecretSetNotReady`). A pass right after a start waits for the first list of
/// PipecatSecretSets, so that a managed set is never taken for an unmanaged one.
pub async fn managed_sets(obj: &PipecatAgent, ctx: &Context) -> Result<Vec<ManagedSet>, Error> {
    if !ctx.sets.wait_synced(SET_LIST_TIMEOUT).await {
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
