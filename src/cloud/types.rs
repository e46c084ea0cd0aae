//! Wire types of the Pipecat Cloud management API (JSON, camelCase).
//!
//! Requests are strict (only what we mean to send); responses are lenient: every field beyond
//! the seed page is optional, and unknown fields are kept in `extra` so nothing is lost.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The configurable part of an agent, shared by create and update bodies.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    /// Container image (exactly one of `image` or `build_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pipecat Cloud build id (exactly one of `image` or `build_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Node type; only `arm` exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// Image-pull secret set name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret_set: Option<String>,
    /// Secret set name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_set: Option<String>,
    /// Pool bounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_scaling: Option<AutoScalingRequest>,
    /// Krisp VIVA settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub krisp_viva: Option<KrispVivaBody>,
    /// Instance size (`agent-1x`, `agent-2x`, `agent-3x`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_profile: Option<String>,
    /// Longest session in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_session_duration: Option<i64>,
}

/// `autoScaling` as sent in requests.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoScalingRequest {
    /// Instances kept warm.
    pub min_agents: i64,
    /// Most instances.
    pub max_agents: i64,
}

/// `krispViva` (the audio filter is sent as `null` when disabled).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KrispVivaBody {
    /// `tel`, `pro` or null.
    #[serde(default)]
    pub audio_filter: Option<String>,
}

/// Body of `POST /agents`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CreateAgentRequest {
    /// The agent name.
    pub service_name: String,
    /// Region (create only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The configuration.
    #[serde(flatten)]
    pub config: AgentConfig,
}

/// Body of `POST /agents/{agentName}`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAgentRequest {
    /// The configuration (always the whole desired body).
    #[serde(flatten)]
    pub config: AgentConfig,
    /// Fields returned to "unset": an omitted field keeps its remote value, so a field removed
    /// from the spec is sent with its detaching value (see [`Reset`]) or its documented default.
    #[serde(flatten)]
    pub resets: Resets,
    /// Roll a new deployment even when nothing changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_redeploy: bool,
}

/// Pipecat Cloud's documented defaults (`API.md`): what an agent has for a field nobody set.
pub mod defaults {
    /// Region of an agent created without one.
    pub const REGION: &str = "us-west";
    /// Instance size.
    pub const AGENT_PROFILE: &str = "agent-1x";
    /// Longest session, in seconds.
    pub const MAX_SESSION_DURATION: i64 = 7200;
    /// Instances kept warm ("defaults to 0 if unspecified"). `maxAgents` has no documented
    /// default, so a removed `autoScaling` returns only `minAgents` to its default.
    pub const MIN_AGENTS: i64 = 0;
}

/// An optional field returned to "unset" by an update: a secret set unbound (an empty name), or
/// a field sent with its documented default.
///
/// The contract types `secretSet` and `imagePullSecretSet` as non-nullable strings and documents
/// no way to detach a set, so `null` is never sent: an empty string is the one detaching value
/// the contract allows. A service that refuses it answers an error the controller reports as
/// `SecretSetRemovalRefused`; one that ignores it leaves the set in place, which the
/// convergence guard reports as `NotConverging`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reset {
    /// `secretSet: ""`.
    SecretSet,
    /// `imagePullSecretSet: ""`.
    ImagePullSecretSet,
    /// `autoScaling: {minAgents: 0}`.
    MinAgents,
    /// `krispViva: {audioFilter: null}`.
    KrispViva,
    /// `agentProfile: "agent-1x"`.
    AgentProfile,
    /// `maxSessionDuration: 7200`.
    MaxSessionDuration,
}

impl Reset {
    /// True for the secret set references (`secretSet`, `imagePullSecretSet`).
    pub fn detaches_a_set(self) -> bool {
        matches!(self, Reset::SecretSet | Reset::ImagePullSecretSet)
    }

    /// Every optional field, in body order.
    pub const ALL: [Reset; 6] = [
        Reset::ImagePullSecretSet,
        Reset::SecretSet,
        Reset::MinAgents,
        Reset::KrispViva,
        Reset::AgentProfile,
        Reset::MaxSessionDuration,
    ];

    /// The spec field it resets.
    pub fn field(self) -> &'static str {
        match self {
            Reset::SecretSet => "secretSet",
            Reset::ImagePullSecretSet => "imagePullSecretSet",
            Reset::MinAgents => "autoScaling",
            Reset::KrispViva => "krispViva",
            Reset::AgentProfile => "agentProfile",
            Reset::MaxSessionDuration => "maxSessionDuration",
        }
    }

    /// The value sent.
    pub fn value(self) -> Value {
        match self {
            Reset::SecretSet | Reset::ImagePullSecretSet => Value::String(String::new()),
            Reset::MinAgents => serde_json::json!({"minAgents": defaults::MIN_AGENTS}),
            Reset::KrispViva => serde_json::json!({"audioFilter": null}),
            Reset::AgentProfile => Value::String(defaults::AGENT_PROFILE.into()),
            Reset::MaxSessionDuration => Value::from(defaults::MAX_SESSION_DURATION),
        }
    }
}

/// The resets of one update (serialized as body fields).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resets(pub Vec<Reset>);

impl Serialize for Resets {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for r in &self.0 {
            map.serialize_entry(r.field(), &r.value())?;
        }
        map.end()
    }
}

/// An agent as returned by get, create and update.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// Agent name.
    #[serde(default)]
    pub name: String,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// The latest deployment passed validation.
    #[serde(default)]
    pub ready: Option<bool>,
    /// The agent can take sessions.
    #[serde(default)]
    pub available: Option<bool>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The deployment being rolled out.
    #[serde(default)]
    pub desired_deployment_id: Option<String>,
    /// Deprecated alias of the desired deployment.
    #[serde(default)]
    pub active_deployment_id: Option<String>,
    /// The deployment fully rolled out (null right after create).
    #[serde(default)]
    pub reconciled_deployment_id: Option<String>,
    /// Deprecated readiness of the active deployment.
    #[serde(default)]
    pub active_deployment_ready: Option<bool>,
    /// Pool bounds as applied.
    #[serde(default)]
    pub auto_scaling: Option<ObservedAutoScaling>,
    /// Sessions running now.
    #[serde(default)]
    pub active_session_count: Option<i64>,
    /// Instance size.
    #[serde(default)]
    pub agent_profile: Option<String>,
    /// Krisp VIVA settings.
    #[serde(default)]
    pub krisp_viva: Option<KrispVivaBody>,
    /// Longest session in seconds.
    #[serde(default)]
    pub max_session_duration: Option<i64>,
    /// The revision being served (or rolled out).
    #[serde(default)]
    pub current_revision: Option<Revision>,
    /// The revision before it (draining after a roll-out).
    #[serde(default)]
    pub previous_revision: Option<Revision>,
    /// Conditions (Available, Progressing, Degraded).
    #[serde(default)]
    pub conditions: Option<Vec<AgentCondition>>,
    /// Deployment errors: the deployment failed.
    #[serde(default)]
    pub errors: Option<Vec<DeploymentError>>,
    /// Set when an update changed nothing.
    #[serde(default)]
    pub warning: Option<String>,
    /// The current deployment and its manifest.
    #[serde(default)]
    pub deployment: Option<Deployment>,
    /// Fields this client does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `autoScaling` as reported.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObservedAutoScaling {
    /// Instances kept warm.
    #[serde(default)]
    pub min_replicas: Option<i64>,
    /// Most instances.
    #[serde(default)]
    pub max_replicas: Option<i64>,
    /// Other fields (concurrency, scaleToZeroTime, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A revision of the agent (one deployment being served).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// Deployment of the revision.
    #[serde(default, rename = "deploymentID")]
    pub deployment_id: Option<String>,
    /// Creating, Validating, Active, Draining or Failed.
    #[serde(default)]
    pub phase: Option<String>,
    /// Instances ready.
    #[serde(default)]
    pub ready_replicas: Option<i64>,
    /// Health of its instances.
    #[serde(default)]
    pub health: Option<RevisionHealth>,
    /// Pipecat Cloud's own infrastructure is at fault, not the agent.
    #[serde(default)]
    pub has_infrastructure_issue: Option<bool>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Health of a revision's instances.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionHealth {
    /// Instances ready.
    #[serde(default)]
    pub ready: Option<bool>,
    /// `running`, `waiting` or `terminated` (older answers: a reason such as
    /// `CrashLoopBackOff` here).
    #[serde(default)]
    pub state: Option<String>,
    /// Container restarts.
    #[serde(default)]
    pub restart_count: Option<i64>,
    /// Instances started.
    #[serde(default)]
    pub replicas_started: Option<i64>,
    /// Why the containers wait or ended: `CrashLoopBackOff`, `ImagePullBackOff`, ...
    #[serde(default)]
    pub reason: Option<String>,
    /// Exit code of the last terminated container.
    #[serde(default)]
    pub last_exit_code: Option<i64>,
    /// Why the last container ended: `Error`, `OOMKilled`, ...
    #[serde(default)]
    pub last_termination_reason: Option<String>,
    /// Longer message (often the agent's Python traceback).
    #[serde(default)]
    pub message: Option<String>,
    /// One-line summary for people.
    #[serde(default)]
    pub headline: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A condition of the agent (`Available`, `Progressing`, `Degraded`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentCondition {
    /// Condition type.
    #[serde(default, rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown" (a boolean is accepted too).
    #[serde(default, deserialize_with = "de_condition_status")]
    pub status: String,
    /// CamelCase reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// Message for people.
    #[serde(default)]
    pub message: Option<String>,
}

fn de_condition_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s,
        _ => "Unknown".into(),
    })
}

/// A deployment error (`PCC_IMAGE_PULL_UNAUTHORIZED`, ...).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentError {
    /// Error code.
    #[serde(default)]
    pub code: Option<String>,
    /// Message for people.
    #[serde(default)]
    pub message: Option<String>,
}

/// The deployment object with its manifest.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Deployment id.
    #[serde(default)]
    pub id: Option<String>,
    /// The PCService manifest.
    #[serde(default)]
    pub manifest: Option<Manifest>,
    /// Other fields (serviceId, createdAt, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `PCService` manifest.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The service spec.
    #[serde(default)]
    pub spec: Option<ManifestSpec>,
    /// Other fields (apiVersion, kind, metadata).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The spec of a `PCService` manifest: what is actually deployed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSpec {
    /// Node type.
    #[serde(default)]
    pub daily_node_type: Option<String>,
    /// Image.
    #[serde(default)]
    pub image: Option<String>,
    /// Pool bounds.
    #[serde(default)]
    pub auto_scaling: Option<ObservedAutoScaling>,
    /// Image-pull secret.
    #[serde(default)]
    pub image_pull_secret_name: Option<String>,
    /// Secret sets exposed as environment.
    #[serde(default)]
    pub env_from_secret_names: Option<Vec<String>>,
    /// Krisp models.
    #[serde(default)]
    pub krisp_models: Option<KrispModels>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `krispModels` of a manifest.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KrispModels {
    /// Krisp on or off.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// One entry of `GET /agents`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentSummary {
    /// Agent name.
    #[serde(default)]
    pub name: String,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// The deployment being rolled out.
    #[serde(default)]
    pub desired_deployment_id: Option<String>,
    /// Deprecated alias.
    #[serde(default)]
    pub active_deployment_id: Option<String>,
    /// The deployment rolled out.
    #[serde(default)]
    pub reconciled_deployment_id: Option<String>,
    /// Last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `GET /agents`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct AgentList {
    /// The agents.
    #[serde(default)]
    pub services: Vec<AgentSummary>,
}

/// One entry of `GET /regions`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// Region code, as `region` takes it (`us-west`).
    pub code: String,
    /// Name for people.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Body of `GET /regions`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionList {
    /// The regions.
    #[serde(default)]
    pub regions: Vec<Region>,
}

/// The API's error body.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct ErrorBody {
    /// Message.
    #[serde(default)]
    pub error: Option<String>,
    /// Code (a word or a numeric string).
    #[serde(default, deserialize_with = "de_code")]
    pub code: Option<String>,
}

fn de_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

impl Agent {
    /// The deployment the latest configuration produced (falls back to the deprecated alias).
    pub fn desired_deployment(&self) -> Option<&str> {
        self.desired_deployment_id
            .as_deref()
            .or(self.active_deployment_id.as_deref())
            .or_else(|| self.deployment.as_ref().and_then(|d| d.id.as_deref()))
    }

    /// The deployed manifest spec, when the response carries one.
    pub fn manifest_spec(&self) -> Option<&ManifestSpec> {
        self.deployment.as_ref()?.manifest.as_ref()?.spec.as_ref()
    }

    /// The condition of the given type.
    pub fn condition(&self, type_: &str) -> Option<&AgentCondition> {
        self.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
    }
}
