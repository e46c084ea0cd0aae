//! Observing: what Pipecat Cloud holds for an agent now, and what this resource last applied.

use super::plan::LastApplied;
use super::{Context, Error};
use crate::cloud::{self, ApiKey, types::Agent};
use crate::crd::PipecatAgentStatus;

/// The remote agent, or `None` when it does not exist.
pub async fn remote_agent(ctx: &Context, key: &ApiKey, name: &str) -> Result<Option<Agent>, Error> {
    match ctx.cloud.get_agent(key, name).await {
        Ok(agent) => Ok(Some(agent)),
        Err(cloud::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(Error::cloud("read", name, source)),
    }
}

/// What the status says was last applied to agent `name` (nothing, when the status describes
/// another agent name).
pub fn last_applied(status: &PipecatAgentStatus, name: &str) -> LastApplied {
    if status.agent_name.as_deref() == Some(name) {
        LastApplied {
            config_hash: status.applied_config_hash.clone(),
            redeploy_token: status.applied_redeploy_token.clone(),
        }
    } else {
        LastApplied::default()
    }
}

/// An update answer without deployment details keeps the session count and region we read.
pub fn merge_sparse(mut updated: Agent, observed: &Agent) -> Agent {
    if updated.active_session_count.is_none() {
        updated.active_session_count = observed.active_session_count;
    }
    if updated.region.is_none() {
        updated.region = observed.region.clone();
    }
    updated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_applied_belongs_to_the_agent_name_it_was_recorded_for() {
        let status = PipecatAgentStatus {
            agent_name: Some("bot".into()),
            applied_config_hash: Some("h1".into()),
            applied_redeploy_token: Some("t1".into()),
            ..Default::default()
        };
        assert_eq!(
            last_applied(&status, "bot"),
            LastApplied {
                config_hash: Some("h1".into()),
                redeploy_token: Some("t1".into()),
            }
        );
        // The spec now names another agent: nothing was applied to that one.
        assert_eq!(last_applied(&status, "other"), LastApplied::default());
    }

    #[test]
    fn a_sparse_update_answer_keeps_what_was_read() {
        let observed = Agent {
            name: "bot".into(),
            active_session_count: Some(3),
            region: Some("us-west".into()),
            ..Default::default()
        };
        let sparse = Agent {
            name: "bot".into(),
            ..Default::default()
        };
        let merged = merge_sparse(sparse, &observed);
        assert_eq!(merged.active_session_count, Some(3));
        assert_eq!(merged.region.as_deref(), Some("us-west"));
        let full = Agent {
            name: "bot".into(),
            active_session_count: Some(0),
            region: Some("eu-central".into()),
            ..Default::default()
        };
        let merged = merge_sparse(full, &observed);
        assert_eq!(
            merged.active_session_count,
            Some(0),
            "the answer's own value wins"
        );
        assert_eq!(merged.region.as_deref(), Some("eu-central"));
    }
}
