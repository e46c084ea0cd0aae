//! Which priority a pass over an agent runs in ([`crate::runtime::lanes`] is the machinery):
//!
//! - a *change* is anything the status has not caught up with: a new object, a spec change
//!   (`generation` differs from `status.observedGeneration`), a deletion, a pending rotation,
//!   changed credentials. Changes run in kube-runtime's controller ([`super::watch`]), whose
//!   slots they never share with background work;
//! - a *follow-up* is a pass of the same controller on an object whose spec the status already
//!   shows but that is not caught up otherwise ([`follow_up`]): a roll-out being polled, an
//!   error being retried;
//! - *background* work is the periodic refresh of agents that are [`caught_up`]
//!   ([`super::pacer`]).

use crate::crd::{PipecatAgent, PipecatAgentStatus};
use crate::runtime::conditions::SYNCED;

/// True when the status shows the current spec live and the last pass successful: such an
/// object belongs to the background lane (after a restart, before this process knows more).
pub fn caught_up(obj: &PipecatAgent, status: Option<&PipecatAgentStatus>) -> bool {
    let Some(status) = status else { return false };
    obj.metadata.deletion_timestamp.is_none()
        && status.ready
        && status.observed_generation == obj.metadata.generation
        // A rotation's redeploy announced and not yet recorded (the operator stopped in the
        // middle): the next pass must settle it, not wait for a resync.
        && status.pending_rotation.is_none()
        && !status
            .conditions
            .iter()
            .any(|c| c.type_ == SYNCED && c.status == "False")
}

/// True when a controller pass over `obj` is a follow-up ([`crate::cloud::Lane::FollowUp`]): the latest
/// status (`status`: this process's copy, else the object's) already shows its spec
/// (`observedGeneration` is its generation, no deletion, no rotation's redeploy pending) but is
/// not caught up otherwise: a roll-out being polled (not ready) or an error being retried
/// (`Synced=False`). A failed pass does not move `observedGeneration`, so the retry of a spec
/// change that never reached Pipecat Cloud is still a change; a follow-up's write is a change
/// anyway. A caught-up object in the controller was woken by something else (its credentials
/// Secret, a secret set): a change.
pub fn follow_up(obj: &PipecatAgent, status: Option<&PipecatAgentStatus>) -> bool {
    let Some(st) = status else { return false };
    obj.metadata.deletion_timestamp.is_none()
        && st.observed_generation.is_some()
        && st.observed_generation == obj.metadata.generation
        && st.pending_rotation.is_none()
        && !caught_up(obj, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str) -> PipecatAgent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": name, "namespace": "ns", "uid": name, "generation": 2},
            "spec": {"image": "a/b:1"}
        }))
        .unwrap()
    }

    #[test]
    fn only_caught_up_objects_are_background_work() {
        let a = agent("a");
        let ready = PipecatAgentStatus {
            ready: true,
            observed_generation: Some(2),
            ..Default::default()
        };
        assert!(caught_up(&a, Some(&ready)));
        assert!(!caught_up(&a, None), "new: no status yet");
        let old_generation = PipecatAgentStatus {
            observed_generation: Some(1),
            ..ready.clone()
        };
        assert!(!caught_up(&a, Some(&old_generation)), "a spec change");
        let rolling = PipecatAgentStatus {
            ready: false,
            ..ready.clone()
        };
        assert!(!caught_up(&a, Some(&rolling)), "a roll-out");
        let mut failing = ready.clone();
        failing.conditions.push(
            serde_json::from_value(serde_json::json!({
                "type": "Synced", "status": "False", "reason": "ApiUnavailable",
                "message": "x", "lastTransitionTime": "2026-01-01T00:00:00Z"
            }))
            .unwrap(),
        );
        assert!(!caught_up(&a, Some(&failing)), "an error to retry");
        let mut deleting = a.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert!(!caught_up(&deleting, Some(&ready)), "a deletion");
        let rotating = PipecatAgentStatus {
            pending_rotation: Some(crate::crd::PendingRotation::default()),
            ..ready.clone()
        };
        assert!(!caught_up(&a, Some(&rotating)), "a redeploy to settle");
    }

    #[test]
    fn follow_ups_are_passes_on_a_spec_the_status_already_shows() {
        let a = agent("a");
        let ready = PipecatAgentStatus {
            ready: true,
            observed_generation: Some(2),
            ..Default::default()
        };
        let synced_false = serde_json::from_value(serde_json::json!({
            "type": "Synced", "status": "False", "reason": "ApiUnavailable",
            "message": "x", "lastTransitionTime": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let rolling = PipecatAgentStatus {
            ready: false,
            ..ready.clone()
        };
        assert!(follow_up(&a, Some(&rolling)), "a roll-out being polled");
        let mut failing = ready.clone();
        failing.conditions.push(synced_false);
        assert!(follow_up(&a, Some(&failing)), "an error being retried");

        assert!(
            !follow_up(&a, Some(&ready)),
            "caught up: woken by its credentials or a secret set, a change"
        );
        assert!(!follow_up(&a, None), "new: no status yet");
        let unobserved = PipecatAgentStatus {
            observed_generation: None,
            ..rolling.clone()
        };
        let mut no_generation = a.clone();
        no_generation.metadata.generation = None;
        assert!(
            !follow_up(&no_generation, Some(&unobserved)),
            "nothing observed yet"
        );
        for st in [&rolling, &failing] {
            let old_generation = PipecatAgentStatus {
                observed_generation: Some(1),
                ..st.clone()
            };
            assert!(
                !follow_up(&a, Some(&old_generation)),
                "a spec change (or its retry) is a change"
            );
            let rotating = PipecatAgentStatus {
                pending_rotation: Some(crate::crd::PendingRotation::default()),
                ..st.clone()
            };
            assert!(!follow_up(&a, Some(&rotating)), "a redeploy to settle");
            let mut deleting = a.clone();
            deleting.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
            assert!(!follow_up(&deleting, Some(st)), "a deletion");
        }
    }
}
