//! Reporting: the pass's result becomes the resource's status, and the status is written.
//!
//! [`next_status`] is pure and deterministic (a condition's `lastTransitionTime` only moves
//! when its status flips), so an unchanged agent produces an identical status and costs no
//! write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Error;
use super::pass::Applied;
use super::pass::Outcome;
use crate::cloud::types::Agent;
use crate::crd::{
    FieldValue, NonConvergence, ObservedAutoScaling, PipecatAgent, PipecatAgentStatus,
};
use crate::runtime::conditions::{CondState, READY, STALLED, SYNCED, apply_status, set_condition};

/// Copies the remote agent's live fields into a status.
pub fn observe_into(status: &mut PipecatAgentStatus, agent: &Agent) {
    status.available = agent.available;
    // `activeDeploymentId` is deprecated upstream: the status keeps the field (users read it)
    // and fills it from `desiredDeploymentId` when the answer has it.
    status.active_deployment_id = agent
        .desired_deployment_id
        .clone()
        .or_else(|| agent.active_deployment_id.clone());
    status.active_deployment_ready = agent.active_deployment_ready;
    status.desired_deployment_id = agent.desired_deployment_id.clone();
    status.reconciled_deployment_id = agent.reconciled_deployment_id.clone();
    status.active_session_count = agent.active_session_count;
    status.auto_scaling = agent
        .auto_scaling
        .as_ref()
        .or_else(|| agent.manifest_spec().and_then(|s| s.auto_scaling.as_ref()))
        .map(|a| ObservedAutoScaling {
            min_replicas: a.min_replicas,
            max_replicas: a.max_replicas,
        });
    if agent.region.is_some() {
        status.region = agent.region.clone();
    }
}

/// The status after a pass (pure, deterministic): `old` updated with the pass's result.
pub fn next_status(
    obj: &PipecatAgent,
    old: &PipecatAgentStatus,
    result: &Result<Applied, Error>,
    now: &Time,
) -> PipecatAgentStatus {
    let generation = obj.metadata.generation;
    let mut st = old.clone();
    st.agent_name = Some(obj.agent_name().to_string());
    // The scale subresource's selector (a HorizontalPodAutoscaler requires one).
    st.selector = Some(obj.scale_selector());
    match result {
        Ok(applied) => {
            observe_into(&mut st, &applied.agent);
            st.ready = applied.readiness.ready;
            st.observed_generation = generation;
            st.applied_config_hash = Some(applied.desired.hash.clone());
            st.applied_redeploy_token = applied.desired.redeploy_token.clone();
            st.requested_deployment = applied.requested.clone();
            st.secret_set_revisions = applied.secret_sets.clone();
            // Sent and answered, or found to have happened: no redeploy is pending any more.
            st.pending_rotation = None;
            match applied.outcome {
                Outcome::Adopted => st.adopted = true,
                Outcome::Created => st.adopted = false,
                _ => {}
            }
            st.non_convergence = applied.stuck.as_ref().map(|stuck| NonConvergence {
                config_hash: applied.desired.hash.clone(),
                fields: stuck
                    .mismatches()
                    .iter()
                    .map(|m| FieldValue {
                        field: m.field.to_string(),
                        remote: m.remote.clone(),
                    })
                    .collect(),
            });
            set_condition(
                &mut st.conditions,
                READY,
                applied.readiness.condition.clone(),
                generation,
                now,
            );
            let synced = match &applied.stuck {
                Some(stuck) => {
                    CondState::fail(stuck.reason(), stuck.describe(&applied.desired.name))
                }
                None => CondState::ok(
                    "UpToDate",
                    format!(
                        "Pipecat Cloud agent {} matches the spec",
                        applied.desired.name
                    ),
                ),
            };
            set_condition(&mut st.conditions, SYNCED, synced, generation, now);
        }
        Err(e) => {
            let cond = CondState::fail(e.reason(), e.to_string());
            if e.needs_user_action() || st.conditions.iter().all(|c| c.type_ != READY) {
                // The agent cannot reach the spec until the user acts (or was never seen).
                st.ready = false;
                set_condition(&mut st.conditions, READY, cond.clone(), generation, now);
            }
            set_condition(&mut st.conditions, SYNCED, cond, generation, now);
        }
    }
    let stalled = match result {
        Ok(a) if a.readiness.failed => Some(a.readiness.condition.clone()),
        Ok(a) => a
            .stuck
            .as_ref()
            .map(|stuck| CondState::fail(stuck.reason(), stuck.describe(&a.desired.name))),
        Err(e) if e.needs_user_action() => Some(CondState::fail(e.reason(), e.to_string())),
        Err(_) => None,
    };
    let stalled = match stalled {
        Some(c) => CondState {
            status: "True",
            ..c
        },
        None => CondState::fail(
            "NotStalled",
            "nothing stops the agent from reaching the spec",
        ),
    };
    set_condition(&mut st.conditions, STALLED, stalled, generation, now);
    st
}

/// True when the status of this pass can wait for the next pass: the pass created the agent
/// and its first deployment is neither live nor failed yet (`Deploying`). The next pass comes
/// one poll interval later and writes either `Ready`, when the deployment is live by then (one
/// status write per new agent instead of two), or this status, unchanged: a roll-out that
/// takes minutes shows `Deploying` from its first poll on. Meanwhile the status is held in the
/// per-object memory (what was applied is never sent again) and the create marker, written
/// before the create, keeps a restart from mistaking the agent for someone else's.
pub fn deferrable(result: &Result<Applied, Error>) -> bool {
    matches!(result, Ok(a) if matches!(a.outcome, Outcome::Created)
        && !a.readiness.ready
        && !a.readiness.failed
        && a.stuck.is_none())
}

/// Writes the status (server-side apply of the status subresource, as the operator's field
/// manager).
pub async fn write(
    kube: &kube::Client,
    obj: &PipecatAgent,
    st: &PipecatAgentStatus,
) -> Result<(), Error> {
    apply_status(kube, obj, st)
        .await
        .map_err(|source| Error::Kube {
            action: "write the PipecatAgent status",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::conditions::NOT_CONVERGING;
    use crate::runtime::conditions::now;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn agent_obj(generation: i64) -> PipecatAgent {
        let mut a: PipecatAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": "bot", "namespace": "ns"},
            "spec": {"image": "acme/bot:1", "redeployToken": "t1"}
        }))
        .unwrap();
        a.metadata.generation = Some(generation);
        a
    }

    fn applied(obj: &PipecatAgent, agent: Agent) -> Applied {
        Applied {
            readiness: crate::agents::readiness::readiness(&agent, None),
            agent,
            outcome: crate::agents::pass::Outcome::Unchanged,
            desired: crate::agents::plan::desired(obj),
            requested: None,
            stuck: None,
            secret_sets: Vec::new(),
        }
    }

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    fn cond<'a>(st: &'a PipecatAgentStatus, t: &str) -> &'a Condition {
        st.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    /// What a pass keeps in memory equals what the watch later shows of its write: the
    /// status as it comes back from JSON (the copy is dropped only then).
    #[test]
    fn a_status_made_now_comes_back_from_its_write_unchanged() {
        let obj = agent_obj(1);
        let remote = Agent {
            name: "bot".into(),
            desired_deployment_id: Some("d1".into()),
            reconciled_deployment_id: Some("d1".into()),
            active_deployment_id: Some("d1".into()),
            ready: Some(true),
            ..Default::default()
        };
        let st = next_status(
            &obj,
            &PipecatAgentStatus::default(),
            &Ok(applied(&obj, remote)),
            &now(),
        );
        assert!(!st.conditions.is_empty());
        let back: PipecatAgentStatus =
            serde_json::from_value(serde_json::to_value(&st).unwrap()).unwrap();
        assert_eq!(back, st);
    }

    #[test]
    fn a_synced_pass_reports_the_agent_and_records_what_was_applied() {
        let obj = agent_obj(3);
        let remote = Agent {
            name: "bot".into(),
            desired_deployment_id: Some("d2".into()),
            reconciled_deployment_id: Some("d2".into()),
            active_deployment_id: Some("d2".into()),
            active_session_count: Some(4),
            ready: Some(true),
            ..Default::default()
        };
        let result = Ok(applied(&obj, remote));
        let st = next_status(&obj, &PipecatAgentStatus::default(), &result, &at(10));
        assert_eq!(st.agent_name.as_deref(), Some("bot"));
        assert!(st.ready);
        assert_eq!(st.observed_generation, Some(3));
        assert_eq!(st.active_deployment_id.as_deref(), Some("d2"));
        assert_eq!(st.active_session_count, Some(4));
        assert_eq!(
            st.applied_config_hash.as_deref(),
            Some(crate::agents::plan::desired(&obj).hash.as_str())
        );
        assert_eq!(st.applied_redeploy_token.as_deref(), Some("t1"));
        let ready = cond(&st, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "DeploymentReady")
        );
        assert_eq!(ready.observed_generation, Some(3));
        let synced = cond(&st, SYNCED);
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("True", "UpToDate")
        );
        let stalled = cond(&st, STALLED);
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("False", "NotStalled")
        );
        assert!(!st.adopted);

        // The same pass again is the same status (no write), timestamps included.
        let again = next_status(&obj, &st, &result, &at(20));
        assert_eq!(again, st);
    }

    #[test]
    fn only_a_create_whose_deployment_is_still_rolling_out_defers_its_status() {
        let obj = agent_obj(1);
        let rolling = Agent {
            name: "bot".into(),
            desired_deployment_id: Some("d1".into()),
            ready: Some(false),
            ..Default::default()
        };
        let live = Agent {
            reconciled_deployment_id: Some("d1".into()),
            ready: Some(true),
            ..rolling.clone()
        };
        let with = |agent: &Agent, outcome: Outcome| {
            let mut a = applied(&obj, agent.clone());
            a.outcome = outcome;
            Ok(a)
        };
        assert!(deferrable(&with(&rolling, Outcome::Created)));
        assert!(
            !deferrable(&with(&live, Outcome::Created)),
            "live at once: Ready is written"
        );
        assert!(
            !deferrable(&with(&rolling, Outcome::Unchanged)),
            "a later pass writes Deploying"
        );
        let mut failed = rolling.clone();
        failed.errors = Some(vec![crate::cloud::types::DeploymentError {
            code: Some("PCC_IMAGE_NOT_FOUND".into()),
            message: Some("no such image".into()),
        }]);
        assert!(
            !deferrable(&with(&failed, Outcome::Created)),
            "a failure shows at once"
        );
        let mut stuck = with(&rolling, Outcome::Created).unwrap();
        stuck.stuck = Some(crate::agents::plan::Stuck::Refused(Vec::new()));
        assert!(!deferrable(&Ok(stuck)));
        assert!(!deferrable(&Err(Error::CredentialsNotFound(
            "no key".into()
        ))));
    }

    #[test]
    fn a_transient_error_keeps_readiness_and_a_user_error_clears_it() {
        let obj = agent_obj(2);
        let remote = Agent {
            name: "bot".into(),
            desired_deployment_id: Some("d1".into()),
            reconciled_deployment_id: Some("d1".into()),
            ready: Some(true),
            ..Default::default()
        };
        let ok = next_status(
            &obj,
            &PipecatAgentStatus::default(),
            &Ok(applied(&obj, remote)),
            &at(1),
        );
        let transient = Err(Error::cloud(
            "read",
            "bot",
            crate::cloud::Error::Transient {
                status: Some(503),
                message: "unavailable".into(),
                retry_after: None,
            },
        ));
        let st = next_status(&obj, &ok, &transient, &at(2));
        assert!(
            st.ready,
            "a passing outage does not make a live agent unready"
        );
        assert_eq!(cond(&st, READY).status, "True");
        assert_eq!(cond(&st, SYNCED).reason, "PipecatUnavailable");
        assert_eq!(st.applied_config_hash, ok.applied_config_hash);

        assert_eq!(
            cond(&st, STALLED).status,
            "False",
            "an outage is not a dead end"
        );
        let user = Err(Error::CredentialsNotFound("secret ns/key not found".into()));
        let st = next_status(&obj, &ok, &user, &at(3));
        let stalled = cond(&st, STALLED);
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "CredentialsNotFound")
        );
        assert!(!st.ready);
        assert_eq!(cond(&st, READY).reason, "CredentialsNotFound");
        assert_eq!(cond(&st, READY).last_transition_time, at(3));
        assert_eq!(cond(&st, SYNCED).reason, "CredentialsNotFound");
        assert_eq!(cond(&st, SYNCED).message, "secret ns/key not found");
    }

    #[test]
    fn a_refused_update_is_not_synced_and_recorded_for_the_next_pass() {
        use crate::agents::compare::Mismatch;
        use crate::agents::plan::Stuck;
        let obj = agent_obj(2);
        let remote = Agent {
            name: "bot".into(),
            desired_deployment_id: Some("d2".into()),
            reconciled_deployment_id: Some("d2".into()),
            ready: Some(true),
            ..Default::default()
        };
        let mut pass = applied(&obj, remote);
        pass.stuck = Some(Stuck::Refused(vec![Mismatch {
            field: "image",
            remote: "acme/other:1".into(),
        }]));
        let st = next_status(
            &obj,
            &PipecatAgentStatus::default(),
            &Ok(pass.clone()),
            &at(1),
        );
        let synced = cond(&st, SYNCED);
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("False", NOT_CONVERGING)
        );
        assert!(
            synced
                .message
                .contains("image (Pipecat Cloud has acme/other:1)"),
            "{}",
            synced.message
        );
        let nc = st.non_convergence.as_ref().unwrap();
        assert_eq!(nc.config_hash, pass.desired.hash);
        assert_eq!(nc.fields[0].field, "image");
        assert_eq!(nc.fields[0].remote, "acme/other:1");
        assert!(
            st.ready,
            "readiness is about the deployment, not the config"
        );
        // Converged later: the record and the condition clear.
        pass.stuck = None;
        let st = next_status(&obj, &st, &Ok(pass), &at(2));
        assert_eq!(st.non_convergence, None);
        assert_eq!(cond(&st, SYNCED).status, "True");
    }

    #[test]
    fn a_failed_deployment_is_stalled_with_its_reason() {
        let obj = agent_obj(2);
        let remote = Agent {
            name: "bot".into(),
            desired_deployment_id: Some("d2".into()),
            reconciled_deployment_id: Some("d1".into()),
            ready: Some(true),
            errors: Some(vec![crate::cloud::types::DeploymentError {
                code: Some("PCC_IMAGE_NOT_FOUND".into()),
                message: Some("no such image".into()),
            }]),
            ..Default::default()
        };
        let st = next_status(
            &obj,
            &PipecatAgentStatus::default(),
            &Ok(applied(&obj, remote)),
            &at(1),
        );
        let stalled = cond(&st, STALLED);
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "ImageNotFound")
        );
        // Rolling out (not failed): not stalled.
        let rolling = Agent {
            name: "bot".into(),
            desired_deployment_id: Some("d2".into()),
            reconciled_deployment_id: Some("d1".into()),
            ready: Some(true),
            ..Default::default()
        };
        let st = next_status(&obj, &st, &Ok(applied(&obj, rolling)), &at(2));
        assert_eq!(cond(&st, STALLED).status, "False");
    }

    #[test]
    fn the_status_records_whether_the_agent_was_adopted() {
        use crate::agents::pass::Outcome;
        let obj = agent_obj(1);
        let remote = Agent {
            name: "bot".into(),
            ..Default::default()
        };
        let mut pass = applied(&obj, remote);
        pass.outcome = Outcome::Adopted;
        let st = next_status(
            &obj,
            &PipecatAgentStatus::default(),
            &Ok(pass.clone()),
            &at(1),
        );
        assert!(st.adopted);
        pass.outcome = Outcome::Unchanged;
        let st = next_status(&obj, &st, &Ok(pass.clone()), &at(2));
        assert!(st.adopted, "kept on later passes");
        pass.outcome = Outcome::Created;
        let st = next_status(&obj, &st, &Ok(pass), &at(3));
        assert!(!st.adopted, "a created agent was not adopted");
    }

    #[test]
    fn a_failing_pass_without_a_ready_condition_yet_adds_one() {
        let obj = agent_obj(1);
        let mut old = PipecatAgentStatus::default();
        set_condition(
            &mut old.conditions,
            SYNCED,
            CondState::ok("UpToDate", "x"),
            Some(1),
            &at(1),
        );
        let transient = Err(Error::cloud(
            "read",
            "bot",
            crate::cloud::Error::RateLimited { retry_after: None },
        ));
        let st = next_status(&obj, &old, &transient, &at(2));
        assert_eq!(cond(&st, READY).reason, "RateLimited");
    }

    #[test]
    fn a_first_pass_that_fails_says_so_in_ready_too() {
        let obj = agent_obj(1);
        let transient = Err(Error::cloud(
            "create",
            "bot",
            crate::cloud::Error::RateLimited { retry_after: None },
        ));
        let st = next_status(&obj, &PipecatAgentStatus::default(), &transient, &at(1));
        assert!(!st.ready);
        assert_eq!(cond(&st, READY).reason, "RateLimited");
        assert_eq!(st.applied_config_hash, None, "nothing was applied");
    }

    #[test]
    fn waiting_for_a_secret_set_is_reported_and_a_rotation_is_recorded() {
        use crate::crd::{PendingRotation, SecretSetRevision};
        let obj = agent_obj(1);
        let pending = Err(Error::SecretSetNotReady {
            message: "agent bot waits for secret set env (PipecatSecretSet ns/env): it is provisioning (pending)".into(),
            failed: false,
        });
        // A new agent: not Ready, not Synced, not stalled (a matter of time).
        let st = next_status(&obj, &PipecatAgentStatus::default(), &pending, &at(1));
        for t in [READY, SYNCED] {
            let c = cond(&st, t);
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "SecretSetNotReady"),
                "{t}"
            );
            assert!(c.message.contains("secret set env"), "{}", c.message);
        }
        assert_eq!(cond(&st, STALLED).status, "False");

        // A running agent whose set is rotating keeps serving: still Ready, not Synced.
        let remote = Agent {
            name: "bot".into(),
            desired_deployment_id: Some("d1".into()),
            reconciled_deployment_id: Some("d1".into()),
            ready: Some(true),
            ..Default::default()
        };
        let mut pass = applied(&obj, remote);
        pass.secret_sets = vec![SecretSetRevision {
            name: "env".into(),
            revision: 1,
        }];
        let mut running = next_status(
            &obj,
            &PipecatAgentStatus::default(),
            &Ok(pass.clone()),
            &at(1),
        );
        assert_eq!(running.secret_set_revisions, pass.secret_sets);
        running.pending_rotation = Some(PendingRotation {
            revisions: vec![SecretSetRevision {
                name: "env".into(),
                revision: 2,
            }],
            replaces: Some("d1".into()),
        });
        let st = next_status(&obj, &running, &pending, &at(2));
        assert!(st.ready);
        assert_eq!(cond(&st, READY).status, "True");
        assert_eq!(cond(&st, SYNCED).reason, "SecretSetNotReady");
        assert_eq!(
            st.pending_rotation, running.pending_rotation,
            "a failed pass keeps an announced redeploy"
        );
        // A failed set needs a person: not Ready, Stalled.
        let failed = Err(Error::SecretSetNotReady {
            message: "failed".into(),
            failed: true,
        });
        let st = next_status(&obj, &running, &failed, &at(3));
        assert!(!st.ready);
        assert_eq!(cond(&st, READY).reason, "SecretSetNotReady");
        assert_eq!(cond(&st, STALLED).status, "True");
        // A successful pass records the revisions and clears the announcement.
        pass.secret_sets[0].revision = 2;
        let st = next_status(&obj, &running, &Ok(pass), &at(4));
        assert_eq!(st.secret_set_revisions[0].revision, 2);
        assert_eq!(st.pending_rotation, None);
    }

    #[test]
    fn transition_time_only_moves_on_flips() {
        let t1 = Time(jiff::Timestamp::from_second(1_000).unwrap());
        let t2 = Time(jiff::Timestamp::from_second(2_000).unwrap());
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            READY,
            CondState::fail("Deploying", "x"),
            Some(1),
            &t1,
        );
        set_condition(
            &mut conds,
            READY,
            CondState::fail("Deploying", "y"),
            Some(2),
            &t2,
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, t1);
        assert_eq!(conds[0].message, "y");
        assert_eq!(conds[0].observed_generation, Some(2));
        set_condition(
            &mut conds,
            READY,
            CondState::ok("DeploymentReady", "z"),
            Some(2),
            &t2,
        );
        assert_eq!(conds[0].last_transition_time, t2);
    }
}
