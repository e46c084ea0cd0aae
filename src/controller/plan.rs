//! Planning: desired spec + observed remote agent + what was last applied -> what to do.
//!
//! Everything here is a pure function over plain values, so the decisions are unit-tested
//! without a server. Every update can roll a new deployment, so an unchanged resource must
//! plan [`Action::Nothing`].

use std::hash::{Hash, Hasher};

use crate::cloud::types::{
    Agent, AgentConfig, AutoScalingRequest, CreateAgentRequest, KrispVivaBody, UpdateAgentRequest,
};
use crate::crd::{AgentProfile, AudioFilter, NodeType, PipecatAgent, PipecatAgentSpec};

/// The remote agent the spec asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Remote agent name.
    pub name: String,
    /// Region, when the spec sets one.
    pub region: Option<String>,
    /// The body sent on create and update.
    pub config: AgentConfig,
    /// The redeploy trigger.
    pub redeploy_token: Option<String>,
    /// Fingerprint of `config` (stable across runs and versions of this binary).
    pub hash: String,
}

/// What was last applied successfully (from the resource's status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastApplied {
    /// Fingerprint of the configuration last sent.
    pub config_hash: Option<String>,
    /// Redeploy token last sent (or recorded at creation).
    pub redeploy_token: Option<String>,
}

/// Why an update is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateReason {
    /// The spec changed since the last apply and the remote agent differs in these fields.
    SpecChanged(Vec<&'static str>),
    /// The spec is unchanged but the remote agent differs in these fields (changed elsewhere).
    Drift(Vec<&'static str>),
    /// The spec changed in fields the API does not report back, so it cannot be compared.
    Unobservable(Vec<&'static str>),
    /// `redeployToken` changed.
    Redeploy,
}

impl UpdateReason {
    /// A short sentence for logs and events.
    pub fn describe(&self) -> String {
        match self {
            UpdateReason::SpecChanged(f) => format!("spec changed ({})", f.join(", ")),
            UpdateReason::Drift(f) => format!(
                "agent was changed outside Kubernetes ({}); restoring the spec",
                f.join(", ")
            ),
            UpdateReason::Unobservable(f) => format!("spec changed ({})", f.join(", ")),
            UpdateReason::Redeploy => "redeployToken changed: forcing a new deployment".into(),
        }
    }
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The agent does not exist: create it.
    Create(CreateAgentRequest),
    /// The agent differs from the spec (or a redeploy was asked for): send the whole body.
    Update {
        /// The body.
        request: UpdateAgentRequest,
        /// Why.
        reason: UpdateReason,
    },
    /// The agent already matches the spec. `record` is true when the status should remember the
    /// current fingerprint (the spec changed but the agent already had that configuration).
    Nothing {
        /// Record the fingerprint and token as applied.
        record: bool,
    },
    /// The agent exists in another region than the spec asks: an update cannot fix it.
    RegionMismatch {
        /// The spec's region.
        desired: String,
        /// The agent's region.
        actual: String,
    },
}

/// Builds the desired remote agent from a resource.
pub fn desired(agent: &PipecatAgent) -> Desired {
    desired_from_spec(agent.agent_name(), &agent.spec)
}

/// Builds the desired remote agent from a name and a spec.
pub fn desired_from_spec(name: &str, spec: &PipecatAgentSpec) -> Desired {
    let config = AgentConfig {
        image: spec.image.clone(),
        build_id: spec.build_id.clone(),
        node_type: Some(
            match spec.node_type {
                NodeType::Arm => "arm",
            }
            .to_string(),
        ),
        image_pull_secret_set: spec.image_pull_secret_set.clone(),
        secret_set: spec.secret_set.clone(),
        auto_scaling: spec.auto_scaling.as_ref().map(|a| AutoScalingRequest {
            min_agents: a.min_agents.into(),
            max_agents: a.max_agents.into(),
        }),
        enable_krisp: spec.enable_krisp,
        krisp_viva: spec.krisp_viva.as_ref().map(|k| KrispVivaBody {
            audio_filter: k.audio_filter.map(|f| audio_filter_str(f).to_string()),
        }),
        agent_profile: spec.agent_profile.map(|p| agent_profile_str(p).to_string()),
        max_session_duration: spec.max_session_duration.map(i64::from),
    };
    let hash = fingerprint(&config);
    Desired {
        name: name.to_string(),
        region: spec.region.clone(),
        config,
        redeploy_token: spec.redeploy_token.clone(),
        hash,
    }
}

fn audio_filter_str(f: AudioFilter) -> &'static str {
    match f {
        AudioFilter::Tel => "tel",
        AudioFilter::Pro => "pro",
    }
}

fn agent_profile_str(p: AgentProfile) -> &'static str {
    match p {
        AgentProfile::Agent1x => "agent-1x",
        AgentProfile::Agent2x => "agent-2x",
        AgentProfile::Agent3x => "agent-3x",
    }
}

/// A stable fingerprint of a configuration: FNV-1a over its canonical JSON.
pub fn fingerprint(config: &AgentConfig) -> String {
    let json = serde_json::to_vec(config).expect("AgentConfig always serializes");
    let mut h = Fnv1a::default();
    json.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[derive(Default)]
struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if self.0 == 0 {
            self.0 = 0xcbf2_9ce4_8422_2325;
        }
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Field-by-field comparison of the desired configuration with what the agent reports.
/// Returns (fields that differ, fields that cannot be compared because the response lacks them).
pub fn compare(desired: &AgentConfig, observed: &Agent) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut differ = Vec::new();
    let mut unknown = Vec::new();
    let spec = observed.manifest_spec();
    let mut check = |field: &'static str, same: Option<bool>| match same {
        Some(true) => {}
        Some(false) => differ.push(field),
        None => unknown.push(field),
    };

    if let Some(image) = &desired.image {
        check(
            "image",
            spec.and_then(|s| s.image.as_ref()).map(|i| i == image),
        );
    }
    if desired.build_id.is_some() {
        // The response reports the build's image, not the build id.
        check("buildId", None);
    }
    if let Some(a) = &desired.auto_scaling {
        let observed_bounds = observed
            .auto_scaling
            .as_ref()
            .or_else(|| spec.and_then(|s| s.auto_scaling.as_ref()))
            .and_then(|o| Some((o.min_replicas?, o.max_replicas?)));
        check(
            "autoScaling",
            observed_bounds.map(|b| b == (a.min_agents, a.max_agents)),
        );
    }
    // Secret sets: an absent list in a present manifest means "none".
    match spec {
        Some(s) => {
            let names = s.env_from_secret_names.as_deref().unwrap_or_default();
            check(
                "secretSet",
                Some(match &desired.secret_set {
                    Some(set) => names.iter().any(|n| n == set),
                    None => names.is_empty(),
                }),
            );
        }
        None if desired.secret_set.is_some() => check("secretSet", None),
        None => {}
    }
    if let Some(pull) = &desired.image_pull_secret_set {
        check(
            "imagePullSecretSet",
            spec.and_then(|s| s.image_pull_secret_name.as_ref())
                .map(|n| n == pull),
        );
    }
    if let Some(krisp) = desired.enable_krisp {
        check(
            "enableKrisp",
            spec.and_then(|s| s.krisp_models.as_ref())
                .and_then(|k| k.enabled)
                .map(|e| e == krisp),
        );
    }
    if let Some(profile) = &desired.agent_profile {
        check(
            "agentProfile",
            observed.agent_profile.as_ref().map(|p| p == profile),
        );
    }
    if let Some(viva) = &desired.krisp_viva {
        check(
            "krispViva",
            observed
                .krisp_viva
                .as_ref()
                .map(|o| o.audio_filter == viva.audio_filter),
        );
    }
    if let Some(max) = desired.max_session_duration {
        check(
            "maxSessionDuration",
            observed.max_session_duration.map(|m| m == max),
        );
    }
    (differ, unknown)
}

/// Decides what to do.
pub fn plan(desired: &Desired, observed: Option<&Agent>, last: &LastApplied) -> Action {
    let Some(observed) = observed else {
        return Action::Create(CreateAgentRequest {
            service_name: desired.name.clone(),
            region: desired.region.clone(),
            config: desired.config.clone(),
        });
    };
    if let (Some(want), Some(have)) = (&desired.region, &observed.region)
        && want != have
    {
        return Action::RegionMismatch {
            desired: want.clone(),
            actual: have.clone(),
        };
    }
    let update = |reason| Action::Update {
        request: UpdateAgentRequest {
            config: desired.config.clone(),
            force_redeploy: matches!(reason, UpdateReason::Redeploy),
        },
        reason,
    };
    let spec_changed = last.config_hash.as_deref() != Some(desired.hash.as_str());
    let (differ, unknown) = compare(&desired.config, observed);
    if !differ.is_empty() {
        return update(if spec_changed {
            UpdateReason::SpecChanged(differ)
        } else {
            UpdateReason::Drift(differ)
        });
    }
    if spec_changed && last.config_hash.is_some() && !unknown.is_empty() {
        return update(UpdateReason::Unobservable(unknown));
    }
    // The first apply (creation or adoption) records the token without forcing a redeploy.
    if last.config_hash.is_some() && desired.redeploy_token != last.redeploy_token {
        return update(UpdateReason::Redeploy);
    }
    Action::Nothing {
        record: spec_changed || desired.redeploy_token != last.redeploy_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::types::{
        Deployment, KrispModels, Manifest, ManifestSpec, ObservedAutoScaling,
    };
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
                            enabled: spec.enable_krisp,
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
        }
    }

    #[test]
    fn missing_agent_is_created_with_the_full_body() {
        let d = desired_from_spec("voice-starter", &seed_spec());
        match plan(&d, None, &LastApplied::default()) {
            Action::Create(req) => {
                let body = serde_json::to_value(&req).unwrap();
                assert_eq!(body["serviceName"], "voice-starter");
                assert_eq!(body["image"], "your-dockername/voice-starter:0.1");
                assert_eq!(body["nodeType"], "arm");
                assert_eq!(body["imagePullSecretSet"], "dockerhub-credentials");
                assert_eq!(body["secretSet"], "voice-starter-secrets");
                assert_eq!(body["autoScaling"]["minAgents"], 1);
                assert_eq!(body["autoScaling"]["maxAgents"], 10);
                assert_eq!(body["enableKrisp"], false);
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
        assert_eq!(
            plan(&d, Some(&obs), &applied(&d)),
            Action::Nothing { record: false }
        );
    }

    #[test]
    fn adopted_agent_that_already_matches_is_recorded_not_updated() {
        let spec = seed_spec();
        let d = desired_from_spec("voice-starter", &spec);
        let obs = observed_for(&spec);
        assert_eq!(
            plan(&d, Some(&obs), &LastApplied::default()),
            Action::Nothing { record: true }
        );
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
            Action::Update { request, reason } => {
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
            Action::Update { reason, .. } => {
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
            Action::Update { request, reason } => {
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
            Action::Update { request, reason } => {
                assert_eq!(reason, UpdateReason::Redeploy);
                assert!(request.force_redeploy);
                let body = serde_json::to_value(&request).unwrap();
                assert_eq!(body["forceRedeploy"], true);
            }
            other => panic!("expected redeploy, got {other:?}"),
        }
        // Once applied, the same token plans nothing.
        assert_eq!(
            plan(&d2, Some(&obs), &applied(&d2)),
            Action::Nothing { record: false }
        );
    }

    #[test]
    fn token_present_at_creation_does_not_redeploy() {
        let mut spec = seed_spec();
        spec.redeploy_token = Some("initial".into());
        let d = desired_from_spec("voice-starter", &spec);
        let obs = observed_for(&spec);
        assert_eq!(
            plan(&d, Some(&obs), &LastApplied::default()),
            Action::Nothing { record: true }
        );
    }

    #[test]
    fn unobservable_change_is_sent() {
        let old = seed_spec();
        let mut new = old.clone();
        new.max_session_duration = Some(3600);
        let d_old = desired_from_spec("voice-starter", &old);
        let d_new = desired_from_spec("voice-starter", &new);
        match plan(&d_new, Some(&observed_for(&old)), &applied(&d_old)) {
            Action::Update { reason, .. } => {
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
            Action::Nothing { record: false }
        );
    }

    #[test]
    fn region_change_cannot_be_planned_as_update() {
        let mut spec = seed_spec();
        spec.region = Some("eu-central".into());
        let d = desired_from_spec("voice-starter", &spec);
        let obs = observed_for(&seed_spec());
        assert_eq!(
            plan(&d, Some(&obs), &applied(&d)),
            Action::RegionMismatch {
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
        assert_eq!(
            plan(&d, Some(&bare), &applied(&d)),
            Action::Nothing { record: false }
        );
    }

    #[test]
    fn fingerprint_is_stable() {
        let d = desired_from_spec("voice-starter", &seed_spec());
        // Pinned: a change here would make every resource send one update after an upgrade.
        assert_eq!(d.hash, "bf489b58cf742f40");
        assert_eq!(d.hash, fingerprint(&d.config));
    }
}
