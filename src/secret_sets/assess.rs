//! The assess step of a secret set's pass (pure): what the answer to its call means, as the
//! pass's result ([`Synced`]). A 409 is Pipecat Cloud provisioning a change (wait, never
//! resend blindly); a key already gone is removed.

use super::error::Error;
use super::observe::Observed;
use super::pass::{Outcome, Synced, Target};
use super::plan::Plan;
use crate::cloud::{self, ErrorKind};

/// The assess step: the result of `plan` on the set `target`, given the `answer` to its call
/// (`None`: none was made); `managed` is whether the resource managed the set before.
pub fn assess(
    target: Target,
    observed: Observed,
    managed: bool,
    plan: Plan,
    answer: Option<Result<(), cloud::Error>>,
) -> Result<Synced, Error> {
    let (outcome, managed) = match (plan, answer) {
        (Plan::Wait, _) => (Outcome::Waited, managed),
        (Plan::InSync, _) => (Outcome::Nothing, managed),
        (Plan::NotConverging { missing, .. }, _) => (Outcome::NotConverging { missing }, managed),
        (Plan::DeleteKey(k), Some(answer)) => (key_deleted(&target.set, k, answer)?, managed),
        // A PUT makes the set this resource's, even one that must wait.
        (Plan::Put { create, adopt }, Some(answer)) => {
            (sent(&target.set, create, adopt, answer)?, true)
        }
        (Plan::DeleteKey(_) | Plan::Put { .. }, None) => {
            unreachable!("a write is always sent")
        }
    };
    Ok(Synced {
        set: target.set,
        region: target.region,
        managed,
        remote: observed.remote,
        outcome,
        digest: observed.digest,
        count: observed.count,
    })
}

/// The outcome of removing the key `key` from `set`.
fn key_deleted(set: &str, key: String, answer: Result<(), cloud::Error>) -> Result<Outcome, Error> {
    match answer {
        Ok(()) => Ok(Outcome::DeletedKey(key)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Outcome::DeletedKey(key)),
        Err(e) if e.kind() == ErrorKind::Conflict => Ok(Outcome::Waited),
        Err(e) => Err(Error::cloud("remove a key of", set, e)),
    }
}

/// The outcome of sending every value to `set`.
fn sent(
    set: &str,
    create: bool,
    adopt: bool,
    answer: Result<(), cloud::Error>,
) -> Result<Outcome, Error> {
    match answer {
        Ok(()) => Ok(Outcome::Put {
            created: create,
            adopted: adopt,
        }),
        // Still provisioning a change (ours or someone's): wait, never resend blindly.
        Err(e) if e.kind() == ErrorKind::Conflict => Ok(Outcome::Waited),
        Err(e) => Err(Error::cloud("send the values of", set, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::secret_sets::desired::DesiredValues;

    fn target() -> Target {
        Target {
            set: "keys".into(),
            region: "us-west".into(),
        }
    }

    fn observed() -> Observed {
        Observed {
            values: DesiredValues::Env(BTreeMap::new()),
            names: Vec::new(),
            digest: "d1".into(),
            count: 0,
            remote: None,
        }
    }

    fn conflict() -> cloud::Error {
        cloud::Error::Conflict {
            message: "provisioning".into(),
        }
    }

    fn not_found() -> cloud::Error {
        cloud::Error::NotFound {
            message: "no such key".into(),
        }
    }

    fn down() -> cloud::Error {
        cloud::Error::Transient {
            status: Some(503),
            message: "down".into(),
            retry_after: None,
        }
    }

    fn run(
        managed: bool,
        plan: Plan,
        answer: Option<Result<(), cloud::Error>>,
    ) -> Result<Synced, Error> {
        assess(target(), observed(), managed, plan, answer)
    }

    #[test]
    fn a_put_makes_the_set_managed_even_when_it_must_wait() {
        let put = Plan::Put {
            create: true,
            adopt: false,
        };
        let done = run(false, put.clone(), Some(Ok(()))).unwrap();
        assert_eq!(
            done.outcome,
            Outcome::Put {
                created: true,
                adopted: false
            }
        );
        assert!(done.managed);
        assert_eq!(
            (done.set.as_str(), done.region.as_str()),
            ("keys", "us-west")
        );
        let busy = run(false, put.clone(), Some(Err(conflict()))).unwrap();
        assert_eq!(busy.outcome, Outcome::Waited);
        assert!(busy.managed);
        let e = run(false, put, Some(Err(down()))).unwrap_err();
        assert_eq!(e.reason(), "PipecatUnavailable");
        assert!(
            e.to_string().contains("send the values of secret set keys"),
            "{e}"
        );
    }

    #[test]
    fn a_key_already_gone_is_removed_and_a_conflict_waits() {
        let delete = || Plan::DeleteKey("B".into());
        for answer in [Ok(()), Err(not_found())] {
            let done = run(true, delete(), Some(answer)).unwrap();
            assert_eq!(done.outcome, Outcome::DeletedKey("B".into()));
        }
        assert_eq!(
            run(true, delete(), Some(Err(conflict()))).unwrap().outcome,
            Outcome::Waited
        );
        let e = run(true, delete(), Some(Err(down()))).unwrap_err();
        assert!(
            e.to_string().contains("remove a key of secret set keys"),
            "{e}"
        );
    }

    #[test]
    fn a_plan_without_a_call_keeps_what_was_managed() {
        let stuck = Plan::NotConverging {
            missing: vec!["A".into()],
            listed: Vec::new(),
        };
        let cases = [
            (Plan::Wait, Outcome::Waited),
            (Plan::InSync, Outcome::Nothing),
            (
                stuck,
                Outcome::NotConverging {
                    missing: vec!["A".into()],
                },
            ),
        ];
        for (plan, outcome) in cases {
            for managed in [false, true] {
                let done = run(managed, plan.clone(), None).unwrap();
                assert_eq!((done.outcome, done.managed), (outcome.clone(), managed));
            }
        }
    }
}
