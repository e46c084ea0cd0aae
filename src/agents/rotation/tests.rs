use super::*;
use crate::agents::plan;
use crate::crd::PipecatAgentSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

fn rev(name: &str, revision: i64) -> SecretSetRevision {
    SecretSetRevision {
        name: name.into(),
        revision,
    }
}

fn ready(name: &str, revision: i64) -> ManagedSet {
    ManagedSet {
        name: name.into(),
        resource: format!("ns/{name}"),
        state: SetState::Ready(revision),
    }
}

fn desired() -> Desired {
    let spec: PipecatAgentSpec = serde_json::from_value(serde_json::json!({
        "image": "acme/bot:1", "secretSet": "env", "imagePullSecretSet": "pull"
    }))
    .unwrap();
    plan::desired_from_spec("bot", &spec)
}

fn set_with(status: serde_json::Value, generation: i64) -> PipecatSecretSet {
    let mut s: PipecatSecretSet = serde_json::from_value(serde_json::json!({
        "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatSecretSet",
        "metadata": {"name": "env", "namespace": "ns", "generation": generation},
        "spec": {"secretRef": {"name": "values"}},
        "status": status,
    }))
    .unwrap();
    if let Some(st) = s.status.as_mut() {
        for c in &mut st.conditions {
            c.last_transition_time = Time(jiff::Timestamp::from_second(1).unwrap());
        }
    }
    s
}

fn cond(type_: &str, status: &str, reason: &str, generation: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{reason} message"),
        observed_generation: Some(generation),
        last_transition_time: Time(jiff::Timestamp::from_second(1).unwrap()),
    }
}

fn with_conditions(mut s: PipecatSecretSet, conditions: Vec<Condition>) -> PipecatSecretSet {
    s.status.get_or_insert_with(Default::default).conditions = conditions;
    s
}

#[test]
fn a_set_is_ready_only_when_its_latest_revision_is_ready_for_its_generation() {
    let ready_at = |revision: i64, ready_revision: i64, generation: i64| {
        with_conditions(
            set_with(
                serde_json::json!({"setName": "env", "remoteStatus": "ready",
                    "revision": revision, "readyRevision": ready_revision}),
                generation,
            ),
            vec![cond("Ready", "True", "SetReady", 1)],
        )
    };
    assert_eq!(state(&ready_at(2, 2, 1)), SetState::Ready(2));
    // A rotation sent but not ready yet.
    match state(&ready_at(3, 2, 1)) {
        SetState::Pending(why) => assert!(why.contains("revision 3"), "{why}"),
        other => panic!("{other:?}"),
    }
    // The Ready condition describes an older generation (a spec change not yet seen).
    assert!(matches!(state(&ready_at(2, 2, 2)), SetState::Pending(_)));
    // Never synced.
    assert!(matches!(
        state(&set_with(serde_json::Value::Null, 1)),
        SetState::Pending(_)
    ));
    // Pipecat Cloud failed it: the error is carried (it never holds values).
    let failed = set_with(
        serde_json::json!({"remoteStatus": "failed", "revision": 1,
            "errorMessage": "registry host unreachable"}),
        1,
    );
    assert_eq!(
        state(&failed),
        SetState::Failed("Pipecat Cloud failed to provision it: registry host unreachable".into())
    );
    // Not Ready and stalled (e.g. its Secret is missing): a person must act.
    let stalled = with_conditions(
        set_with(serde_json::json!({}), 1),
        vec![
            cond("Ready", "False", "SecretNotFound", 1),
            cond("Stalled", "True", "SecretNotFound", 1),
        ],
    );
    assert!(matches!(state(&stalled), SetState::Failed(m) if m.contains("SecretNotFound")));
    let provisioning = with_conditions(
        set_with(serde_json::json!({"remoteStatus": "pending"}), 1),
        vec![cond("Ready", "False", "Provisioning", 1)],
    );
    assert!(matches!(state(&provisioning), SetState::Pending(m) if m.contains("Provisioning")));
}

#[test]
fn the_agent_waits_for_the_first_set_not_ready_and_says_which() {
    let sets = [
        ready("env", 1),
        ManagedSet {
            name: "pull".into(),
            resource: "ns/pull-creds".into(),
            state: SetState::Pending("revision 1 of its values is provisioning (pending)".into()),
        },
    ];
    let wait = wait_for("bot", &sets).unwrap();
    assert!(!wait.failed);
    assert_eq!(
        wait.message,
        "agent bot waits for secret set pull (PipecatSecretSet ns/pull-creds): revision 1 of its values is provisioning (pending)"
    );
    let failed = [ManagedSet {
        state: SetState::Failed("boom".into()),
        ..ready("env", 1)
    }];
    assert!(wait_for("bot", &failed).unwrap().failed);
    assert_eq!(wait_for("bot", &[ready("env", 1)]), None);
    assert_eq!(wait_for("bot", &[]), None);
}

#[test]
fn a_rotation_above_the_recorded_revision_is_due_once() {
    let sets = [ready("env", 2), ready("pull", 1)];
    let d = decide(
        &[rev("env", 1), rev("pull", 1)],
        None,
        &sets,
        Some("d1"),
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(d.due, [rev("env", 2)]);
    assert_eq!(d.record, [rev("env", 2), rev("pull", 1)]);
    // Recorded: nothing more.
    let d = decide(
        &d.record,
        None,
        &sets,
        Some("d2"),
        false,
        SecretRotation::Redeploy,
    );
    assert!(d.due.is_empty());
    // Two sets rotated at once: both due, one redeploy (one plan).
    let both = decide(
        &[rev("env", 1), rev("pull", 1)],
        None,
        &[ready("env", 2), ready("pull", 5)],
        Some("d1"),
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(both.due, [rev("env", 2), rev("pull", 5)]);
}

#[test]
fn creation_ignore_and_unmanaged_sets_record_without_a_redeploy() {
    let sets = [ready("env", 3)];
    let first = decide(&[], None, &sets, Some("d1"), true, SecretRotation::Redeploy);
    assert!(
        first.due.is_empty(),
        "a new deployment already has the values"
    );
    assert_eq!(first.record, [rev("env", 3)]);
    let ignore = decide(
        &[rev("env", 1)],
        None,
        &sets,
        Some("d1"),
        false,
        SecretRotation::Ignore,
    );
    assert!(ignore.due.is_empty());
    assert_eq!(
        ignore.record,
        [rev("env", 3)],
        "recorded: Redeploy later acts on later rotations only"
    );
    let none = decide(
        &[rev("env", 1)],
        None,
        &[],
        Some("d1"),
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(
        none,
        Decision::default(),
        "a set no longer managed is dropped"
    );
    // A set managed since the agent was deployed: the values the resource sent are new to it.
    let new = decide(
        &[],
        None,
        &sets,
        Some("d1"),
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(new.due, [rev("env", 3)]);
}

#[test]
fn an_announced_redeploy_counts_once_the_deployment_moved_on() {
    let sets = [ready("env", 2)];
    let pending = PendingRotation {
        revisions: vec![rev("env", 2)],
        replaces: Some("d1".into()),
    };
    // Killed after the call: the agent is on a new deployment; nothing is sent again.
    let after = decide(
        &[rev("env", 1)],
        Some(&pending),
        &sets,
        Some("d2"),
        false,
        SecretRotation::Redeploy,
    );
    assert!(after.due.is_empty(), "{after:?}");
    assert_eq!(after.reached, Some(pending.clone()));
    // Killed before the call (or it failed): still on d1, so it is sent.
    let before = decide(
        &[rev("env", 1)],
        Some(&pending),
        &sets,
        Some("d1"),
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(before.due, [rev("env", 2)]);
    assert_eq!(before.reached, None);
    // A later rotation than the announced one is still due.
    let later = decide(
        &[rev("env", 1)],
        Some(&pending),
        &[ready("env", 3)],
        Some("d2"),
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(later.due, [rev("env", 3)]);
    // No deployment id to compare: it cannot be known to have happened.
    let blind = decide(
        &[rev("env", 1)],
        Some(&pending),
        &sets,
        None,
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(blind.due, [rev("env", 2)]);
}

#[test]
fn a_due_rotation_forces_exactly_the_update_the_pass_sends() {
    let d = desired();
    let due = [rev("env", 2)];
    // Nothing else to do: the spec's configuration, unchanged, with forceRedeploy.
    let Plan::Update { request, reason } = force(Plan::Nothing, &d, &due) else {
        panic!("an update")
    };
    assert!(request.force_redeploy);
    assert_eq!(request.config, d.config);
    assert!(request.resets.0.is_empty());
    assert_eq!(
        reason,
        UpdateReason::SecretRotation(vec!["env revision 2".into()])
    );
    assert!(
        reason.describe().contains("env revision 2"),
        "{}",
        reason.describe()
    );
    // An update sent anyway carries the redeploy: still one call.
    let spec_change = Plan::Update {
        request: UpdateAgentRequest {
            config: d.config.clone(),
            resets: Resets(Vec::new()),
            force_redeploy: false,
        },
        reason: UpdateReason::SpecChanged(vec!["image"]),
    };
    let Plan::Update { request, reason } = force(spec_change.clone(), &d, &due) else {
        panic!("an update")
    };
    assert!(request.force_redeploy);
    assert_eq!(reason, UpdateReason::SpecChanged(vec!["image"]));
    // Nothing due: the plan as it was.
    assert_eq!(force(spec_change.clone(), &d, &[]), spec_change);
    assert_eq!(force(Plan::Nothing, &d, &[]), Plan::Nothing);
}

#[test]
fn a_step_announces_the_redeploy_with_the_deployment_it_replaces() {
    let d = desired();
    let observed = Agent {
        name: "bot".into(),
        desired_deployment_id: Some("d1".into()),
        ..Default::default()
    };
    let status = PipecatAgentStatus {
        secret_set_revisions: vec![rev("env", 1)],
        requested_deployment: Some(RequestedDeployment {
            id: "d1".into(),
            replaces: None,
        }),
        ..Default::default()
    };
    let s = step(
        Plan::Nothing,
        &d,
        &status,
        &[ready("env", 2)],
        &observed,
        false,
        SecretRotation::Redeploy,
    );
    assert!(matches!(s.plan, Plan::Update { ref request, .. } if request.force_redeploy));
    assert_eq!(
        s.announce,
        Some(PendingRotation {
            revisions: vec![rev("env", 2)],
            replaces: Some("d1".into())
        })
    );
    assert_eq!(s.record, [rev("env", 2)]);

    // The next pass after a kill: the status holds the announcement, the agent is on d2.
    let announced = PipecatAgentStatus {
        pending_rotation: s.announce.clone(),
        ..status.clone()
    };
    let moved = Agent {
        desired_deployment_id: Some("d2".into()),
        ..observed.clone()
    };
    let s = step(
        Plan::Nothing,
        &d,
        &announced,
        &[ready("env", 2)],
        &moved,
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(s.plan, Plan::Nothing);
    assert_eq!(s.announce, None);
    assert_eq!(s.record, [rev("env", 2)]);
    assert_eq!(
        s.requested,
        Some(RequestedDeployment {
            id: "d2".into(),
            replaces: Some("d1".into())
        }),
        "Ready waits for the redeployed deployment"
    );
    // A region mismatch is not turned into an update (and nothing is announced).
    let mismatch = Plan::RegionMismatch {
        desired: "a".into(),
        actual: "b".into(),
    };
    let s = step(
        mismatch,
        &d,
        &status,
        &[ready("env", 2)],
        &observed,
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(s.announce, None);
}

#[test]
fn an_image_pull_rotation_redeploys_nothing_unless_asked() {
    // Registry tokens expire every few hours: a redeploy per refresh would be for nothing, since
    // new instances pull with the set's current values anyway.
    let d = desired(); // secretSet "env", imagePullSecretSet "pull"
    let observed = Agent {
        name: "bot".into(),
        desired_deployment_id: Some("d1".into()),
        ..Default::default()
    };
    let status = PipecatAgentStatus {
        secret_set_revisions: vec![rev("env", 1), rev("pull", 1)],
        ..Default::default()
    };
    let pull_rotated = [ready("env", 1), ready("pull", 2)];
    let s = step(
        Plan::Nothing,
        &d,
        &status,
        &pull_rotated,
        &observed,
        false,
        SecretRotation::Redeploy,
    );
    assert_eq!(s.plan, Plan::Nothing, "no redeploy by default");
    assert_eq!(s.announce, None);
    assert_eq!(s.record, [rev("env", 1), rev("pull", 2)], "still recorded");
    let s = step(
        Plan::Nothing,
        &d,
        &status,
        &pull_rotated,
        &observed,
        false,
        SecretRotation::RedeployIncludingImagePull,
    );
    assert!(matches!(s.plan, Plan::Update { ref request, .. } if request.force_redeploy));
    // The env set's rotation still redeploys by default, once.
    let env_rotated = [ready("env", 2), ready("pull", 1)];
    let s = step(
        Plan::Nothing,
        &d,
        &status,
        &env_rotated,
        &observed,
        false,
        SecretRotation::Redeploy,
    );
    assert!(matches!(s.plan, Plan::Update { ref request, .. } if request.force_redeploy));
}

#[test]
fn a_new_announcement_keeps_the_revisions_of_an_unrecorded_one() {
    // env was redeployed (announced, d1 -> d2) and the operator killed; then pull rotates.
    let d = desired();
    let status = PipecatAgentStatus {
        secret_set_revisions: vec![rev("env", 1), rev("pull", 1)],
        pending_rotation: Some(PendingRotation {
            revisions: vec![rev("env", 2), rev("pull", 1)],
            replaces: Some("d1".into()),
        }),
        ..Default::default()
    };
    let on_d2 = Agent {
        name: "bot".into(),
        desired_deployment_id: Some("d2".into()),
        ..Default::default()
    };
    let sets = [ready("env", 2), ready("pull", 2)];
    let s = step(
        Plan::Nothing,
        &d,
        &status,
        &sets,
        &on_d2,
        false,
        SecretRotation::RedeployIncludingImagePull,
    );
    let announced = s.announce.expect("pull is due");
    assert_eq!(announced.revisions, [rev("env", 2), rev("pull", 2)]);
    // Killed again after that redeploy (d3): nothing is due any more.
    let status = PipecatAgentStatus {
        pending_rotation: Some(announced),
        ..status
    };
    let on_d3 = Agent {
        desired_deployment_id: Some("d3".into()),
        ..on_d2
    };
    let s = step(
        Plan::Nothing,
        &d,
        &status,
        &sets,
        &on_d3,
        false,
        SecretRotation::RedeployIncludingImagePull,
    );
    assert_eq!(s.plan, Plan::Nothing);
}

#[test]
fn only_a_new_ready_revision_or_a_failure_concerns_a_caught_up_agent() {
    let status = PipecatAgentStatus {
        secret_set_revisions: vec![rev("env", 2)],
        ..Default::default()
    };
    assert!(!concerns(&status, &ready("env", 2)), "already recorded");
    assert!(
        concerns(&status, &ready("env", 3)),
        "a rotation to roll out"
    );
    assert!(concerns(&status, &ready("pull", 1)), "a set never recorded");
    let provisioning = ManagedSet {
        state: SetState::Pending("revision 3 is provisioning".into()),
        ..ready("env", 2)
    };
    assert!(
        !concerns(&status, &provisioning),
        "the agent keeps running meanwhile"
    );
    let failed = ManagedSet {
        state: SetState::Failed("bad value".into()),
        ..ready("env", 2)
    };
    assert!(concerns(&status, &failed), "a failure to report");
}
