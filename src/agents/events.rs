//! Events: what a person reading `kubectl describe` should learn from a pass. [`transitions`]
//! decides (pure: remote actions, readiness flips, new errors); [`crate::runtime::events::Publisher`] sends them in the
//! background, since an event is never worth delaying or failing a reconcile for: a bounded
//! queue, a bounded number of requests at once, and no memory of what was sent.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::Error;
use super::pass::Applied;
use super::pass::{OrphanReason, Outcome};
use crate::crd::PipecatAgentStatus;
use crate::runtime::conditions::{NOT_CONVERGING, READY, SYNCED};
use crate::runtime::events::Note;

/// The event of a remote action (created, adopted, updated, deleted, orphaned), if any.
pub fn action(outcome: &Outcome, name: &str, deployment: Option<&str>) -> Option<Note> {
    let deployment = deployment.unwrap_or("(pending)");
    Some(match outcome {
        Outcome::Created => Note::normal(
            "Created",
            format!("created agent {name} in Pipecat Cloud (deployment {deployment})"),
        ),
        Outcome::Adopted => Note::normal(
            "Adopted",
            format!(
                "agent {name} already existed in Pipecat Cloud and is now managed by this resource"
            ),
        ),
        Outcome::Updated(reason) => Note::normal(
            "Updated",
            format!(
                "updated agent {name}: {} (deployment {deployment})",
                reason.describe()
            ),
        ),
        Outcome::Deleted => Note::normal(
            "Deleted",
            format!("deleted agent {name} from Pipecat Cloud"),
        ),
        Outcome::Orphaned(OrphanReason::Policy) => Note::normal(
            "Orphaned",
            format!("deletionPolicy is Orphan: agent {name} was left in Pipecat Cloud"),
        ),
        Outcome::Orphaned(OrphanReason::OwnedBy(owner)) => Note::normal(
            "Orphaned",
            format!("agent {name} belongs to PipecatAgent {owner}: it was not deleted"),
        ),
        Outcome::Unchanged | Outcome::NotConverging | Outcome::NothingToDelete => return None,
    })
}

/// The events of a pass that moved the status from `old` to `new`.
pub fn transitions(
    old: &PipecatAgentStatus,
    new: &PipecatAgentStatus,
    result: &Result<Applied, Error>,
) -> Vec<Note> {
    let cond =
        |s: &PipecatAgentStatus, t: &str| s.conditions.iter().find(|c| c.type_ == t).cloned();
    let same = |a: &Option<Condition>, b: &Condition| {
        a.as_ref().map(|a| (&a.status, &a.reason, &a.message))
            == Some((&b.status, &b.reason, &b.message))
    };
    let mut notes = Vec::new();
    if let Ok(applied) = result
        && let Some(note) = action(
            &applied.outcome,
            &applied.desired.name,
            applied.agent.desired_deployment(),
        )
    {
        notes.push(note);
    }
    let (old_ready, new_ready) = (cond(old, READY), cond(new, READY));
    if let Some(n) = &new_ready
        && !same(&old_ready, n)
    {
        let failed = result.as_ref().is_ok_and(|a| a.readiness.failed);
        let was_true = old_ready.is_some_and(|o| o.status == "True");
        if n.status == "True" && !was_true {
            notes.push(Note::normal("DeploymentReady", n.message.clone()));
        } else if failed {
            notes.push(Note::warning("DeploymentFailed", n.message.clone()));
        }
    }
    if let Some(n) = cond(new, SYNCED)
        && !same(&cond(old, SYNCED), &n)
    {
        match result {
            // Waiting for a secret set that provisions (a rotation, a new set) is expected;
            // a failed one is a warning like any error.
            Err(e @ Error::SecretSetNotReady { failed: false, .. }) => {
                notes.push(Note::normal(e.reason(), n.message))
            }
            Err(e) => notes.push(Note::warning(e.reason(), n.message)),
            Ok(a) if a.stuck.is_some() => notes.push(Note::warning(
                a.stuck.as_ref().map_or(NOT_CONVERGING, |s| s.reason()),
                n.message,
            )),
            Ok(_) => {}
        }
    }
    notes
}

/// Warns, once per spec generation (when the status first shows it), about spec fields the
/// operator accepts but never sends.
pub fn ignored_fields(
    spec: &crate::crd::PipecatAgentSpec,
    old: &PipecatAgentStatus,
    new: &PipecatAgentStatus,
) -> Option<Note> {
    let first_seen =
        new.observed_generation.is_some() && new.observed_generation != old.observed_generation;
    (first_seen && spec.enable_krisp.is_some()).then(|| {
        Note::warning(
            ENABLE_KRISP_IGNORED,
            crate::crd::warnings::ENABLE_KRISP_WARNING.into(),
        )
    })
}

/// The event reason of [`ignored_fields`].
pub const ENABLE_KRISP_IGNORED: &str = "EnableKrispIgnored";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::plan::{self, UpdateReason};
    use crate::agents::readiness::readiness;
    use crate::agents::status::next_status;
    use crate::cloud::types::Agent;
    use crate::crd::PipecatAgent;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn obj() -> PipecatAgent {
        let mut a: PipecatAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": "bot", "namespace": "ns"},
            "spec": {"image": "acme/bot:1"}
        }))
        .unwrap();
        a.metadata.generation = Some(1);
        a
    }

    fn remote(desired: &str, reconciled: Option<&str>, ready: bool) -> Agent {
        Agent {
            name: "bot".into(),
            desired_deployment_id: Some(desired.into()),
            reconciled_deployment_id: reconciled.map(Into::into),
            ready: Some(ready),
            ..Default::default()
        }
    }

    fn pass(agent: Agent, outcome: Outcome) -> Result<Applied, Error> {
        Ok(Applied {
            readiness: readiness(&agent, None),
            agent,
            outcome,
            desired: plan::desired(&obj()),
            requested: None,
            stuck: None,
            secret_sets: Vec::new(),
        })
    }

    fn reasons(notes: &[Note]) -> Vec<&str> {
        notes.iter().map(|n| n.reason.as_str()).collect()
    }

    #[test]
    fn enable_krisp_is_warned_about_once_per_generation() {
        let mut spec = obj().spec;
        let st = |g: Option<i64>| PipecatAgentStatus {
            observed_generation: g,
            ..Default::default()
        };
        assert_eq!(ignored_fields(&spec, &st(None), &st(Some(1))), None);
        spec.enable_krisp = Some(true);
        let note = ignored_fields(&spec, &st(None), &st(Some(1))).expect("warned");
        assert!(note.warning);
        assert_eq!(note.reason, ENABLE_KRISP_IGNORED);
        assert!(note.message.contains("krispViva"), "{}", note.message);
        assert_eq!(ignored_fields(&spec, &st(Some(1)), &st(Some(1))), None);
        assert!(ignored_fields(&spec, &st(Some(1)), &st(Some(2))).is_some());
        assert_eq!(ignored_fields(&spec, &st(Some(1)), &st(None)), None);
    }

    #[test]
    fn create_then_ready_then_quiet() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let empty = PipecatAgentStatus::default();
        let created = pass(remote("d1", None, false), Outcome::Created);
        let s1 = next_status(&o, &empty, &created, &t);
        assert_eq!(reasons(&transitions(&empty, &s1, &created)), ["Created"]);
        let n = &transitions(&empty, &s1, &created)[0];
        assert!(!n.warning && n.message.contains("deployment d1"), "{n:?}");

        let live = pass(remote("d1", Some("d1"), true), Outcome::Unchanged);
        let s2 = next_status(&o, &s1, &live, &t);
        assert_eq!(reasons(&transitions(&s1, &s2, &live)), ["DeploymentReady"]);
        let s3 = next_status(&o, &s2, &live, &t);
        assert!(
            transitions(&s2, &s3, &live).is_empty(),
            "nothing new, nothing said"
        );
    }

    #[test]
    fn an_update_names_its_reason_and_a_failure_warns_once() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let live = pass(remote("d1", Some("d1"), true), Outcome::Unchanged);
        let s1 = next_status(&o, &PipecatAgentStatus::default(), &live, &t);
        let updated = pass(
            remote("d2", Some("d1"), true),
            Outcome::Updated(UpdateReason::SpecChanged(vec!["image"])),
        );
        let s2 = next_status(&o, &s1, &updated, &t);
        let notes = transitions(&s1, &s2, &updated);
        assert_eq!(reasons(&notes), ["Updated"]);
        assert!(
            notes[0].message.contains("spec changed (image)"),
            "{notes:?}"
        );

        let mut crashing = remote("d2", Some("d1"), false);
        crashing.errors = Some(vec![crate::cloud::types::DeploymentError {
            code: Some("PCC_CRASH".into()),
            message: Some("exit 1".into()),
        }]);
        let failed = pass(crashing, Outcome::Unchanged);
        let s3 = next_status(&o, &s2, &failed, &t);
        let notes = transitions(&s2, &s3, &failed);
        assert_eq!(reasons(&notes), ["DeploymentFailed"]);
        assert!(notes[0].warning);
        let s4 = next_status(&o, &s3, &failed, &t);
        assert!(
            transitions(&s3, &s4, &failed).is_empty(),
            "the same failure is not repeated"
        );
    }

    #[test]
    fn a_new_error_warns_with_its_reason_once() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let empty = PipecatAgentStatus::default();
        let err: Result<Applied, Error> = Err(Error::CredentialsNotFound("no key".into()));
        let s1 = next_status(&o, &empty, &err, &t);
        let notes = transitions(&empty, &s1, &err);
        assert_eq!(reasons(&notes), ["CredentialsNotFound"]);
        assert!(notes[0].warning && notes[0].message == "no key");
        let s2 = next_status(&o, &s1, &err, &t);
        assert!(transitions(&s1, &s2, &err).is_empty());
    }

    #[test]
    fn not_converging_warns_once() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let live = pass(remote("d1", Some("d1"), true), Outcome::Unchanged);
        let s1 = next_status(&o, &PipecatAgentStatus::default(), &live, &t);
        let mut stuck = live.as_ref().unwrap().clone();
        stuck.outcome = Outcome::NotConverging;
        stuck.stuck = Some(crate::agents::plan::Stuck::Refused(vec![
            crate::agents::compare::Mismatch {
                field: "autoScaling",
                remote: "minAgents 1, maxAgents 5".into(),
            },
        ]));
        let stuck = Ok(stuck);
        let s2 = next_status(&o, &s1, &stuck, &t);
        let notes = transitions(&s1, &s2, &stuck);
        assert_eq!(reasons(&notes), ["NotConverging"]);
        assert!(notes[0].warning);
        let s3 = next_status(&o, &s2, &stuck, &t);
        assert!(transitions(&s2, &s3, &stuck).is_empty(), "said once");
    }

    #[test]
    fn waiting_for_a_provisioning_set_is_normal_and_a_failed_set_warns() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let empty = PipecatAgentStatus::default();
        let wait = |failed| -> Result<Applied, Error> {
            Err(Error::SecretSetNotReady {
                message: format!("agent bot waits for secret set env (failed: {failed})"),
                failed,
            })
        };
        let pending = wait(false);
        let s1 = next_status(&o, &empty, &pending, &t);
        let notes = transitions(&empty, &s1, &pending);
        assert_eq!(reasons(&notes), ["SecretSetNotReady"]);
        assert!(!notes[0].warning, "{notes:?}");
        assert!(notes[0].message.contains("secret set env"));
        let failed = wait(true);
        let s2 = next_status(&o, &s1, &failed, &t);
        let notes = transitions(&s1, &s2, &failed);
        assert_eq!(reasons(&notes), ["SecretSetNotReady"]);
        assert!(notes[0].warning);
    }

    #[test]
    fn deletion_outcomes_have_their_events() {
        let n = action(&Outcome::Orphaned(OrphanReason::Policy), "bot", None).unwrap();
        assert_eq!(n.reason, "Orphaned");
        assert!(n.message.contains("deletionPolicy is Orphan"));
        let n = action(
            &Outcome::Orphaned(OrphanReason::OwnedBy("a/b".into())),
            "bot",
            None,
        )
        .unwrap();
        assert!(n.message.contains("belongs to PipecatAgent a/b"));
        assert_eq!(
            action(&Outcome::Deleted, "bot", None).unwrap().reason,
            "Deleted"
        );
        assert_eq!(action(&Outcome::Unchanged, "bot", None), None);
        assert_eq!(action(&Outcome::NothingToDelete, "bot", None), None);
    }
}
