//! The types several steps of an agent's pass share: what a pass did ([`Outcome`], read by
//! metrics, logs and events alike, so a result can never be reported under one name and
//! counted under another), and its result ([`Applied`]).

use super::desired::Desired;
use super::plan::{Stuck, UpdateReason};
use super::readiness::{Readiness, readiness};
use crate::cloud::types::Agent;
use crate::crd::{RequestedDeployment, SecretSetRevision};

/// The result of a successful pass over a live resource: what was done, the agent as Pipecat
/// Cloud now reports it, the deployment this operator waits for, and whether Pipecat Cloud took
/// the spec ([`super::assess`] makes it; [`super::status`] and [`super::events`] read it).
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
    pub(super) fn new(
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

/// What a pass did to the remote agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Created it.
    Created,
    /// Found it already there and took it over.
    Adopted,
    /// Sent an update.
    Updated(UpdateReason),
    /// Nothing to do.
    Unchanged,
    /// An update was needed, but Pipecat Cloud did not take the same one before (or the agent
    /// keeps being changed elsewhere): nothing was sent.
    NotConverging,
    /// Deleted it (or it was already gone).
    Deleted,
    /// No agent was ever created for the resource (no credentials): nothing to delete.
    NothingToDelete,
    /// Left it in place when the resource went away.
    Orphaned(OrphanReason),
}

/// Why an agent was left in place on deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrphanReason {
    /// `deletionPolicy: Orphan`.
    Policy,
    /// An older resource (namespace/name) owns the agent name with the same account.
    OwnedBy(String),
}

impl Outcome {
    /// The bounded label of `pipecat_operator_reconciles_total{result}` and of the `decision`
    /// log field.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Adopted => "adopted",
            Outcome::Updated(_) => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::NotConverging => "not_converging",
            Outcome::Deleted | Outcome::NothingToDelete => "deleted",
            Outcome::Orphaned(_) => "orphaned",
        }
    }

    /// True when the pass changed something remotely or released the resource (logged at
    /// info); an unchanged pass is logged at debug (one line per agent per resync otherwise).
    pub fn is_notable(&self) -> bool {
        !matches!(self, Outcome::Unchanged | Outcome::NotConverging)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_documented_metric_label() {
        // The labels documented on `pipecat_operator_reconciles_total` (besides "error").
        let cases = [
            (Outcome::Created, "created"),
            (Outcome::Adopted, "adopted"),
            (Outcome::Updated(UpdateReason::Redeploy), "updated"),
            (Outcome::Unchanged, "unchanged"),
            (Outcome::NotConverging, "not_converging"),
            (Outcome::Deleted, "deleted"),
            (Outcome::NothingToDelete, "deleted"),
            (Outcome::Orphaned(OrphanReason::Policy), "orphaned"),
            (
                Outcome::Orphaned(OrphanReason::OwnedBy("ns/a".into())),
                "orphaned",
            ),
        ];
        for (outcome, label) in cases {
            assert_eq!(outcome.label(), label, "{outcome:?}");
        }
        assert!(!Outcome::Unchanged.is_notable());
        assert!(Outcome::Orphaned(OrphanReason::Policy).is_notable());
    }
}
