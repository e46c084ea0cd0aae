//! Secret set rotations (pure): whether an agent must wait for the PipecatSecretSets managing
//! the sets it uses, and when a rotation needs one forced redeploy.
//!
//! A set "managed" for an agent is one a `PipecatSecretSet` manages under the rule of
//! [`agent_uses_set`](crate::crd::secret_set::agent_uses_set) (the [`super::set_index`] finds
//! them). While such a set is not ready the agent sends nothing (a create or update binding a
//! provisioning set is refused with a 409). Each rotation (`status.readyRevision` of the set
//! going up) of the env set (`secretSet`; of the image-pull set too under
//! `secretRotation: RedeployIncludingImagePull`) reaches the agent as exactly one update with
//! `forceRedeploy: true`; every rotation is recorded in the agent's `status.secretSetRevisions`. The redeploy is announced in
//! `status.pendingRotation` before it is sent; a pass that finds the announcement and a
//! deployment other than the one it replaced knows the redeploy happened (the operator was
//! stopped before recording it) and does not send it again.

use super::desired::Desired;
use super::plan::{Plan, UpdateReason};
use crate::cloud::types::{Agent, Resets, UpdateAgentRequest};
use crate::crd::secret_set::PipecatSecretSet;
use crate::crd::{
    PendingRotation, PipecatAgentStatus, RequestedDeployment, SecretRotation, SecretSetRevision,
};

/// Where a managed set stands, as the agent sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetState {
    /// Ready at this revision: agents may bind it.
    Ready(i64),
    /// Not ready yet; what it waits for.
    Pending(String),
    /// Provisioning failed (Pipecat Cloud's message, or the resource's Ready message).
    Failed(String),
}

/// A secret set an agent uses, managed by a `PipecatSecretSet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedSet {
    /// The Pipecat Cloud set name.
    pub name: String,
    /// The managing resource, `namespace/name`.
    pub resource: String,
    /// Its state.
    pub state: SetState,
}

impl ManagedSet {
    /// The view of `set` (its status) an agent pass needs.
    pub fn of(set: &PipecatSecretSet) -> Self {
        ManagedSet {
            name: set.managed_set_name().to_string(),
            resource: format!(
                "{}/{}",
                set.metadata.namespace.as_deref().unwrap_or_default(),
                set.metadata.name.as_deref().unwrap_or_default()
            ),
            state: state(set),
        }
    }
}

/// The state of a set from its resource's status: ready when its `Ready` condition is True for
/// its current generation, Pipecat Cloud reports it `ready`, and the latest revision sent is
/// the ready one.
pub fn state(set: &PipecatSecretSet) -> SetState {
    let Some(st) = set.status.as_ref() else {
        return SetState::Pending("the operator has not synced it yet".into());
    };
    let ready = set.condition("Ready");
    if st.remote_status.as_deref() == Some("failed") {
        let error = st
            .error_message
            .clone()
            .or_else(|| ready.map(|c| c.message.clone()))
            .unwrap_or_else(|| "no error message".into());
        return SetState::Failed(format!("Pipecat Cloud failed to provision it: {error}"));
    }
    let current = ready.is_some_and(|c| c.observed_generation == set.metadata.generation);
    let revision = st.revision.unwrap_or(0);
    let ready_revision = st.ready_revision.unwrap_or(0);
    let remote = st.remote_status.as_deref().unwrap_or("not reported yet");
    match ready {
        Some(c) if c.status == "True" && current && ready_revision >= revision => {
            SetState::Ready(ready_revision)
        }
        _ if revision > ready_revision => SetState::Pending(format!(
            "revision {revision} of its values is provisioning ({remote})"
        )),
        Some(c) if c.status == "False" && stalled(set) => {
            SetState::Failed(format!("it is not Ready ({}): {}", c.reason, c.message))
        }
        Some(c) if c.status != "True" => {
            SetState::Pending(format!("it is not Ready ({}): {}", c.reason, c.message))
        }
        _ => SetState::Pending(format!("it is being synced ({remote})")),
    }
}

/// True when the resource says it cannot progress without a change (`Stalled=True`).
fn stalled(set: &PipecatSecretSet) -> bool {
    set.condition("Stalled").is_some_and(|c| c.status == "True")
}

/// Why the agent waits: the first managed set that is not ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// For the `SecretSetNotReady` condition: which set, and what it waits for.
    pub message: String,
    /// The set failed: a person must act (not a matter of time).
    pub failed: bool,
}

/// The first managed set that is not ready, if any.
pub fn wait_for(agent: &str, sets: &[ManagedSet]) -> Option<Wait> {
    sets.iter().find_map(|s| {
        let (what, failed) = match &s.state {
            SetState::Ready(_) => return None,
            SetState::Pending(why) => (why, false),
            SetState::Failed(why) => (why, true),
        };
        Some(Wait {
            message: format!(
                "agent {agent} waits for secret set {} (PipecatSecretSet {}): {what}",
                s.name, s.resource
            ),
            failed,
        })
    })
}

/// What a pass does about rotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Rotations this pass brings to the agent with one forced redeploy (empty: none).
    pub due: Vec<SecretSetRevision>,
    /// `status.secretSetRevisions` after a successful pass: every managed set's ready revision.
    pub record: Vec<SecretSetRevision>,
    /// An announced redeploy that happened (the deployment moved on since).
    pub reached: Option<PendingRotation>,
}

/// Decides from the agent's recorded revisions and announced redeploy, the managed sets (all
/// ready: see [`wait_for`]), and the remote agent's deployment now (`deployment`). `first`: no
/// configuration was recorded as applied yet (a create or an adoption): the agent's
/// deployment already has the current values, nothing is due. A set without a record is at
/// revision 0 (an agent from before the set was managed gets the values the resource sent).
pub fn decide(
    recorded: &[SecretSetRevision],
    pending: Option<&PendingRotation>,
    sets: &[ManagedSet],
    deployment: Option<&str>,
    first: bool,
    policy: SecretRotation,
) -> Decision {
    let mut record: Vec<SecretSetRevision> = sets
        .iter()
        .filter_map(|s| match s.state {
            SetState::Ready(revision) => Some(SecretSetRevision {
                name: s.name.clone(),
                revision,
            }),
            _ => None,
        })
        .collect();
    record.sort_by(|a, b| a.name.cmp(&b.name));
    record.dedup_by(|a, b| a.name == b.name);
    let reached = pending
        .filter(|p| deployment.is_some() && deployment != p.replaces.as_deref())
        .cloned();
    let has = |name: &str| {
        let of = |list: &[SecretSetRevision]| {
            list.iter()
                .filter(|r| r.name == name)
                .map(|r| r.revision)
                .max()
        };
        of(recorded)
            .max(reached.as_ref().and_then(|p| of(&p.revisions)))
            .unwrap_or(0)
    };
    let due = if first || policy == SecretRotation::Ignore {
        Vec::new()
    } else {
        record
            .iter()
            .filter(|r| r.revision > has(&r.name))
            .cloned()
            .collect()
    };
    Decision {
        due,
        record,
        reached,
    }
}

/// The plan with the rotations `due` folded in: an update that is sent anyway forces the
/// redeploy; otherwise (nothing to change, or an update that would not converge) the spec's
/// configuration is sent once with `forceRedeploy` (as for `redeployToken`). A create or a
/// region mismatch is left as it is.
pub fn force(step: Plan, desired: &Desired, due: &[SecretSetRevision]) -> Plan {
    if due.is_empty() {
        return step;
    }
    match step {
        Plan::Update {
            mut request,
            reason,
        } => {
            request.force_redeploy = true;
            Plan::Update { request, reason }
        }
        Plan::Nothing | Plan::NotConverging(_) => Plan::Update {
            request: UpdateAgentRequest {
                config: desired.config.clone(),
                resets: Resets(Vec::new()),
                force_redeploy: true,
            },
            reason: UpdateReason::SecretRotation(
                due.iter()
                    .map(|r| format!("{} revision {}", r.name, r.revision))
                    .collect(),
            ),
        },
        other => other,
    }
}

/// Whether a change of `set` gives an agent whose status has caught up (see
/// [`super::lanes::caught_up`]) anything to do: a ready revision it has not recorded, or a
/// failure to report. A set provisioning new values leaves a running agent as it is until the
/// set is ready again, so the watch does not wake every agent of every set it lists.
pub fn concerns(status: &PipecatAgentStatus, set: &ManagedSet) -> bool {
    match set.state {
        SetState::Ready(revision) => {
            let recorded = status
                .secret_set_revisions
                .iter()
                .filter(|r| r.name == set.name)
                .map(|r| r.revision)
                .max()
                .unwrap_or(0);
            recorded < revision
        }
        SetState::Failed(_) => true,
        SetState::Pending(_) => false,
    }
}

/// The current ready revisions of the managed sets (what a new deployment gets).
pub fn current(sets: &[ManagedSet]) -> Vec<SecretSetRevision> {
    decide(&[], None, sets, None, true, SecretRotation::Ignore).record
}

/// A pass's plan for an existing agent with rotations folded in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What to send.
    pub plan: Plan,
    /// The redeploy to announce in the status before sending the plan (`None`: no rotation
    /// is sent).
    pub announce: Option<PendingRotation>,
    /// `status.secretSetRevisions` after a successful pass.
    pub record: Vec<SecretSetRevision>,
    /// The deployment readiness waits for (the redeploy found to have happened replaces the
    /// deployment the status asked for).
    pub requested: Option<RequestedDeployment>,
}

/// Folds the rotations into `plan` for an existing agent `observed` whose latest status is
/// `status`. `first`: nothing was recorded as applied yet.
pub fn step(
    plan: Plan,
    desired: &Desired,
    status: &PipecatAgentStatus,
    sets: &[ManagedSet],
    observed: &Agent,
    first: bool,
    policy: SecretRotation,
) -> Step {
    let deployment = observed.desired_deployment();
    let mut decision = decide(
        &status.secret_set_revisions,
        status.pending_rotation.as_ref(),
        sets,
        deployment,
        first,
        policy,
    );
    if policy != SecretRotation::RedeployIncludingImagePull {
        // A running agent holds its environment values, but never reads its pull credentials
        // again: new instances pull with the image-pull set's values by name. So only the env
        // set's rotations are worth a redeploy (the pull set's revision is still recorded).
        decision
            .due
            .retain(|r| desired.config.secret_set.as_deref() == Some(r.name.as_str()));
    }
    let plan = force(plan, desired, &decision.due);
    let announce = (!decision.due.is_empty() && matches!(plan, Plan::Update { .. })).then(|| {
        // Every current revision, not only the due ones: the new deployment gets them all,
        // and an announcement replaces an earlier one that may not be recorded yet.
        PendingRotation {
            revisions: decision.record.clone(),
            replaces: deployment.map(str::to_string),
        }
    });
    let requested = match &decision.reached {
        Some(p) => Some(RequestedDeployment {
            id: deployment.unwrap_or_default().to_string(),
            replaces: p.replaces.clone(),
        }),
        None => status.requested_deployment.clone(),
    };
    Step {
        plan,
        announce,
        record: decision.record,
        requested,
    }
}

#[cfg(test)]
mod tests;
