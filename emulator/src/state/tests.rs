//! Unit tests of the emulator's state, through an organization's operations: deployment
//! lifecycle, agent updates, secret-set bindings, sessions, secret sets and the clock.

use serde_json::{Value, json};

use std::time::Duration;

use super::*;
use crate::body::{AgentPatch, BodyKind, SecretSetBody};
use crate::error::ApiError;
use crate::pattern::Pattern;
use crate::regions::{Region, default_regions};
use crate::stamps::format_ts;
use crate::views::AgentView;

fn patch(v: Value, kind: BodyKind) -> AgentPatch {
    let Value::Object(map) = v else { panic!() };
    AgentPatch::parse(&map, kind).unwrap()
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
}

fn settings(ready_ms: u64, reconcile_ms: u64) -> Settings {
    Settings {
        ready_delay: Duration::from_millis(ready_ms),
        reconcile_delay: Duration::from_millis(reconcile_ms),
        secret_ready_delay: Duration::from_millis(100),
        ..Settings::default()
    }
}

fn create(org: &mut Org, s: &Settings, name: &str, image: &str, now: Timestamp) -> AgentView {
    org.create_agent(
        &patch(
            json!({"serviceName": name, "image": image}),
            BodyKind::Create,
        ),
        s,
        now,
    )
    .unwrap()
}

#[test]
fn create_then_reconcile_after_the_delays() {
    let s = settings(200, 300);
    let mut org = Org::new();
    let v = create(&mut org, &s, "bot", "acme/bot:1", t(0));
    assert!(!v.ready);
    assert_eq!(v.reconciled_deployment_id, None);
    assert_eq!(v.desired_deployment_id, v.active_deployment_id);
    assert_eq!(v.current_revision.as_ref().unwrap().phase, "Creating");

    let v = org.get_agent("bot", t(250)).unwrap();
    assert_eq!(v.current_revision.as_ref().unwrap().phase, "Validating");
    assert!(!v.ready && v.reconciled_deployment_id.is_none());

    let v = org.get_agent("bot", t(300)).unwrap();
    assert!(v.ready && v.available && v.active_deployment_ready);
    assert_eq!(
        v.reconciled_deployment_id.as_deref(),
        Some(v.desired_deployment_id.as_str())
    );
    assert_eq!(v.current_revision.unwrap().phase, "Active");
}

#[test]
fn zero_delays_still_show_the_create_response_unreconciled() {
    let s = Settings::default();
    let mut org = Org::new();
    let v = create(&mut org, &s, "bot", "acme/bot:1", t(0));
    assert!(!v.ready && v.reconciled_deployment_id.is_none());
    assert!(org.get_agent("bot", t(1)).unwrap().ready);
}

#[test]
fn ready_describes_the_previous_deployment_until_the_new_one_is_reconciled() {
    let s = settings(100, 100);
    let mut org = Org::new();
    let first = create(&mut org, &s, "bot", "acme/bot:1", t(0)).desired_deployment_id;
    let u = org
        .update_agent(
            "bot",
            &patch(json!({"image": "acme/bot:2"}), BodyKind::Update),
            &s,
            t(500),
        )
        .unwrap();
    assert_ne!(u.desired_deployment_id, first);
    assert!(
        u.ready,
        "the trap: ready still describes the old deployment"
    );
    assert_eq!(u.reconciled_deployment_id.as_deref(), Some(first.as_str()));
    assert_eq!(u.previous_revision.as_ref().unwrap().phase, "Active");
    let later = org.get_agent("bot", t(600)).unwrap();
    assert_eq!(
        later.reconciled_deployment_id,
        Some(later.desired_deployment_id.clone())
    );
    assert_eq!(later.previous_revision.unwrap().phase, "Draining");
}

#[test]
fn unchanged_update_warns_and_force_redeploys() {
    let s = settings(0, 0);
    let mut org = Org::new();
    let first = create(&mut org, &s, "bot", "acme/bot:1", t(0)).desired_deployment_id;
    let same = org
        .update_agent(
            "bot",
            &patch(json!({"image": "acme/bot:1"}), BodyKind::Update),
            &s,
            t(10),
        )
        .unwrap();
    assert_eq!(same.desired_deployment_id, first);
    assert!(same.warning.is_some());
    let forced = org
        .update_agent(
            "bot",
            &patch(json!({"forceRedeploy": true}), BodyKind::Update),
            &s,
            t(20),
        )
        .unwrap();
    assert_ne!(forced.desired_deployment_id, first);
    assert!(forced.warning.is_none());
    let scaled = org
        .update_agent(
            "bot",
            &patch(
                json!({"autoScaling": {"minAgents": 2, "maxAgents": 3}}),
                BodyKind::Update,
            ),
            &s,
            t(30),
        )
        .unwrap();
    assert_ne!(scaled.desired_deployment_id, forced.desired_deployment_id);
    assert_eq!(scaled.auto_scaling.min_replicas, 2);
    assert_eq!(
        org.agents["bot"].deployments.len(),
        2,
        "with zero delays the previous deployment is the reconciled one"
    );
}

#[test]
fn deployments_are_pruned_to_reconciled_previous_and_desired() {
    let s = settings(100, 100);
    let mut org = Org::new();
    let first = create(&mut org, &s, "bot", "acme/bot:1", t(0)).desired_deployment_id;
    for (i, at) in [200, 250, 260, 270].into_iter().enumerate() {
        let body = patch(
            json!({"image": format!("acme/bot:{}", i + 2)}),
            BodyKind::Update,
        );
        org.update_agent("bot", &body, &s, t(at)).unwrap();
    }
    let agent = &org.agents["bot"];
    assert_eq!(agent.deployments.len(), 3);
    assert_eq!(
        agent.deployments[0].id.to_string(),
        first,
        "the reconciled one is kept"
    );
    let v = org.get_agent("bot", t(300)).unwrap();
    assert_eq!(v.reconciled_deployment_id, Some(first));
    assert_eq!(v.previous_revision.unwrap().phase, "Draining");
}

#[test]
fn crash_keeps_traffic_on_the_previous_deployment() {
    let mut s = settings(100, 100);
    s.crash_image = Some(Pattern::image("*:crash").unwrap());
    let mut org = Org::new();
    let first = create(&mut org, &s, "bot", "acme/bot:1", t(0)).desired_deployment_id;
    org.update_agent(
        "bot",
        &patch(json!({"image": "acme/bot:crash"}), BodyKind::Update),
        &s,
        t(200),
    )
    .unwrap();
    let before = org.get_agent("bot", t(250)).unwrap();
    assert!(
        before.ready && before.errors.is_empty(),
        "failure not visible yet"
    );
    let v = org.get_agent("bot", t(20_400)).unwrap();
    assert!(!v.ready && v.available);
    assert_eq!(v.reconciled_deployment_id.as_deref(), Some(first.as_str()));
    let rev = v.current_revision.unwrap();
    assert_eq!(
        (rev.phase, rev.health.state, rev.health.reason),
        ("Failed", "waiting", Some("CrashLoopBackOff"))
    );
    assert_eq!(rev.health.last_exit_code, Some(1));
    assert_eq!(rev.health.restart_count, 3);
    assert_eq!(v.errors[0].code, "PCC_AGENT_CRASH_LOOP");
    let degraded = v.conditions.iter().find(|c| c.kind == "Degraded").unwrap();
    assert_eq!(degraded.status, "True");
    assert!(degraded.message.contains("exited with code 1"));
}

#[test]
fn pull_failure_on_create_is_never_available() {
    let mut s = settings(0, 0);
    s.pull_fail_image = Some(Pattern::image("private/*").unwrap());
    let mut org = Org::new();
    create(&mut org, &s, "bot", "private/bot:1", t(0));
    let v = org.get_agent("bot", t(5)).unwrap();
    assert!(!v.ready && !v.available && v.reconciled_deployment_id.is_none());
    assert_eq!(v.errors[0].code, "PCC_IMAGE_PULL_UNAUTHORIZED");
    let health = v.current_revision.unwrap().health;
    assert_eq!(
        (health.state, health.reason),
        ("waiting", Some("ImagePullBackOff"))
    );
}

#[test]
fn superseded_deployments_never_reconcile() {
    let s = settings(100, 100);
    let mut org = Org::new();
    let first = create(&mut org, &s, "bot", "acme/bot:1", t(0)).desired_deployment_id;
    org.update_agent(
        "bot",
        &patch(json!({"image": "acme/bot:2"}), BodyKind::Update),
        &s,
        t(50),
    )
    .unwrap();
    let v = org.get_agent("bot", t(120)).unwrap();
    assert_eq!(
        v.reconciled_deployment_id, None,
        "{first} was replaced before reconciling"
    );
    let v = org.get_agent("bot", t(150)).unwrap();
    assert_eq!(
        v.reconciled_deployment_id,
        Some(v.desired_deployment_id.clone())
    );
}

#[test]
fn validation_against_secret_sets() {
    let s = settings(0, 0);
    let mut org = Org::new();
    let body = |name: &str, set: &str| {
        patch(
            json!({"serviceName": name, "image": "a/b:1", "secretSet": set}),
            BodyKind::Create,
        )
    };
    let err = org
        .create_agent(&body("bot", "missing"), &s, t(0))
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound(_)), "{err:?}");
    org.put_secret_set(
        "creds",
        SecretSetBody::Secrets {
            keys: vec!["K".into()],
            region: None,
        },
        &settings(0, 0),
        t(0),
    )
    .unwrap();
    org.secret_sets.get_mut("creds").unwrap().ready_at = t(100);
    let err = org
        .create_agent(&body("bot", "creds"), &s, t(50))
        .unwrap_err();
    assert!(matches!(err, ApiError::Conflict(_)), "{err:?}");
    org.create_agent(&body("bot", "creds"), &s, t(150)).unwrap();
    let err = org
        .create_agent(&body("bot", "creds"), &s, t(160))
        .unwrap_err();
    assert_eq!(err, ApiError::bad_request("Service already exists"));
}

#[test]
fn update_rules() {
    let s = settings(0, 0);
    let mut org = Org::new();
    create(&mut org, &s, "bot", "acme/bot:1", t(0));
    let err = org
        .update_agent(
            "bot",
            &patch(json!({"region": "eu-central"}), BodyKind::Update),
            &s,
            t(1),
        )
        .unwrap_err();
    assert!(err.to_string().starts_with("region cannot be changed"));
    let ok = org
        .update_agent(
            "bot",
            &patch(json!({"region": "us-west"}), BodyKind::Update),
            &s,
            t(2),
        )
        .unwrap();
    assert!(ok.warning.is_some());
    let err = org
        .update_agent(
            "bot",
            &patch(json!({"autoScaling": {"minAgents": 20}}), BodyKind::Update),
            &s,
            t(3),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "autoScaling.minAgents (20) must not exceed autoScaling.maxAgents (10)"
    );
    let err = org
        .update_agent("nope", &patch(json!({}), BodyKind::Update), &s, t(4))
        .unwrap_err();
    assert_eq!(err, ApiError::not_found());
}

#[test]
fn sessions_fill_the_pool_and_expire() {
    let s = settings(0, 0);
    let mut org = Org::new();
    org.create_agent(
        &patch(
            json!({"serviceName": "bot", "image": "a/b:1", "autoScaling": {"maxAgents": 2},
                   "maxSessionDuration": 60}),
            BodyKind::Create,
        ),
        &s,
        t(0),
    )
    .unwrap();
    let a = org.start_session("bot", t(1)).unwrap();
    org.start_session("bot", t(2)).unwrap();
    assert!(matches!(
        org.start_session("bot", t(3)),
        Err(ApiError::TooManyRequests(_))
    ));
    assert_eq!(org.get_agent("bot", t(4)).unwrap().active_session_count, 2);
    assert!(org.end_session(&a.to_string()));
    org.start_session("bot", t(5)).unwrap();
    assert_eq!(
        org.get_agent("bot", t(60_003))
            .unwrap()
            .active_session_count,
        1
    );
    assert_eq!(org.end_sessions("bot", t(60_004)).unwrap(), 1);
    // The contract lists no 404 for starting a session.
    assert!(matches!(
        org.start_session("nope", t(1)),
        Err(ApiError::BadRequest(_))
    ));
}

#[test]
fn secret_sets_pending_then_ready_and_conflicts() {
    let s = settings(0, 0);
    let mut org = Org::new();
    let v = org
        .put_secret_set(
            "creds",
            SecretSetBody::Secrets {
                keys: vec!["A".into()],
                region: None,
            },
            &s,
            t(0),
        )
        .unwrap();
    assert_eq!((v.status, v.region.as_str()), ("OK", "us-west"));
    assert_eq!(org.list_secret_sets(None, t(0)).sets[0].status, "pending");
    let again = SecretSetBody::Secrets {
        keys: vec!["B".into()],
        region: None,
    };
    assert!(matches!(
        org.put_secret_set("creds", again.clone(), &s, t(50)),
        Err(ApiError::Conflict(_))
    ));
    assert_eq!(org.list_secret_sets(None, t(100)).sets[0].status, "ready");
    org.put_secret_set("creds", again, &s, t(100)).unwrap();
    let detail = org.get_secret_set("creds", t(300)).unwrap();
    let names: Vec<_> = detail
        .secrets
        .iter()
        .map(|f| f.field_name.as_str())
        .collect();
    assert_eq!(names, ["A", "B"]);
    org.delete_secret("creds", "A", &s, t(300)).unwrap();
    assert!(matches!(
        org.delete_secret_set("creds", t(350)),
        Err(ApiError::Conflict(_))
    ));
    org.delete_secret_set("creds", t(500)).unwrap();
    assert!(org.get_secret_set("creds", t(501)).is_err());
}

#[test]
fn clock_is_strictly_increasing_and_timestamps_have_milliseconds() {
    let mut state = State::default();
    let a = state.now();
    let b = state.now();
    assert!(b > a);
    assert_eq!(format_ts(t(5)), "2023-11-14T22:13:20.005Z");
}

#[test]
fn unknown_regions_are_refused() {
    let s = settings(0, 0);
    let mut org = Org::new();
    let refused = ApiError::bad_request("Invalid region or organization does not have access");
    let body = |region: &str| {
        patch(
            json!({"serviceName": "bot", "image": "a/b:1", "region": region}),
            BodyKind::Create,
        )
    };
    assert_eq!(
        org.create_agent(&body("mars-north"), &s, t(0)).unwrap_err(),
        refused
    );
    let set = |region: &str| SecretSetBody::Secrets {
        keys: vec!["A".into()],
        region: Some(region.into()),
    };
    assert_eq!(
        org.put_secret_set("creds", set("mars-north"), &s, t(0))
            .unwrap_err(),
        refused
    );
    assert_eq!(org.agent_count() + org.secret_set_count(), 0);
    org.create_agent(&body("ap-south"), &s, t(0)).unwrap();
    org.put_secret_set("creds", set("eu-central"), &s, t(0))
        .unwrap();
}

#[test]
fn regions_parse_from_the_command_line() {
    assert_eq!(
        Region::parse("eu-west=Europe (Ireland)").unwrap(),
        Region {
            code: "eu-west".into(),
            display_name: "Europe (Ireland)".into()
        }
    );
    assert_eq!(Region::parse("mars").unwrap().display_name, "mars");
    assert!(Region::parse("=Nowhere").is_err());
    assert!(Region::parse("x=").is_err());
    let codes: Vec<String> = default_regions().into_iter().map(|r| r.code).collect();
    assert_eq!(codes, ["us-west", "us-east", "eu-central", "ap-south"]);
}
