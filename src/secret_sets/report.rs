//! The report step of a secret set's pass: the status after it ([`next_status`], pure and
//! deterministic: an unchanged set costs no write), its server-side-apply [`write()`], and the
//! events a person should read ([`notes`], pure), as one [`report`].
//!
//! `revision` goes up by one each time a `PUT` sends values whose digest differs from
//! `valuesDigest`; `readyRevision` follows it once Pipecat Cloud reports the set ready holding
//! exactly the Secret's keys, with no change of ours pending.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tracing::debug;

use super::context::Context;
use super::error::Error;
use super::pass::{Note, Outcome, RemoteStatus, Synced};
use crate::crd::secret_set::{PipecatSecretSet, PipecatSecretSetStatus, ResentFor};
use crate::runtime::conditions::{CondState, NOT_CONVERGING, READY, SYNCED, set_condition};

/// The report of a pass: the status after it, written when it changed (or a write of it is
/// still owed), its events, and the readiness counted. `old` is the status the pass started
/// from, `result` the pass's.
pub async fn report(
    obj: &PipecatSecretSet,
    ctx: &Context,
    old: &PipecatSecretSetStatus,
    result: &Result<Synced, Error>,
) -> Result<(), Error> {
    // The claim written before a first PUT is part of the status this pass starts from.
    let base = if result.is_ok() {
        ctx.objects.status(obj)
    } else {
        old.clone()
    };
    let new = next_status(obj, &base, result, &Time(jiff::Timestamp::now()));
    if new != base || ctx.objects.unwritten(obj) {
        ctx.objects.status_pending(obj, &new);
        write(&ctx.kube, obj, &new).await?;
        ctx.objects.status_written(obj, &new);
        debug!(set = %obj.set_name(), namespace = obj.namespace().unwrap_or_default(), "secret set status written");
    }
    for note in notes(old, &new, result) {
        ctx.publish(obj, note);
    }
    let ready = new
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True");
    ctx.objects.set_ready(obj, ready);
    Ok(())
}

/// The status after a pass.
pub fn next_status(
    obj: &PipecatSecretSet,
    old: &PipecatSecretSetStatus,
    result: &Result<Synced, Error>,
    now: &Time,
) -> PipecatSecretSetStatus {
    let generation = obj.metadata.generation;
    let mut st = old.clone();
    st.observed_generation = generation;
    let synced = match result {
        Err(e) => {
            let cond = CondState::fail(e.reason(), e.to_string());
            // A passing failure of Pipecat Cloud does not make a ready set unusable.
            let transient =
                matches!(e, Error::Cloud { source, .. } if source.kind().is_retryable());
            if !transient || !st.conditions.iter().any(|c| c.type_ == READY) {
                set_condition(&mut st.conditions, READY, cond.clone(), generation, now);
            }
            set_condition(&mut st.conditions, SYNCED, cond, generation, now);
            return st;
        }
        Ok(s) => s,
    };
    let set = &synced.set;
    if synced.managed {
        st.set_name = Some(set.clone());
        st.region = Some(synced.region.clone());
    }
    if let Some(remote) = &synced.remote {
        st.keys = remote.keys.clone();
        st.remote_status = Some(remote.status.as_str().into());
        st.error_message = match remote.status {
            RemoteStatus::Failed => remote.error_message.clone(),
            _ => None,
        };
    } else if synced.managed {
        st.keys.clear();
        st.remote_status = None;
        st.error_message = None;
    }
    let mut in_flight = true;
    let mut not_converging = None;
    let synced_message = match &synced.outcome {
        Outcome::Put {
            created, adopted, ..
        } => {
            if st.values_digest.as_deref() != Some(synced.digest.as_str()) {
                st.revision = Some(st.revision.unwrap_or(0) + 1);
                st.values_digest = Some(synced.digest.clone());
                st.resent_for = None;
            } else if let Some(remote) = &synced.remote {
                // The same values again, for a listing that lacked keys: remembered, so that
                // the same listing afterwards stops the resending.
                st.resent_for = Some(ResentFor {
                    values_digest: synced.digest.clone(),
                    remote_keys: remote.keys.clone(),
                });
            }
            st.remote_status = Some(RemoteStatus::Pending.as_str().into());
            st.error_message = None;
            let what = if *created {
                "created"
            } else if *adopted {
                "adopted"
            } else {
                "updated"
            };
            format!(
                "{what} secret set {set} from Secret {} ({} values, revision {})",
                obj.spec.secret_ref.name,
                synced.count,
                st.revision.unwrap_or(0)
            )
        }
        Outcome::DeletedKey(key) => {
            st.keys.retain(|k| k != key);
            st.remote_status = Some(RemoteStatus::Pending.as_str().into());
            format!(
                "removed key {key} from secret set {set}: it left Secret {}",
                obj.spec.secret_ref.name
            )
        }
        Outcome::Waited => format!("Pipecat Cloud is provisioning secret set {set}"),
        Outcome::NotConverging { missing } => {
            in_flight = false;
            let listed = if st.keys.is_empty() {
                "no key".to_string()
            } else {
                st.keys.join(", ")
            };
            let message = format!(
                "Pipecat Cloud lists {listed} for secret set {set}, without {} from Secret {}, even after the values were sent again: the operator does not send them again for the same listing. Check the set in Pipecat Cloud; a change to the Secret sends the values again",
                missing.join(", "),
                obj.spec.secret_ref.name
            );
            not_converging = Some(message.clone());
            message
        }
        Outcome::Nothing => {
            in_flight = false;
            st.resent_for = None;
            match synced.remote.as_ref().map(|r| &r.status) {
                Some(RemoteStatus::Failed) => format!(
                    "the values of Secret {} were sent to secret set {set}; they are sent again when the Secret changes",
                    obj.spec.secret_ref.name
                ),
                _ => format!(
                    "secret set {set} holds the values of Secret {}",
                    obj.spec.secret_ref.name
                ),
            }
        }
    };
    let synced_state = match &not_converging {
        Some(_) => CondState::fail(NOT_CONVERGING, synced_message),
        None => CondState::ok("Synced", synced_message),
    };
    set_condition(&mut st.conditions, SYNCED, synced_state, generation, now);
    let remote_status = synced.remote.as_ref().map(|r| &r.status);
    let ready = if let Some(message) = not_converging {
        CondState::fail(NOT_CONVERGING, format!("{message}; agents using it wait"))
    } else if in_flight {
        CondState::fail(
            "Provisioning",
            format!("Pipecat Cloud is provisioning secret set {set}; agents using it wait"),
        )
    } else if remote_status == Some(&RemoteStatus::Failed) {
        CondState::fail(
            "ProvisioningFailed",
            format!(
                "Pipecat Cloud could not provision secret set {set}: {}. Fix the values in Secret {}: the change is sent at once",
                st.error_message.as_deref().unwrap_or("no reason given"),
                obj.spec.secret_ref.name
            ),
        )
    } else if remote_status == Some(&RemoteStatus::Ready)
        && st.values_digest.as_deref() == Some(synced.digest.as_str())
    {
        st.ready_revision = st.revision;
        CondState::ok(
            "Ready",
            format!(
                "secret set {set} is ready with {} (revision {})",
                match st.keys.len() {
                    0 => "registry credentials".to_string(),
                    1 => "1 key".to_string(),
                    n => format!("{n} keys"),
                },
                st.revision.unwrap_or(0)
            ),
        )
    } else {
        CondState::fail(
            "Provisioning",
            format!("Pipecat Cloud is provisioning secret set {set}; agents using it wait"),
        )
    };
    set_condition(&mut st.conditions, READY, ready, generation, now);
    st
}

/// Writes the status with server-side apply (the operator owns every status field).
pub async fn write(
    kube: &kube::Client,
    obj: &PipecatSecretSet,
    st: &PipecatSecretSetStatus,
) -> Result<(), Error> {
    crate::runtime::conditions::apply_status(kube, obj, st)
        .await
        .map_err(|source| Error::Kube {
            action: "write the PipecatSecretSet status",
            source,
        })
}

/// The events of a pass (pure): remote changes, and condition changes worth a line in
/// `kubectl describe` (a new failure reason, becoming ready).
pub fn notes(
    old: &PipecatSecretSetStatus,
    new: &PipecatSecretSetStatus,
    result: &Result<Synced, Error>,
) -> Vec<Note> {
    let cond = |st: &PipecatSecretSetStatus, t: &str| {
        st.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let mut notes = Vec::new();
    if let Ok(s) = result {
        match &s.outcome {
            Outcome::Put {
                created, adopted, ..
            } => notes.push(Note {
                warning: false,
                reason: if *created {
                    "Created"
                } else if *adopted {
                    "Adopted"
                } else {
                    "ValuesSent"
                }
                .into(),
                message: cond(new, SYNCED).map(|c| c.2).unwrap_or_default(),
            }),
            Outcome::DeletedKey(_) => notes.push(Note {
                warning: false,
                reason: "KeyRemoved".into(),
                message: cond(new, SYNCED).map(|c| c.2).unwrap_or_default(),
            }),
            _ => {}
        }
    }
    let (old_ready, new_ready) = (cond(old, READY), cond(new, READY));
    if let Some((status, reason, message)) = &new_ready
        && old_ready.as_ref().map(|c| (&c.0, &c.1)) != Some((status, reason))
    {
        if status == "True" {
            notes.push(Note {
                warning: false,
                reason: "Ready".into(),
                message: message.clone(),
            });
        } else if reason == "ProvisioningFailed" || reason == NOT_CONVERGING {
            notes.push(Note {
                warning: true,
                reason: reason.clone(),
                message: message.clone(),
            });
        }
    }
    if let Err(e) = result
        && cond(old, SYNCED).map(|c| c.1).as_deref() != Some(e.reason())
    {
        notes.push(Note {
            warning: true,
            reason: e.reason().into(),
            message: e.to_string(),
        });
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_sets::pass::Remote;

    fn obj() -> PipecatSecretSet {
        let mut o: PipecatSecretSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatSecretSet",
            "metadata": {"name": "keys", "namespace": "ns", "generation": 1},
            "spec": {"secretRef": {"name": "values"}}
        }))
        .unwrap();
        o.metadata.generation = Some(1);
        o
    }

    fn now() -> Time {
        Time(jiff::Timestamp::UNIX_EPOCH)
    }

    fn remote(status: RemoteStatus, keys: &[&str]) -> Remote {
        Remote {
            kind: Some("secret".into()),
            region: Some("us-west".into()),
            status,
            error_message: None,
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn synced(remote: Option<Remote>, outcome: Outcome, digest: &str) -> Result<Synced, Error> {
        Ok(Synced {
            set: "keys".into(),
            region: "us-west".into(),
            managed: true,
            remote,
            outcome,
            digest: digest.into(),
            count: 2,
        })
    }

    fn put() -> Outcome {
        Outcome::Put {
            created: false,
            adopted: false,
        }
    }

    fn ready(st: &PipecatSecretSetStatus) -> (String, String) {
        let c = st.conditions.iter().find(|c| c.type_ == READY).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn a_resend_remembers_the_listing_and_not_converging_says_what_differs() {
        let o = obj();
        let s1 = next_status(&o, &Default::default(), &synced(None, put(), "d1"), &now());
        assert_eq!(s1.resent_for, None, "new values are no resend");
        // The same values again, for a listing without the keys.
        let unread = remote(RemoteStatus::Ready, &[]);
        let s2 = next_status(&o, &s1, &synced(Some(unread.clone()), put(), "d1"), &now());
        assert_eq!(
            s2.revision, s1.revision,
            "no new revision for the same values"
        );
        assert_eq!(
            s2.resent_for,
            Some(ResentFor {
                values_digest: "d1".into(),
                remote_keys: Vec::new()
            })
        );
        let stuck = Outcome::NotConverging {
            missing: vec!["A".into(), "B".into()],
        };
        let s3 = next_status(&o, &s2, &synced(Some(unread), stuck, "d1"), &now());
        assert_eq!(ready(&s3), ("False".into(), NOT_CONVERGING.into()));
        let synced_cond = s3.conditions.iter().find(|c| c.type_ == SYNCED).unwrap();
        assert_eq!(synced_cond.status, "False");
        assert_eq!(synced_cond.reason, NOT_CONVERGING);
        assert!(
            synced_cond.message.contains("without A, B") && synced_cond.message.contains("no key"),
            "{}",
            synced_cond.message
        );
        assert_eq!(s3.resent_for, s2.resent_for, "kept while stuck");
        // A listing that catches up clears it.
        let full = remote(RemoteStatus::Ready, &["A", "B"]);
        let s4 = next_status(&o, &s3, &synced(Some(full), Outcome::Nothing, "d1"), &now());
        assert_eq!(s4.resent_for, None);
        assert_eq!(ready(&s4).0, "True");
    }

    #[test]
    fn revisions_count_value_changes_and_ready_revision_follows_readiness() {
        let o = obj();
        let created = Outcome::Put {
            created: true,
            adopted: false,
        };
        let s1 = next_status(
            &o,
            &Default::default(),
            &synced(None, created, "d1"),
            &now(),
        );
        assert_eq!((s1.revision, s1.ready_revision), (Some(1), None));
        assert_eq!(s1.values_digest.as_deref(), Some("d1"));
        assert_eq!(s1.set_name.as_deref(), Some("keys"));
        assert_eq!(ready(&s1).1, "Provisioning");
        // Pending, then ready.
        let s2 = next_status(
            &o,
            &s1,
            &synced(
                Some(remote(RemoteStatus::Pending, &["A", "B"])),
                Outcome::Waited,
                "d1",
            ),
            &now(),
        );
        assert_eq!(s2.ready_revision, None);
        let s3 = next_status(
            &o,
            &s2,
            &synced(
                Some(remote(RemoteStatus::Ready, &["A", "B"])),
                Outcome::Nothing,
                "d1",
            ),
            &now(),
        );
        assert_eq!((s3.revision, s3.ready_revision), (Some(1), Some(1)));
        assert_eq!(ready(&s3), ("True".into(), "Ready".into()));
        assert_eq!(s3.keys, ["A", "B"]);
        // Steady state: the same status (no write).
        let s4 = next_status(
            &o,
            &s3,
            &synced(
                Some(remote(RemoteStatus::Ready, &["A", "B"])),
                Outcome::Nothing,
                "d1",
            ),
            &now(),
        );
        assert_eq!(s4, s3);
        // A rotation: revision 2, readyRevision stays 1 until ready again.
        let s5 = next_status(
            &o,
            &s4,
            &synced(Some(remote(RemoteStatus::Ready, &["A", "B"])), put(), "d2"),
            &now(),
        );
        assert_eq!((s5.revision, s5.ready_revision), (Some(2), Some(1)));
        assert_eq!(ready(&s5).1, "Provisioning");
        let s6 = next_status(
            &o,
            &s5,
            &synced(
                Some(remote(RemoteStatus::Ready, &["A", "B"])),
                Outcome::Nothing,
                "d2",
            ),
            &now(),
        );
        assert_eq!((s6.revision, s6.ready_revision), (Some(2), Some(2)));
        // Ready only counts for the values last sent.
        let stale = next_status(
            &o,
            &s6,
            &synced(
                Some(remote(RemoteStatus::Ready, &["A", "B"])),
                Outcome::Nothing,
                "d3",
            ),
            &now(),
        );
        assert_eq!(ready(&stale).0, "False");
        assert_eq!(stale.ready_revision, Some(2));
        // The same values sent again (a lost key) do not bump the revision.
        let s7 = next_status(
            &o,
            &s6,
            &synced(Some(remote(RemoteStatus::Ready, &["A"])), put(), "d2"),
            &now(),
        );
        assert_eq!(s7.revision, Some(2));
    }

    #[test]
    fn a_failed_set_says_why_and_is_not_ready() {
        let o = obj();
        let mut r = remote(RemoteStatus::Failed, &[]);
        r.error_message = Some("registry rejected the credentials".into());
        let old = PipecatSecretSetStatus {
            values_digest: Some("d1".into()),
            revision: Some(1),
            ..Default::default()
        };
        let st = next_status(&o, &old, &synced(Some(r), Outcome::Nothing, "d1"), &now());
        assert_eq!(ready(&st), ("False".into(), "ProvisioningFailed".into()));
        let msg = &st
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .unwrap()
            .message;
        assert!(msg.contains("registry rejected the credentials"), "{msg}");
        assert_eq!(
            st.error_message.as_deref(),
            Some("registry rejected the credentials")
        );
        assert_eq!(st.ready_revision, None);
        let n = notes(&old, &st, &synced(None, Outcome::Nothing, "d1"));
        assert!(
            n.iter()
                .any(|n| n.warning && n.reason == "ProvisioningFailed"),
            "{n:?}"
        );
    }

    #[test]
    fn a_passing_pipecat_failure_leaves_ready_alone() {
        let o = obj();
        let sent = PipecatSecretSetStatus {
            values_digest: Some("d1".into()),
            revision: Some(1),
            ..Default::default()
        };
        let ok = next_status(
            &o,
            &sent,
            &synced(
                Some(remote(RemoteStatus::Ready, &["A"])),
                Outcome::Nothing,
                "d1",
            ),
            &now(),
        );
        assert_eq!(ready(&ok), ("True".into(), "Ready".into()));
        let transient = Err(Error::cloud(
            "read",
            "keys",
            crate::cloud::Error::Transient {
                status: Some(503),
                message: "down".into(),
                retry_after: None,
            },
        ));
        let st = next_status(&o, &ok, &transient, &now());
        assert_eq!(ready(&st).0, ready(&ok).0);
        let invalid = Err(Error::invalid("InvalidKeyName", "rename it"));
        let st = next_status(&o, &ok, &invalid, &now());
        assert_eq!(ready(&st), ("False".into(), "InvalidKeyName".into()));
    }
}
