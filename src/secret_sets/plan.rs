//! The plan step of a secret set's pass (pure): what to do with the remote set, from what the
//! Secret asks for (key names and the digest of the values), what the status says was last
//! sent, and the remote set as Pipecat Cloud lists it ([`decide`]; the rules are [`plan`]'s).
//!
//! - Absent: create it (`PUT`).
//! - Present but not ours: refused without `spec.adopt` (`SetExists`), taken over with it.
//! - Pending: wait; a `PUT` now would be refused (409), and the same one is never resent.
//! - Values changed (digest), or a key Pipecat lost: `PUT` every value (`PUT` only adds and
//!   replaces keys).
//! - A key that left the Secret: `DELETE /secrets/{set}/{key}`, one per pass (each makes the
//!   set pending again).
//! - Failed with the values last sent: nothing is resent until the Secret changes.
//! - Keys missing from the listing although the values were sent: sent once more; the same
//!   listing for the same values after that is `NotConverging` (nothing is resent until the
//!   Secret or the listing changes).

use super::error::Error;
use super::observe::Observed;
use super::pass::{Remote, RemoteStatus, Target};
use crate::crd::secret_set::{PipecatSecretSet, PipecatSecretSetStatus, SecretSetType};

/// What the resource asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// Remote set name.
    pub set: &'a str,
    /// Env or ImagePull.
    pub type_: SecretSetType,
    /// Region.
    pub region: &'a str,
    /// Key names the set must list (none for an image-pull set).
    pub names: &'a [String],
    /// Digest of the values.
    pub digest: &'a str,
    /// `spec.adopt`.
    pub adopt: bool,
}

/// What the resource remembers (its status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Last<'a> {
    /// True once it manages the set (`status.setName`).
    pub managed: bool,
    /// `status.valuesDigest`.
    pub digest: Option<&'a str>,
    /// `status.resentFor`: the digest of values sent again, and the keys listed then.
    pub resent_for: Option<(&'a str, &'a [String])>,
}

/// The decision of a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Send every value: `create` when the set does not exist, `adopt` when it is taken over.
    Put {
        /// The set does not exist.
        create: bool,
        /// It exists and is taken over.
        adopt: bool,
    },
    /// Remove a key that left the Secret.
    DeleteKey(String),
    /// Pipecat Cloud is provisioning a change: look again later.
    Wait,
    /// Nothing to send (ready, or failed with the values last sent).
    InSync,
    /// The values were sent again for this very listing and Pipecat Cloud still lists other
    /// keys: sending them again would not help.
    NotConverging {
        /// The Secret's keys the listing lacks.
        missing: Vec<String>,
        /// The keys Pipecat Cloud lists.
        listed: Vec<String>,
    },
}

/// Pipecat Cloud's name of a set type.
pub fn remote_kind(type_: SecretSetType) -> &'static str {
    match type_ {
        SecretSetType::Env => "secret",
        SecretSetType::ImagePull => "imagePullSecret",
    }
}

/// The plan step: what the pass over `obj` does to its set `target`, from the status `old` it
/// starts from and what was `observed`.
pub fn decide(
    obj: &PipecatSecretSet,
    old: &PipecatSecretSetStatus,
    target: &Target,
    observed: &Observed,
) -> Result<Plan, Error> {
    let wanted = Wanted {
        set: &target.set,
        type_: obj.spec.type_,
        region: &target.region,
        names: &observed.names,
        digest: &observed.digest,
        adopt: obj.spec.adopt,
    };
    let last = Last {
        managed: old.set_name.is_some(),
        digest: old.values_digest.as_deref(),
        resent_for: old
            .resent_for
            .as_ref()
            .map(|r| (r.values_digest.as_str(), r.remote_keys.as_slice())),
    };
    plan(&wanted, &last, observed.remote.as_ref())
}

/// The rules [`decide`] applies: what to do, from what the resource asks for (`wanted`), what
/// it remembers (`last`) and the remote set (`None`: it does not exist).
pub fn plan(wanted: &Wanted<'_>, last: &Last<'_>, remote: Option<&Remote>) -> Result<Plan, Error> {
    let Some(remote) = remote else {
        return Ok(Plan::Put {
            create: true,
            adopt: false,
        });
    };
    let set = wanted.set;
    if !last.managed && !wanted.adopt {
        return Err(Error::invalid(
            "SetExists",
            format!(
                "secret set {set} already exists in Pipecat Cloud and this resource did not create it: set spec.adopt: true to take it over (its values are replaced with the Secret's), or choose another spec.setName"
            ),
        ));
    }
    let kind = remote_kind(wanted.type_);
    if let Some(actual) = remote.kind.as_deref().filter(|k| *k != kind) {
        return Err(Error::invalid(
            "TypeMismatch",
            format!(
                "secret set {set} is of type {actual} in Pipecat Cloud, not {kind}: choose another spec.setName, or delete the remote set"
            ),
        ));
    }
    if let Some(actual) = remote.region.as_deref().filter(|r| *r != wanted.region) {
        return Err(Error::invalid(
            "RegionMismatch",
            format!(
                "secret set {set} is in region {actual}, not {}: set spec.region: {actual}, or choose another spec.setName",
                wanted.region
            ),
        ));
    }
    if remote.status == RemoteStatus::Pending {
        return Ok(Plan::Wait);
    }
    if !last.managed {
        return Ok(Plan::Put {
            create: false,
            adopt: true,
        });
    }
    let same_values = last.digest == Some(wanted.digest);
    let lost_key = wanted.names.iter().any(|n| !remote.keys.contains(n));
    if remote.status == RemoteStatus::Failed {
        // Sending the same values again would fail the same way: wait for a change.
        return Ok(if same_values {
            Plan::InSync
        } else {
            Plan::Put {
                create: false,
                adopt: false,
            }
        });
    }
    if same_values && lost_key && last.resent_for == Some((wanted.digest, remote.keys.as_slice())) {
        return Ok(Plan::NotConverging {
            missing: wanted
                .names
                .iter()
                .filter(|n| !remote.keys.contains(n))
                .cloned()
                .collect(),
            listed: remote.keys.clone(),
        });
    }
    if !same_values || lost_key {
        return Ok(Plan::Put {
            create: false,
            adopt: false,
        });
    }
    if wanted.type_ == SecretSetType::Env
        && let Some(extra) = remote.keys.iter().find(|k| !wanted.names.contains(k))
    {
        return Ok(Plan::DeleteKey(extra.clone()));
    }
    Ok(Plan::InSync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn remote(status: RemoteStatus, keys: &[&str]) -> Remote {
        Remote {
            kind: Some("secret".into()),
            region: Some("us-west".into()),
            status,
            error_message: None,
            keys: names(keys),
        }
    }

    fn wanted<'a>(n: &'a [String], digest: &'a str) -> Wanted<'a> {
        Wanted {
            set: "keys",
            type_: SecretSetType::Env,
            region: "us-west",
            names: n,
            digest,
            adopt: false,
        }
    }

    const MANAGED: Last<'static> = Last {
        managed: true,
        digest: Some("d1"),
        resent_for: None,
    };
    const PUT: Plan = Plan::Put {
        create: false,
        adopt: false,
    };

    #[test]
    fn a_missing_set_is_created() {
        let n = names(&["A"]);
        assert_eq!(
            plan(&wanted(&n, "d1"), &Last::default(), None).unwrap(),
            Plan::Put {
                create: true,
                adopt: false
            }
        );
        // Also when it was ours and someone deleted it.
        assert!(matches!(
            plan(&wanted(&n, "d1"), &MANAGED, None).unwrap(),
            Plan::Put { create: true, .. }
        ));
    }

    #[test]
    fn a_set_that_is_not_ours_is_taken_over_only_with_adopt() {
        let n = names(&["A"]);
        let r = remote(RemoteStatus::Ready, &["A"]);
        let e = plan(&wanted(&n, "d1"), &Last::default(), Some(&r)).unwrap_err();
        assert_eq!(e.reason(), "SetExists");
        assert!(e.to_string().contains("spec.adopt: true"), "{e}");
        let mut w = wanted(&n, "d1");
        w.adopt = true;
        assert_eq!(
            plan(&w, &Last::default(), Some(&r)).unwrap(),
            Plan::Put {
                create: false,
                adopt: true
            }
        );
        // Taken over only once it can be written.
        let pending = remote(RemoteStatus::Pending, &["A"]);
        assert_eq!(
            plan(&w, &Last::default(), Some(&pending)).unwrap(),
            Plan::Wait
        );
    }

    #[test]
    fn type_and_region_must_match() {
        let n = names(&["A"]);
        let mut r = remote(RemoteStatus::Ready, &["A"]);
        r.kind = Some("imagePullSecret".into());
        assert_eq!(
            plan(&wanted(&n, "d1"), &MANAGED, Some(&r))
                .unwrap_err()
                .reason(),
            "TypeMismatch"
        );
        let mut r = remote(RemoteStatus::Ready, &["A"]);
        r.region = Some("eu-central".into());
        assert_eq!(
            plan(&wanted(&n, "d1"), &MANAGED, Some(&r))
                .unwrap_err()
                .reason(),
            "RegionMismatch"
        );
    }

    #[test]
    fn steady_state_sends_nothing() {
        let n = names(&["A", "B"]);
        let r = remote(RemoteStatus::Ready, &["A", "B"]);
        assert_eq!(
            plan(&wanted(&n, "d1"), &MANAGED, Some(&r)).unwrap(),
            Plan::InSync
        );
    }

    #[test]
    fn changed_values_or_a_lost_key_send_every_value() {
        let n = names(&["A", "B"]);
        let r = remote(RemoteStatus::Ready, &["A", "B"]);
        assert_eq!(plan(&wanted(&n, "d2"), &MANAGED, Some(&r)).unwrap(), PUT);
        let lost = remote(RemoteStatus::Ready, &["A"]);
        assert_eq!(plan(&wanted(&n, "d1"), &MANAGED, Some(&lost)).unwrap(), PUT);
        // Never while pending (409, and the same PUT is never resent).
        let pending = remote(RemoteStatus::Pending, &["A"]);
        assert_eq!(
            plan(&wanted(&n, "d2"), &MANAGED, Some(&pending)).unwrap(),
            Plan::Wait
        );
    }

    #[test]
    fn a_listing_that_never_shows_the_keys_gets_one_more_put_then_not_converging() {
        let n = names(&["A", "B"]);
        // A listing the operator cannot read (no keys), after the values were sent.
        let unread = remote(RemoteStatus::Ready, &[]);
        assert_eq!(
            plan(&wanted(&n, "d1"), &MANAGED, Some(&unread)).unwrap(),
            PUT,
            "one more PUT"
        );
        // That PUT recorded the listing it answered; the same listing again: stop.
        let listed: Vec<String> = Vec::new();
        let resent = Last {
            resent_for: Some(("d1", listed.as_slice())),
            ..MANAGED
        };
        assert_eq!(
            plan(&wanted(&n, "d1"), &resent, Some(&unread)).unwrap(),
            Plan::NotConverging {
                missing: names(&["A", "B"]),
                listed: Vec::new()
            }
        );
        // A different listing, or new values, are worth a PUT again.
        let partial = remote(RemoteStatus::Ready, &["A"]);
        assert_eq!(
            plan(&wanted(&n, "d1"), &resent, Some(&partial)).unwrap(),
            PUT
        );
        assert_eq!(
            plan(&wanted(&n, "d2"), &resent, Some(&unread)).unwrap(),
            PUT
        );
        // The listing caught up: in sync.
        let full = remote(RemoteStatus::Ready, &["A", "B"]);
        assert_eq!(
            plan(&wanted(&n, "d1"), &resent, Some(&full)).unwrap(),
            Plan::InSync
        );
    }

    #[test]
    fn a_key_that_left_the_secret_is_deleted_after_the_values_are_sent() {
        let n = names(&["A"]);
        let r = remote(RemoteStatus::Ready, &["A", "B", "C"]);
        // The values changed too: first the PUT, then the deletes.
        assert_eq!(plan(&wanted(&n, "d2"), &MANAGED, Some(&r)).unwrap(), PUT);
        assert_eq!(
            plan(&wanted(&n, "d1"), &MANAGED, Some(&r)).unwrap(),
            Plan::DeleteKey("B".into())
        );
        // Image-pull sets have no keys to delete.
        let mut w = wanted(&[], "d1");
        w.type_ = SecretSetType::ImagePull;
        let mut pull = remote(RemoteStatus::Ready, &[]);
        pull.kind = Some("imagePullSecret".into());
        assert_eq!(plan(&w, &MANAGED, Some(&pull)).unwrap(), Plan::InSync);
    }

    #[test]
    fn a_failed_set_is_resent_only_when_the_values_change() {
        let n = names(&["A"]);
        let failed = remote(RemoteStatus::Failed, &[]);
        assert_eq!(
            plan(&wanted(&n, "d1"), &MANAGED, Some(&failed)).unwrap(),
            Plan::InSync
        );
        assert_eq!(
            plan(&wanted(&n, "d2"), &MANAGED, Some(&failed)).unwrap(),
            PUT
        );
    }
}
