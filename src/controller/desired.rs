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
    let omitted = Reset::ALL
        .into_iter()
        .filter(|r| match r {
            Reset::SecretSet => config.secret_set.is_none(),
            Reset::ImagePullSecretSet => config.image_pull_secret_set.is_none(),
            Reset::MinAgents => config.auto_scaling.is_none(),
            Reset::EnableKrisp => config.enable_krisp.is_none(),
            Reset::KrispViva => config.krisp_viva.is_none(),
            Reset::AgentProfile => config.agent_profile.is_none(),
            Reset::MaxSessionDuration => config.max_session_duration.is_none(),
        })
        .collect();
    let hash = fingerprint(&config);
    Desired {
        name: name.to_string(),
        region: spec.region.clone(),
        config,
        omitted,
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

/// A stable fingerprint of a configuration: 64-bit FNV-1a over the length of its canonical JSON
/// (8 bytes, little-endian) followed by the JSON itself, as 16 hex digits.
///
/// The exact bytes are part of the upgrade contract: 0.1 stored these digests in every
/// resource's status, and a different digest makes an unchanged resource look changed.
pub fn fingerprint(config: &AgentConfig) -> String {
    let json = serde_json::to_vec(config).expect("AgentConfig always serializes");
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
        assert_eq!(
            desired_from_spec("voice-starter", &seed).hash,
            "bf489b58cf742f40"
        );
        let bare = spec(serde_json::json!({"image": "acme/bot:1"}));
        assert_eq!(desired_from_spec("x", &bare).hash, "33363942e376bd90");
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
                "enableKrisp": true,
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
