//! Planning: desired spec + observed remote agent + what was last applied -> what to do.
//!
//! A pure function over plain values, so the decisions are unit-tested without a server. Every
//! update can roll a new deployment, so an unchanged resource must plan [`Plan::Nothing`], and
//! an update Pipecat Cloud did not take is never sent again for the same spec and the same
//! remote values ([`Plan::NotConverging`]).

use super::compare::{Mismatch, compare};
use super::desired::Desired;
use crate::cloud::types::{Agent, CreateAgentRequest, Resets, UpdateAgentRequest};

pub use super::desired::{desired, desired_from_spec, fingerprint};

/// Drift corrections in a row (the agent changed elsewhere again after each) before the
/// operator stops restoring it and reports `NotConverging`.
pub const MAX_DRIFT_CORRECTIONS: u32 = 3;

/// What was last applied successfully, and what became of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastApplied {
    /// Fingerprint of the configuration last sent.
    pub config_hash: Option<String>,
    /// Redeploy token last sent (or recorded at creation).
    pub redeploy_token: Option<String>,
    /// An update Pipecat Cloud did not take: for that configuration, the fields kept these
    /// remote values.
    pub refused: Option<Refusal>,
    /// Drift corrections in a row.
    pub drift_corrections: u32,
    /// The agent's region as last known (the answer may not carry it).
    pub region: Option<String>,
}

/// An update the server did not take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The configuration that was sent.
    pub config_hash: String,
    /// What the fields still held afterwards.
    pub mismatches: Vec<Mismatch>,
}

/// Why an update is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateReason {
    /// The spec changed since the last apply and the remote agent differs in these fields.
    SpecChanged(Vec<&'static str>),
    /// The spec is unchanged but the remote agent differs in these fields (changed elsewhere).
    Drift(Vec<&'static str>),
    /// The spec changed in fields the API does not report back, so it cannot be compared.
    Unobservable(Vec<&'static str>),
    /// `redeployToken` changed.
    Redeploy,
    /// Taking over an existing agent (`spec.adopt`): the whole spec is sent once.
    Adopt,
    /// Managed secret sets were rotated (`<set> revision <n>` each): forcing a new deployment
    /// so the agent gets the new values.
    SecretRotation(Vec<String>),
}

impl UpdateReason {
    /// A short sentence for logs and events.
    pub fn describe(&self) -> String {
        match self {
            UpdateReason::SpecChanged(f) => format!("spec changed ({})", f.join(", ")),
            UpdateReason::Drift(f) => format!(
                "agent was changed outside Kubernetes ({}); restoring the spec",
                f.join(", ")
            ),
            UpdateReason::Unobservable(f) => format!("spec changed ({})", f.join(", ")),
            UpdateReason::Redeploy => "redeployToken changed: forcing a new deployment".into(),
            UpdateReason::Adopt => {
                "taking over the existing agent (spec.adopt): sending the whole spec".into()
            }
            UpdateReason::SecretRotation(sets) => format!(
                "secret set rotated ({}): forcing a new deployment with the new values",
                sets.join(", ")
            ),
        }
    }
}

/// Why the operator stopped sending an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stuck {
    /// The same update was sent for this spec and Pipecat Cloud kept these values.
    Refused(Vec<Mismatch>),
    /// The update detached a secret set (the spec no longer names one the agent has) and
    /// Pipecat Cloud refused it or kept the set: its API documents no way to detach one.
    RemovalRefused(Vec<Mismatch>),
    /// The agent was changed elsewhere again after each of the last corrections.
    DriftLoop(Vec<Mismatch>),
}

/// `Synced=False` reason of [`Stuck::RemovalRefused`].
pub const SECRET_SET_REMOVAL_REFUSED: &str = "SecretSetRemovalRefused";

impl Stuck {
    /// An update for `desired` that Pipecat Cloud did not take (refused, or answered with these
    /// fields unchanged): [`Stuck::RemovalRefused`] when it detached a secret set the agent
    /// still has, else [`Stuck::Refused`].
    pub fn refused(desired: &Desired, mismatches: Vec<Mismatch>) -> Self {
        if mismatches.iter().any(|m| detaches(desired, m.field)) {
            Stuck::RemovalRefused(mismatches)
        } else {
            Stuck::Refused(mismatches)
        }
    }

    /// The fields and remote values concerned.
    pub fn mismatches(&self) -> &[Mismatch] {
        match self {
            Stuck::Refused(m) | Stuck::RemovalRefused(m) | Stuck::DriftLoop(m) => m,
        }
    }

    /// The `Synced=False` (and `Stalled=True`) reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Stuck::RemovalRefused(_) => SECRET_SET_REMOVAL_REFUSED,
            Stuck::Refused(_) | Stuck::DriftLoop(_) => crate::runtime::conditions::NOT_CONVERGING,
        }
    }

    /// A message a person can act on.
    pub fn describe(&self, agent: &str) -> String {
        let fields = self
            .mismatches()
            .iter()
            .map(|m| format!("{} (Pipecat Cloud has {})", m.field, m.remote))
            .collect::<Vec<_>>()
            .join(", ");
        match self {
            Stuck::Refused(_) => format!(
                "Pipecat Cloud did not take the spec's {fields} for agent {agent}; the operator does not send the same change again: change the spec (or fix the agent in Pipecat Cloud)"
            ),
            Stuck::RemovalRefused(_) => format!(
                "Pipecat Cloud did not detach the secret set from agent {agent} ({fields}): its API documents no way to remove a secret set from an agent, and it refused or ignored the update. The operator does not send it again. To go on: name another set in the spec (secretSet / imagePullSecretSet), or detach the set in the Pipecat Cloud dashboard, or recreate the agent (delete this PipecatAgent with deletionPolicy: Delete and apply it again)"
            ),
            Stuck::DriftLoop(_) => format!(
                "agent {agent} was changed outside Kubernetes again after {MAX_DRIFT_CORRECTIONS} corrections ({fields}); the operator stopped restoring it: stop the other writer, then change the spec or restart the operator"
            ),
        }
    }
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The agent does not exist: create it.
    Create(CreateAgentRequest),
    /// The agent differs from the spec (or a redeploy was asked for): send the whole body.
    Update {
        /// The body.
        request: UpdateAgentRequest,
        /// Why.
        reason: UpdateReason,
    },
    /// The agent already matches the spec (a successful pass records the spec's fingerprint
    /// and token as applied, whether or not an update was needed).
    Nothing,
    /// The agent differs, but sending the update again would not help.
    NotConverging(Stuck),
    /// The agent exists in another region than the spec asks: an update cannot fix it.
    RegionMismatch {
        /// The spec's region.
        desired: String,
        /// The agent's region.
        actual: String,
    },
}

/// Decides what to do.
pub fn plan(desired: &Desired, observed: Option<&Agent>, last: &LastApplied) -> Plan {
    let Some(observed) = observed else {
        return Plan::Create(CreateAgentRequest {
            service_name: desired.name.clone(),
            region: desired.region.clone(),
            config: desired.config.clone(),
        });
    };
    let actual_region = observed.region.as_ref().or(last.region.as_ref());
    if let (Some(want), Some(have)) = (&desired.region, actual_region)
        && want != have
    {
        return Plan::RegionMismatch {
            desired: want.clone(),
            actual: have.clone(),
        };
    }
    let spec_changed = !desired.is_applied(last.config_hash.as_deref());
    // The first apply (creation or adoption) records the token without forcing a redeploy;
    // removing the token asks for nothing.
    let redeploy = last.config_hash.is_some()
        && desired.redeploy_token.is_some()
        && desired.redeploy_token != last.redeploy_token;
    let cmp = compare(&desired.config, &desired.omitted, observed);
    let reason = if !cmp.differ.is_empty() {
        if spec_changed {
            UpdateReason::SpecChanged(cmp.differing())
        } else {
            UpdateReason::Drift(cmp.differing())
        }
    } else if spec_changed
        && last.config_hash.is_some()
        && (!cmp.unknown.is_empty() || !cmp.resets.is_empty())
    {
        // With nothing differing, every reset is of a field the answer does not report: a
        // removal from the spec the comparison cannot see (e.g. `krispViva` against an
        // answer without it) is sent too.
        if cmp.unknown.is_empty() {
            UpdateReason::Unobservable(cmp.resets.iter().map(|r| r.field()).collect())
        } else {
            UpdateReason::Unobservable(cmp.unknown.clone())
        }
    } else if redeploy {
        UpdateReason::Redeploy
    } else {
        return Plan::Nothing;
    };
    if !redeploy
        && let Some(refusal) = &last.refused
        && desired.is_applied(Some(&refusal.config_hash))
        && refusal.mismatches == cmp.differ
    {
        return Plan::NotConverging(Stuck::refused(desired, cmp.differ));
    }
    if matches!(reason, UpdateReason::Drift(_)) && last.drift_corrections >= MAX_DRIFT_CORRECTIONS {
        return Plan::NotConverging(Stuck::DriftLoop(cmp.differ));
    }
    Plan::Update {
        request: UpdateAgentRequest {
            config: desired.config.clone(),
            resets: Resets(cmp.resets),
            force_redeploy: redeploy,
        },
        reason,
    }
}

/// True when the spec leaves out `field`, a secret set reference: an update detaches it.
pub fn detaches(desired: &Desired, field: &str) -> bool {
    match field {
        "secretSet" => desired.config.secret_set.is_none(),
        "imagePullSecretSet" => desired.config.image_pull_secret_set.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
