//! The observe step of an agent's pass: what Pipecat Cloud holds for the agent now (and, for a
//! missing agent with a `spec.region`, the regions it offers), and what this resource last
//! applied.

use super::compare::{Mismatch, field_name};
use super::context::Context;
use super::desired::Desired;
use super::error::Error;
use super::plan::{LastApplied, Refusal};
use crate::cloud::{self, ApiKey, types::Agent};
use crate::crd::{PipecatAgent, PipecatAgentStatus};

/// What the observe step found.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The remote agent (`None`: it does not exist).
    pub remote: Option<Agent>,
    /// What the status says was last applied.
    pub last: LastApplied,
    /// The resource carried the create marker for this agent name before the pass: an earlier
    /// pass sent (or was about to send) its create.
    pub marked: bool,
    /// For a missing agent with a `spec.region`: the regions Pipecat Cloud offers the key's
    /// organization (`None`: not asked, or a server that does not serve `/regions`).
    pub regions: Option<Vec<String>>,
}

/// Observes the agent `desired` names for `obj`, whose latest status is `status`.
pub async fn observe(
    ctx: &Context,
    obj: &PipecatAgent,
    status: &PipecatAgentStatus,
    key: &ApiKey,
    desired: &Desired,
) -> Result<Observed, Error> {
    let last = last_applied(status, &desired.name, ctx.objects.drift_corrections(obj));
    let marked = ctx.objects.marked_creating(obj, &desired.name);
    let remote = remote_agent(ctx, key, &desired.name).await?;
    let regions = match (&remote, &desired.region) {
        (None, Some(_)) => match ctx.cloud.list_regions(key).await {
            Ok(regions) => Some(regions),
            Err(cloud::Error::NotFound { .. }) => None,
            Err(source) => return Err(Error::cloud("list regions for", &desired.name, source)),
        },
        _ => None,
    };
    Ok(Observed {
        remote,
        last,
        marked,
        regions,
    })
}

/// The remote agent, or `None` when it does not exist.
pub async fn remote_agent(ctx: &Context, key: &ApiKey, name: &str) -> Result<Option<Agent>, Error> {
    match ctx.cloud.get_agent(key, name).await {
        Ok(agent) => Ok(Some(agent)),
        Err(cloud::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(Error::cloud("read", name, source)),
    }
}

/// What the status says was last applied to agent `name` (nothing, when the status describes
/// another agent name), with the drift corrections in a row this process made.
pub fn last_applied(
    status: &PipecatAgentStatus,
    name: &str,
    drift_corrections: u32,
) -> LastApplied {
    if status.agent_name.as_deref() != Some(name) {
        return LastApplied::default();
    }
    LastApplied {
        config_hash: status.applied_config_hash.clone(),
        redeploy_token: status.applied_redeploy_token.clone(),
        refused: status.non_convergence.as_ref().map(|n| Refusal {
            config_hash: n.config_hash.clone(),
            mismatches: n
                .fields
                .iter()
                .filter_map(|f| {
                    Some(Mismatch {
                        field: field_name(&f.field)?,
                        remote: f.remote.clone(),
                    })
                })
                .collect(),
        }),
        drift_corrections,
        region: status.region.clone(),
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
            last_applied(&status, "bot", 2),
            LastApplied {
                config_hash: Some("h1".into()),
                redeploy_token: Some("t1".into()),
                drift_corrections: 2,
                ..Default::default()
            }
        );
        // The spec now names another agent: nothing was applied to that one.
        assert_eq!(last_applied(&status, "other", 2), LastApplied::default());
    }

    #[test]
    fn a_refusal_is_read_back_from_the_status() {
        let status = PipecatAgentStatus {
            agent_name: Some("bot".into()),
            applied_config_hash: Some("h1".into()),
            region: Some("eu-central".into()),
            non_convergence: Some(crate::crd::NonConvergence {
                config_hash: "h1".into(),
                fields: vec![
                    crate::crd::FieldValue {
                        field: "autoScaling".into(),
                        remote: "minAgents 1, maxAgents 5".into(),
                    },
                    crate::crd::FieldValue {
                        field: "someFutureField".into(),
                        remote: "x".into(),
                    },
                ],
            }),
            ..Default::default()
        };
        let last = last_applied(&status, "bot", 0);
        assert_eq!(last.region.as_deref(), Some("eu-central"));
        assert_eq!(
            last.refused,
            Some(Refusal {
                config_hash: "h1".into(),
                mismatches: vec![Mismatch {
                    field: "autoScaling",
                    remote: "minAgents 1, maxAgents 5".into()
                }],
            })
        );
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
