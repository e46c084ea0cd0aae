//! Unit tests of the planner: one decision per test, on plain values.
use super::*;
use crate::cloud::types::{Deployment, KrispModels, Manifest, ManifestSpec, ObservedAutoScaling};
use crate::crd::{AutoScaling, PipecatAgentSpec};

fn seed_spec() -> PipecatAgentSpec {
    serde_json::from_value(serde_json::json!({
        "image": "your-dockername/voice-starter:0.1",
        "nodeType": "arm",
        "imagePullSecretSet": "dockerhub-credentials",
        "secretSet": "voice-starter-secrets",
        "autoScaling": {"minAgents": 1, "maxAgents": 10},
        "enableKrisp": false
    }))
    .unwrap()
}

/// The agent as the API reports it after applying `spec` (the seed response's shape).
fn observed_for(spec: &PipecatAgentSpec) -> Agent {
    let a = spec.auto_scaling.clone().unwrap();
    let scaling = ObservedAutoScaling {
        min_replicas: Some(a.min_agents.into()),
        max_replicas: Some(a.max_agents.into()),
        ..Default::default()
    };
    Agent {
        name: "voice-starter".into(),
        region: Some("us-west".into()),
        ready: Some(true),
        desired_deployment_id: Some("d1".into()),
        reconciled_deployment_id: Some("d1".into()),
        auto_scaling: Some(scaling.clone()),
        deployment: Some(Deployment {
            id: Some("d1".into()),
            manifest: Some(Manifest {
                spec: Some(ManifestSpec {
                    image: spec.image.clone(),
                    auto_scaling: Some(scaling),
                    env_from_secret_names: spec.secret_set.clone().map(|s| vec![s]),
                    krisp_models: Some(KrispModels {
                        enabled: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn applied(d: &Desired) -> LastApplied {
    LastApplied {
        config_hash: Some(d.hash.clone()),
        redeploy_token: d.redeploy_token.clone(),
        ..Default::default()
    }
}

#[test]
fn missing_agent_is_created_with_the_full_body() {
    let d = desired_from_spec("voice-starter", &seed_spec());
    match plan(&d, None, &LastApplied::default()) {
        Plan::Create(req) => {
            let body = serde_json::to_value(&req).unwrap();
            assert_eq!(body["serviceName"], "voice-starter");
            assert_eq!(body["image"], "your-dockername/voice-starter:0.1");
            assert_eq!(body["nodeType"], "arm");
            assert_eq!(body["imagePullSecretSet"], "dockerhub-credentials");
            assert_eq!(body["secretSet"], "voice-starter-secrets");
            assert_eq!(body["autoScaling"]["minAgents"], 1);
            assert_eq!(body["autoScaling"]["maxAgents"], 10);
            assert!(
                body.get("enableKrisp").is_none(),
                "enableKrisp is gone from the API: {body}"
            );
            assert!(body.get("region").is_none());
            assert!(body.get("forceRedeploy").is_none());
        }
        other => panic!("expected create, got {other:?}"),
    }
}

#[test]
fn unchanged_agent_needs_no_update() {
    let spec = seed_spec();
    let d = desired_from_spec("voice-starter", &spec);
    let obs = observed_for(&spec);
    assert_eq!(plan(&d, Some(&obs), &applied(&d)), Plan::Nothing);
}

#[test]
fn adopted_agent_that_already_matches_is_recorded_not_updated() {
    let spec = seed_spec();
    let d = desired_from_spec("voice-starter", &spec);
    let obs = observed_for(&spec);
    assert_eq!(plan(&d, Some(&obs), &LastApplied::default()), Plan::Nothing);
}

#[test]
fn image_change_is_an_update_with_the_whole_body() {
    let old = seed_spec();
    let mut new = old.clone();
    new.image = Some("your-dockername/voice-starter:0.2".into());
    let d_old = desired_from_spec("voice-starter", &old);
    let d_new = desired_from_spec("voice-starter", &new);
    assert_ne!(d_old.hash, d_new.hash);
    match plan(&d_new, Some(&observed_for(&old)), &applied(&d_old)) {
        Plan::Update { request, reason } => {
            assert_eq!(reason, UpdateReason::SpecChanged(vec!["image"]));
            assert!(!request.force_redeploy);
            let body = serde_json::to_value(&request).unwrap();
            assert_eq!(body["image"], "your-dockername/voice-starter:0.2");
            assert_eq!(body["secretSet"], "voice-starter-secrets");
            assert!(body.get("serviceName").is_none());
            assert!(body.get("region").is_none());
        }
        other => panic!("expected update, got {other:?}"),
    }
}

#[test]
fn scaling_change_is_detected() {
    let old = seed_spec();
    let mut new = old.clone();
    new.auto_scaling = Some(AutoScaling {
        min_agents: 2,
        max_agents: 10,
    });
    let d_new = desired_from_spec("voice-starter", &new);
    let d_old = desired_from_spec("voice-starter", &old);
    match plan(&d_new, Some(&observed_for(&old)), &applied(&d_old)) {
        Plan::Update { reason, .. } => {
            assert_eq!(reason, UpdateReason::SpecChanged(vec!["autoScaling"]))
        }
        other => panic!("expected update, got {other:?}"),
    }
}

#[test]
fn drift_is_restored() {
    let spec = seed_spec();
    let d = desired_from_spec("voice-starter", &spec);
    let mut drifted = spec.clone();
    drifted.image = Some("someone/else:latest".into());
    drifted.secret_set = Some("other-secrets".into());
    match plan(&d, Some(&observed_for(&drifted)), &applied(&d)) {
        Plan::Update { request, reason } => {
            assert_eq!(reason, UpdateReason::Drift(vec!["image", "secretSet"]));
            assert_eq!(
                request.config.image.as_deref(),
                Some("your-dockername/voice-starter:0.1")
            );
        }
        other => panic!("expected update, got {other:?}"),
    }
}

#[test]
fn redeploy_token_change_forces_one_redeploy() {
    let mut spec = seed_spec();
    spec.redeploy_token = Some("1".into());
    let d1 = desired_from_spec("voice-starter", &spec);
    let obs = observed_for(&spec);
    spec.redeploy_token = Some("2".into());
    let d2 = desired_from_spec("voice-starter", &spec);
    assert_eq!(d1.hash, d2.hash, "the token is not configuration");
    match plan(&d2, Some(&obs), &applied(&d1)) {
        Plan::Update { request, reason } => {
            assert_eq!(reason, UpdateReason::Redeploy);
            assert!(request.force_redeploy);
            let body = serde_json::to_value(&request).unwrap();
            assert_eq!(body["forceRedeploy"], true);
        }
        other => panic!("expected redeploy, got {other:?}"),
    }
    // Once applied, the same token plans nothing.
    assert_eq!(plan(&d2, Some(&obs), &applied(&d2)), Plan::Nothing);
}

#[test]
fn token_present_at_creation_does_not_redeploy() {
    let mut spec = seed_spec();
    spec.redeploy_token = Some("initial".into());
    let d = desired_from_spec("voice-starter", &spec);
    let obs = observed_for(&spec);
    assert_eq!(plan(&d, Some(&obs), &LastApplied::default()), Plan::Nothing);
}

#[test]
fn unobservable_change_is_sent() {
    let old = seed_spec();
    let mut new = old.clone();
    new.max_session_duration = Some(3600);
    let d_old = desired_from_spec("voice-starter", &old);
    let d_new = desired_from_spec("voice-starter", &new);
    match plan(&d_new, Some(&observed_for(&old)), &applied(&d_old)) {
        Plan::Update { reason, .. } => {
            // The seed response reports neither the pull secret set nor the duration.
            assert_eq!(
                reason,
                UpdateReason::Unobservable(vec!["imagePullSecretSet", "maxSessionDuration"])
            )
        }
        other => panic!("expected update, got {other:?}"),
    }
    // Once applied, the same unobservable field is not sent again at every resync.
    assert_eq!(
        plan(&d_new, Some(&observed_for(&old)), &applied(&d_new)),
        Plan::Nothing
    );
}

#[test]
fn removal_of_an_unreported_field_is_sent() {
    // Everything the spec sets is reported; krispViva, which it drops, is not.
    let mut old = seed_spec();
    old.image_pull_secret_set = None;
    old.krisp_viva = Some(crate::crd::KrispViva {
        audio_filter: Some(crate::crd::AudioFilter::Tel),
    });
    let mut new = old.clone();
    new.krisp_viva = None;
    let d_old = desired_from_spec("voice-starter", &old);
    let d_new = desired_from_spec("voice-starter", &new);
    let obs = observed_for(&old);
    match plan(&d_new, Some(&obs), &applied(&d_old)) {
        Plan::Update { request, reason } => {
            assert!(
                request
                    .resets
                    .0
                    .contains(&crate::cloud::types::Reset::KrispViva),
                "{request:?}"
            );
            let body = serde_json::to_value(&request).unwrap();
            assert_eq!(body["krispViva"], serde_json::json!({"audioFilter": null}));
            match reason {
                UpdateReason::Unobservable(f) => assert!(f.contains(&"krispViva"), "{f:?}"),
                other => panic!("expected Unobservable, got {other:?}"),
            }
        }
        other => panic!("expected update, got {other:?}"),
    }
    // Once applied, not sent again at every resync.
    assert_eq!(plan(&d_new, Some(&obs), &applied(&d_new)), Plan::Nothing);
}

#[test]
fn region_change_cannot_be_planned_as_update() {
    let mut spec = seed_spec();
    spec.region = Some("eu-central".into());
    let d = desired_from_spec("voice-starter", &spec);
    let obs = observed_for(&seed_spec());
    assert_eq!(
        plan(&d, Some(&obs), &applied(&d)),
        Plan::RegionMismatch {
            desired: "eu-central".into(),
            actual: "us-west".into()
        }
    );
}

#[test]
fn sparse_response_does_not_cause_updates() {
    // An old-style response with no manifest and no autoScaling cannot show drift.
    let spec = seed_spec();
    let d = desired_from_spec("voice-starter", &spec);
    let bare = Agent {
        name: "voice-starter".into(),
        ..Default::default()
    };
    assert_eq!(plan(&d, Some(&bare), &applied(&d)), Plan::Nothing);
}

fn refusal(d: &Desired, obs: &Agent) -> LastApplied {
    LastApplied {
        refused: Some(Refusal {
            config_hash: d.hash.clone(),
            mismatches: compare(&d.config, &d.omitted, obs).differ,
        }),
        ..applied(d)
    }
}

fn body(p: &Plan) -> serde_json::Value {
    match p {
        Plan::Update { request, .. } => serde_json::to_value(request).unwrap(),
        other => panic!("expected update, got {other:?}"),
    }
}

#[test]
fn a_removed_secret_set_is_cleared_with_an_empty_name() {
    let old = seed_spec();
    let mut new = old.clone();
    new.secret_set = None;
    let d_new = desired_from_spec("voice-starter", &new);
    let d_old = desired_from_spec("voice-starter", &old);
    let p = plan(&d_new, Some(&observed_for(&old)), &applied(&d_old));
    assert!(
        matches!(&p, Plan::Update { reason: UpdateReason::SpecChanged(f), .. } if f == &vec!["secretSet"]),
        "{p:?}"
    );
    let b = body(&p);
    assert_eq!(b["secretSet"], "", "{b}");
    // Fields the seed answer does not report are returned to their defaults blindly.
    assert_eq!(b["agentProfile"], "agent-1x");
    assert_eq!(b["maxSessionDuration"], 7200);
    assert!(b["krispViva"]["audioFilter"].is_null());
    // Once the set is gone remotely, nothing more is sent.
    assert_eq!(
        plan(&d_new, Some(&observed_for(&new)), &applied(&d_new)),
        Plan::Nothing
    );
}

#[test]
fn removed_fields_return_to_their_documented_defaults() {
    let mut old = seed_spec();
    old.agent_profile = Some(crate::crd::AgentProfile::Agent3x);
    let mut new = old.clone();
    new.agent_profile = None;
    new.auto_scaling = None;
    new.enable_krisp = None;
    let d_old = desired_from_spec("voice-starter", &old);
    let d_new = desired_from_spec("voice-starter", &new);
    let mut obs = observed_for(&old);
    obs.agent_profile = Some("agent-3x".into());
    let p = plan(&d_new, Some(&obs), &applied(&d_old));
    assert!(
        matches!(&p, Plan::Update { reason: UpdateReason::SpecChanged(f), .. } if f == &vec!["autoScaling", "agentProfile"]),
        "{p:?}"
    );
    let b = body(&p);
    assert_eq!(b["agentProfile"], "agent-1x");
    assert_eq!(b["autoScaling"], serde_json::json!({"minAgents": 0}));
    assert!(b.get("enableKrisp").is_none(), "never sent: {b}");
}

#[test]
fn a_removed_secret_set_is_detached_with_an_empty_name_never_null() {
    // The contract types secretSet and imagePullSecretSet as non-nullable strings.
    let old = seed_spec();
    let mut new = old.clone();
    new.secret_set = None;
    new.image_pull_secret_set = None;
    let d_old = desired_from_spec("voice-starter", &old);
    let d_new = desired_from_spec("voice-starter", &new);
    let mut obs = observed_for(&old);
    if let Some(spec) = obs
        .deployment
        .as_mut()
        .and_then(|d| d.manifest.as_mut())
        .and_then(|m| m.spec.as_mut())
    {
        spec.image_pull_secret_name = Some("dockerhub-credentials".into());
    }
    let p = plan(&d_new, Some(&obs), &applied(&d_old));
    let b = body(&p);
    assert_eq!(b["secretSet"], "", "{b}");
    assert_eq!(b["imagePullSecretSet"], "", "{b}");
    assert!(
        !b.as_object().unwrap().values().any(|v| v.is_null()),
        "no null at the top level: {b}"
    );
}

#[test]
fn an_upgrade_from_a_version_that_fingerprinted_enable_krisp_plans_nothing() {
    let spec = seed_spec(); // enableKrisp: false, as 0.1's fixtures have it
    let d = desired_from_spec("voice-starter", &spec);
    let last = LastApplied {
        config_hash: Some(d.legacy_hashes[1].clone()),
        ..Default::default()
    };
    assert!(last.config_hash.is_some() && last.config_hash.as_deref() != Some(d.hash.as_str()));
    assert_eq!(plan(&d, Some(&observed_for(&spec)), &last), Plan::Nothing);
    // and an edit of enableKrisp alone (true, or removed) sends nothing either
    for krisp in [Some(true), None] {
        let mut edited = spec.clone();
        edited.enable_krisp = krisp;
        let d_edited = desired_from_spec("voice-starter", &edited);
        assert_eq!(
            plan(&d_edited, Some(&observed_for(&edited)), &last),
            Plan::Nothing
        );
    }
}

#[test]
fn redeploy_token_with_a_spec_change_is_one_forced_update() {
    let mut old = seed_spec();
    old.redeploy_token = Some("1".into());
    let mut new = old.clone();
    new.redeploy_token = Some("2".into());
    new.image = Some("your-dockername/voice-starter:0.2".into());
    let d_old = desired_from_spec("voice-starter", &old);
    let d_new = desired_from_spec("voice-starter", &new);
    match plan(&d_new, Some(&observed_for(&old)), &applied(&d_old)) {
        Plan::Update { request, reason } => {
            assert_eq!(reason, UpdateReason::SpecChanged(vec!["image"]));
            assert!(request.force_redeploy, "the token is not used up silently");
        }
        other => panic!("expected update, got {other:?}"),
    }
}

#[test]
fn removing_the_token_forces_nothing() {
    let mut spec = seed_spec();
    spec.redeploy_token = Some("1".into());
    let d_old = desired_from_spec("voice-starter", &spec);
    spec.redeploy_token = None;
    let d_new = desired_from_spec("voice-starter", &spec);
    assert_eq!(
        plan(&d_new, Some(&observed_for(&spec)), &applied(&d_old)),
        Plan::Nothing
    );
}

#[test]
fn a_refusal_recorded_under_an_earlier_fingerprint_is_not_resent_after_an_upgrade() {
    // Recorded by a version whose fingerprint covered enableKrisp (seed_spec sets it false).
    let spec = seed_spec();
    let d = desired_from_spec("voice-starter", &spec);
    let mut clamped = spec.clone();
    clamped.auto_scaling = Some(AutoScaling {
        min_agents: 1,
        max_agents: 5,
    });
    let obs = observed_for(&clamped);
    let mut last = refusal(&d, &obs);
    last.config_hash = Some(d.legacy_hashes[1].clone());
    if let Some(r) = last.refused.as_mut() {
        r.config_hash = d.legacy_hashes[1].clone();
    }
    assert!(
        matches!(plan(&d, Some(&obs), &last), Plan::NotConverging(_)),
        "the refused update was planned again"
    );
}

#[test]
fn a_secret_set_the_answer_does_not_report_is_not_detached_blindly() {
    let old = seed_spec();
    let mut new = old.clone();
    new.secret_set = None;
    let d_new = desired_from_spec("voice-starter", &new);
    let d_old = desired_from_spec("voice-starter", &old);
    let mut obs = observed_for(&old);
    obs.deployment = None; // no manifest: the sets are not reported
    let p = plan(&d_new, Some(&obs), &applied(&d_old));
    if let Plan::Update { request, .. } = &p {
        let b = serde_json::to_value(request).unwrap();
        assert!(b.get("secretSet").is_none(), "{b}");
    }
}

#[test]
fn a_refused_update_is_not_sent_again_until_something_changes() {
    let spec = seed_spec();
    let d = desired_from_spec("voice-starter", &spec);
    let mut clamped = spec.clone();
    clamped.auto_scaling = Some(AutoScaling {
        min_agents: 1,
        max_agents: 5,
    });
    let obs = observed_for(&clamped);
    let last = refusal(&d, &obs);
    match plan(&d, Some(&obs), &last) {
        Plan::NotConverging(Stuck::Refused(m)) => {
            assert_eq!(m[0].field, "autoScaling");
            assert_eq!(m[0].remote, "minAgents 1, maxAgents 5");
        }
        other => panic!("expected NotConverging, got {other:?}"),
    }
    // The remote changed since: one more try.
    let mut other = spec.clone();
    other.auto_scaling = Some(AutoScaling {
        min_agents: 1,
        max_agents: 7,
    });
    assert!(matches!(
        plan(&d, Some(&observed_for(&other)), &last),
        Plan::Update { .. }
    ));
    // The spec changed since: one more try.
    let mut edited = spec.clone();
    edited.image = Some("your-dockername/voice-starter:0.3".into());
    let d2 = desired_from_spec("voice-starter", &edited);
    assert!(matches!(plan(&d2, Some(&obs), &last), Plan::Update { .. }));
}

#[test]
fn drift_corrections_are_bounded() {
    let spec = seed_spec();
    let d = desired_from_spec("voice-starter", &spec);
    let mut drifted = spec.clone();
    drifted.image = Some("someone/else:1".into());
    let mut last = applied(&d);
    last.drift_corrections = MAX_DRIFT_CORRECTIONS - 1;
    assert!(matches!(
        plan(&d, Some(&observed_for(&drifted)), &last),
        Plan::Update {
            reason: UpdateReason::Drift(_),
            ..
        }
    ));
    last.drift_corrections = MAX_DRIFT_CORRECTIONS;
    assert!(matches!(
        plan(&d, Some(&observed_for(&drifted)), &last),
        Plan::NotConverging(Stuck::DriftLoop(_))
    ));
}

#[test]
fn a_region_added_later_is_checked_against_the_known_region() {
    let mut spec = seed_spec();
    spec.region = Some("eu-central".into());
    let d = desired_from_spec("voice-starter", &spec);
    let mut obs = observed_for(&seed_spec());
    obs.region = None;
    let mut last = applied(&d);
    last.region = Some("us-west".into());
    assert_eq!(
        plan(&d, Some(&obs), &last),
        Plan::RegionMismatch {
            desired: "eu-central".into(),
            actual: "us-west".into()
        }
    );
}

#[test]
fn a_rewritten_docker_hub_image_is_the_same_image() {
    let spec = seed_spec();
    let d = desired_from_spec("voice-starter", &spec);
    let mut rewritten = spec.clone();
    rewritten.image = Some("docker.io/your-dockername/voice-starter:0.1".into());
    assert_eq!(
        plan(&d, Some(&observed_for(&rewritten)), &applied(&d)),
        Plan::Nothing
    );
}
