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
    /// Deprecated Krisp switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_krisp: Option<bool>,
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
    /// Roll a new deployment even when nothing changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_redeploy: bool,
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
    /// The revision being served.
    #[serde(default)]
    pub current_revision: Option<Revision>,
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
    /// Health of its instances.
    #[serde(default)]
    pub health: Option<RevisionHealth>,
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
    /// e.g. Running, CrashLoopBackOff, ImagePullBackOff, OOMKilled.
    #[serde(default)]
    pub state: Option<String>,
    /// Container restarts.
    #[serde(default)]
    pub restart_count: Option<i64>,
    /// Short reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// Longer message.
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
