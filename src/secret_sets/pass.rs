//! The types several steps of a secret set's pass share: the set it works on ([`Target`]), the
//! remote set as observed ([`Remote`]), what a pass did ([`Outcome`], read by the status, the
//! events, the metrics and the logs alike), its result ([`Synced`]), and an event to publish
//! ([`Note`]).

use crate::crd::secret_set::{DEFAULT_REGION, PipecatSecretSet, PipecatSecretSetStatus};

/// The remote set a pass works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Remote set name.
    pub set: String,
    /// Its region.
    pub region: String,
}

impl Target {
    /// The set of `obj` (pure): as its status `old` records it once the resource manages a
    /// set, from the spec before.
    pub fn of(obj: &PipecatSecretSet, old: &PipecatSecretSetStatus) -> Self {
        let set = old
            .set_name
            .clone()
            .unwrap_or_else(|| obj.set_name().to_string());
        let region = old
            .region
            .clone()
            .or_else(|| obj.spec.region.clone())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        Target { set, region }
    }
}

/// Provisioning state of a remote set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteStatus {
    /// Being provisioned.
    Pending,
    /// Usable.
    Ready,
    /// Provisioning failed.
    Failed,
}

impl RemoteStatus {
    /// Pipecat Cloud's word; an unknown or missing one is taken as pending (wait and look
    /// again rather than send).
    pub fn parse(status: Option<&str>) -> Self {
        match status {
            Some("ready") => RemoteStatus::Ready,
            Some("failed") => RemoteStatus::Failed,
            _ => RemoteStatus::Pending,
        }
    }

    /// As written in `status.remoteStatus`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RemoteStatus::Pending => "pending",
            RemoteStatus::Ready => "ready",
            RemoteStatus::Failed => "failed",
        }
    }
}

/// The remote set as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// `secret` or `imagePullSecret`, when reported.
    pub kind: Option<String>,
    /// Region, when reported.
    pub region: Option<String>,
    /// Provisioning state.
    pub status: RemoteStatus,
    /// Why provisioning failed.
    pub error_message: Option<String>,
    /// Key names (sorted).
    pub keys: Vec<String>,
}

/// What a pass did to the remote set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent every value.
    Put {
        /// The set was created.
        created: bool,
        /// The set was taken over.
        adopted: bool,
    },
    /// Removed a key that left the Secret.
    DeletedKey(String),
    /// Pipecat Cloud is provisioning a change (or refused a write with 409 for that reason).
    Waited,
    /// Nothing to send.
    Nothing,
    /// The values were already sent again for this listing, which still lacks these keys:
    /// nothing is sent until the Secret or the listing changes.
    NotConverging {
        /// The Secret's keys Pipecat Cloud does not list.
        missing: Vec<String>,
    },
}

impl Outcome {
    /// The `result` label of `pipecat_operator_secret_set_reconciles_total` for a successful
    /// pass.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Put { created: true, .. } => "created",
            Outcome::Put { adopted: true, .. } => "adopted",
            Outcome::Put { .. } => "updated",
            Outcome::DeletedKey(_) => "key_deleted",
            Outcome::Waited => "waiting",
            Outcome::Nothing => "unchanged",
            Outcome::NotConverging { .. } => "not_converging",
        }
    }
}

/// The result of a successful pass over a live resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    /// Remote set name.
    pub set: String,
    /// Its region.
    pub region: String,
    /// True when the resource manages the set after this pass.
    pub managed: bool,
    /// The set as read at the start of the pass.
    pub remote: Option<Remote>,
    /// What was done.
    pub outcome: Outcome,
    /// Digest of the Secret's values.
    pub digest: String,
    /// How many values the Secret gives the set.
    pub count: usize,
}

/// An event to publish: the runtime's, which every kind's events are.
pub use crate::runtime::events::Note;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_metric_label() {
        let put = |created, adopted| Outcome::Put { created, adopted };
        let cases = [
            (put(true, false), "created"),
            (put(false, true), "adopted"),
            (put(false, false), "updated"),
            (Outcome::DeletedKey("A".into()), "key_deleted"),
            (Outcome::Waited, "waiting"),
            (Outcome::Nothing, "unchanged"),
            (
                Outcome::NotConverging {
                    missing: vec!["A".into()],
                },
                "not_converging",
            ),
        ];
        for (outcome, label) in cases {
            assert_eq!(outcome.label(), label, "{outcome:?}");
        }
    }
}
