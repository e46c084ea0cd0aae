//! The desired remote agent: what a `PipecatAgent`'s spec asks Pipecat Cloud for, its stable
//! fingerprint, and which optional fields the spec leaves out (and so asks to be cleared or
//! returned to Pipecat Cloud's default).

use crate::cloud::types::{AgentConfig, AutoScalingRequest, KrispVivaBody, Reset};
use crate::crd::{AgentProfile, AudioFilter, NodeType, PipecatAgent, PipecatAgentSpec};

/// The remote agent the spec asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Remote agent name.
    pub name: String,
    /// Region, when the spec sets one.
    pub region: Option<String>,
    /// The fields the spec sets: the body sent on create, and fingerprinted.
    pub config: AgentConfig,
    /// The optional fields the spec leaves out: an update clears them or sends their default.
    pub omitted: Vec<Reset>,
    /// The redeploy trigger.
    pub redeploy_token: Option<String>,
    /// Fingerprint of `config` (stable across runs and versions of this binary).
    pub hash: String,
    /// The fingerprints versions up to 0.2 recorded for this configuration with
    /// `enableKrisp: true` and `false`: theirs covered `enableKrisp`, which is no longer sent,
    /// so whatever its value then or now, an applied fingerprint equal to one of them means
    /// this configuration was applied (an upgrade sends nothing, and neither does an edit of
    /// `enableKrisp` alone).
    pub legacy_hashes: [String; 2],
}

impl Desired {
    /// True when `applied` (a status's `appliedConfigHash`) is this spec's fingerprint, or the
    /// one an earlier version recorded for it.
    pub fn is_applied(&self, applied: Option<&str>) -> bool {
        applied.is_some_and(|h| h == self.hash || self.legacy_hashes.iter().any(|l| l == h))
    }
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
        krisp_viva: spec.krisp_viva.as_ref().map(|k| KrispVivaBody {
            audio_filter: k.audio_filter.map(|f| audio_filter_str(f).to_string()),
        }),
        agent_profile: spec.agent_profile.map(|p| agent_profile_str(p).to_string()),
        max_session_duration: spec.max_session_duration.map(i64::from),
    };
    let omitted = Reset::ALL
        .into_iter()
        .filter(|r| match r {
            Reset::SecretSet => config.secret_set.is_none(),
            Reset::ImagePullSecretSet => config.image_pull_secret_set.is_none(),
            Reset::MinAgents => config.auto_scaling.is_none(),
            Reset::KrispViva => config.krisp_viva.is_none(),
            Reset::AgentProfile => config.agent_profile.is_none(),
            Reset::MaxSessionDuration => config.max_session_duration.is_none(),
        })
        .collect();
    let hash = fingerprint(&config);
    let legacy_hashes = [
        legacy_fingerprint(&config, true),
        legacy_fingerprint(&config, false),
    ];
    Desired {
        name: name.to_string(),
        region: spec.region.clone(),
        config,
        omitted,
        redeploy_token: spec.redeploy_token.clone(),
        hash,
        legacy_hashes,
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

/// A stable fingerprint of a configuration: 64-bit FNV-1a over the length of its canonical JSON
/// (8 bytes, little-endian) followed by the JSON itself, as 16 hex digits.
///
/// The exact bytes are part of the upgrade contract: 0.1 stored these digests in every
/// resource's status, and a different digest makes an unchanged resource look changed.
pub fn fingerprint(config: &AgentConfig) -> String {
    fnv1a(&serde_json::to_vec(config).expect("AgentConfig always serializes"))
}

/// The fingerprint versions up to 0.2 recorded for a spec that sets `enableKrisp`: the same
/// canonical JSON with `enableKrisp` between `autoScaling` and `krispViva`, where their
/// `AgentConfig` carried it.
fn legacy_fingerprint(config: &AgentConfig, enable_krisp: bool) -> String {
    use crate::cloud::types::{AutoScalingRequest, KrispVivaBody};
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Legacy<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        image: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        build_id: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        node_type: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        image_pull_secret_set: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret_set: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        auto_scaling: &'a Option<AutoScalingRequest>,
        enable_krisp: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        krisp_viva: &'a Option<KrispVivaBody>,
        #[serde(skip_serializing_if = "Option::is_none")]
        agent_profile: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_session_duration: &'a Option<i64>,
    }
    let legacy = Legacy {
        image: &config.image,
        build_id: &config.build_id,
        node_type: &config.node_type,
        image_pull_secret_set: &config.image_pull_secret_set,
        secret_set: &config.secret_set,
        auto_scaling: &config.auto_scaling,
        enable_krisp,
        krisp_viva: &config.krisp_viva,
        agent_profile: &config.agent_profile,
        max_session_duration: &config.max_session_duration,
    };
    fnv1a(&serde_json::to_vec(&legacy).expect("the legacy view always serializes"))
}

/// 64-bit FNV-1a over the length (8 bytes, little-endian) and the bytes, as 16 hex digits.
fn fnv1a(json: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let len = (json.len() as u64).to_le_bytes();
    for b in len.iter().chain(json.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> PipecatAgentSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn fingerprints_are_pinned_to_what_0_1_stored() {
        // Digests written by 0.1 (tests/fixtures/v0.1 holds real ones): if these change, every
        // existing resource would send an update after an upgrade.
        let seed = spec(serde_json::json!({
            "image": "your-dockername/voice-starter:0.1",
            "nodeType": "arm",
            "imagePullSecretSet": "dockerhub-credentials",
            "secretSet": "voice-starter-secrets",
            "autoScaling": {"minAgents": 1, "maxAgents": 10},
            "enableKrisp": false
        }));
        let seeded = desired_from_spec("voice-starter", &seed);
        assert_eq!(seeded.legacy_hashes[1], "bf489b58cf742f40");
        assert!(seeded.is_applied(Some("bf489b58cf742f40")));
        let bare = spec(serde_json::json!({"image": "acme/bot:1"}));
        assert_eq!(desired_from_spec("x", &bare).hash, "33363942e376bd90");
    }

    #[test]
    fn enable_krisp_is_not_configuration() {
        // Pipecat Cloud removed `enableKrisp`: it is never sent, so it changes neither the body
        // nor the fingerprint, whatever its value.
        let with = |v: serde_json::Value| {
            let mut s = serde_json::json!({"image": "acme/bot:1", "secretSet": "env"});
            if !v.is_null() {
                s["enableKrisp"] = v;
            }
            desired_from_spec("x", &spec(s))
        };
        let (none, on, off) = (
            with(serde_json::Value::Null),
            with(true.into()),
            with(false.into()),
        );
        assert_eq!(none.config, on.config);
        assert_eq!(none.hash, on.hash);
        assert_eq!(none.hash, off.hash);
        let body = serde_json::to_value(&on.config).unwrap();
        assert!(body.get("enableKrisp").is_none(), "{body}");
        // What 0.1 and 0.2 recorded, with either value, reads as applied whatever the spec
        // says of enableKrisp now; another configuration's never does.
        assert_eq!(none.legacy_hashes, on.legacy_hashes);
        assert_ne!(on.legacy_hashes[0], on.legacy_hashes[1]);
        for d in [&none, &on, &off] {
            for l in &on.legacy_hashes {
                assert!(d.is_applied(Some(l)));
            }
        }
        let other = desired_from_spec(
            "x",
            &spec(
                serde_json::json!({"image": "acme/bot:2", "secretSet": "env", "enableKrisp": true}),
            ),
        );
        assert!(!other.is_applied(Some(&on.legacy_hashes[0])));
        assert!(!other.is_applied(Some(&on.hash)));
    }

    #[test]
    fn omitted_fields_are_listed_and_set_ones_are_not() {
        let bare = desired_from_spec("x", &spec(serde_json::json!({"image": "acme/bot:1"})));
        assert_eq!(bare.omitted, Reset::ALL.to_vec());
        let full = desired_from_spec(
            "x",
            &spec(serde_json::json!({
                "image": "acme/bot:1",
                "imagePullSecretSet": "pull",
                "secretSet": "env",
                "autoScaling": {"minAgents": 0, "maxAgents": 2},
                "krispViva": {"audioFilter": "tel"},
                "agentProfile": "agent-2x",
                "maxSessionDuration": 600
            })),
        );
        assert!(full.omitted.is_empty(), "{:?}", full.omitted);
        let some = desired_from_spec(
            "x",
            &spec(serde_json::json!({"image": "acme/bot:1", "secretSet": "env"})),
        );
        assert!(!some.omitted.contains(&Reset::SecretSet));
        assert!(some.omitted.contains(&Reset::ImagePullSecretSet));
    }
}
