//! The JSON bodies the emulated API answers with: their shapes here, field for field (camelCase,
//! in the order of the documented seed response), and how they are built from the state in
//! `agent` and `secret_set`. They belong to the emulator: the operator's client has its own
//! types, so a drift between the two shows up in tests.

mod agent;
mod secret_set;

use serde::Serialize;

pub(super) use agent::{agent_summary_view, agent_view};
pub(super) use secret_set::{secret_set_detail_view, secret_set_view};

/// `GET /agents/{name}`, create and update responses.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    pub name: String,
    pub ready: bool,
    pub created_at: String,
    pub updated_at: String,
    pub active_deployment_id: String,
    pub active_deployment_ready: bool,
    pub auto_scaling: AutoScalingView,
    pub active_session_count: u32,
    pub deployment: Option<DeploymentView>,
    pub region: String,
    pub available: bool,
    pub desired_deployment_id: String,
    /// Left out until a deployment is reconciled (the contract types it `string`, not
    /// nullable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciled_deployment_id: Option<String>,
    pub agent_profile: String,
    pub krisp_viva: KrispVivaView,
    pub max_session_duration: u32,
    pub conditions: Vec<ConditionView>,
    pub current_revision: Option<RevisionView>,
    pub previous_revision: Option<RevisionView>,
    pub errors: Vec<ErrorView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `autoScaling` of an agent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScalingView {
    pub concurrency: u32,
    pub max_replicas: u32,
    pub min_replicas: u32,
    pub scale_to_zero_time: &'static str,
}

/// `krispViva`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KrispVivaView {
    pub audio_filter: Option<String>,
}

/// `deployment`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    pub id: String,
    pub manifest: ManifestView,
    pub service_id: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `deployment.manifest`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestView {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: MetadataView,
    pub spec: SpecView,
}

/// `deployment.manifest.metadata`.
#[derive(Debug, Clone, Serialize)]
pub struct MetadataView {
    pub name: String,
    pub namespace: String,
}

/// `deployment.manifest.spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView {
    pub daily_node_type: String,
    pub cluster_local: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    pub auto_scaling: SpecScalingView,
    pub env_from_secret_names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret_name: Option<String>,
    pub krisp_models: KrispModelsView,
    pub krisp_viva: ManifestKrispVivaView,
    pub agent_profile: String,
    pub max_session_duration_seconds: u32,
}

/// `deployment.manifest.spec.krispViva`: whether an audio filter runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestKrispVivaView {
    pub audio_filters: bool,
}

/// `deployment.manifest.spec.autoScaling`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecScalingView {
    pub concurrency: u32,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

/// `krispModels`: always disabled (`enableKrisp` left the API; the contract's example still
/// shows the field).
#[derive(Debug, Clone, Serialize)]
pub struct KrispModelsView {
    pub enabled: bool,
}

/// An entry of `conditions`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// `currentRevision` / `previousRevision`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionView {
    #[serde(rename = "deploymentID")]
    pub deployment_id: String,
    pub phase: &'static str,
    pub ready_replicas: u32,
    pub phase_started_at: String,
    pub health: HealthView,
    pub has_infrastructure_issue: bool,
}

/// A revision's `health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    pub ready: bool,
    /// `running`, `waiting` or `terminated` (the contract's enum); the Kubernetes-like reason
    /// (`CrashLoopBackOff`, ...) is in `reason`.
    pub state: &'static str,
    pub restart_count: u32,
    pub replicas_started: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_termination_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub headline: String,
}

/// An entry of `errors`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    pub code: &'static str,
    pub message: String,
}

/// `GET /agents`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentListView {
    pub services: Vec<AgentSummaryView>,
}

/// An entry of `GET /agents`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSummaryView {
    pub id: String,
    pub name: String,
    pub region: String,
    pub desired_deployment_id: String,
    pub active_deployment_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciled_deployment_id: Option<String>,
    pub organization_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentView>,
}

/// A secret set in `GET /secrets`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSetView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub region: String,
    pub status: &'static str,
    /// Only when the set failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// The 202 of `PUT /secrets/{set}`: the change is accepted; the set's state is read with
/// `GET /secrets` or `GET /secrets/{set}`.
#[derive(Debug, Clone, Serialize)]
pub struct SecretSetAcceptedView {
    pub status: &'static str,
    pub region: String,
}

/// `GET /secrets`.
#[derive(Debug, Clone, Serialize)]
pub struct SecretSetListView {
    pub sets: Vec<SecretSetView>,
}

/// `GET /secrets/{set}`: field names only, never values.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSetDetailView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub region: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub secrets: Vec<FieldNameView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// `GET /secrets/{set}` in the seed profile: the field names only.
#[derive(Debug, Clone, Serialize)]
pub struct SecretSetKeysView {
    pub secrets: Vec<FieldNameView>,
}

/// One field name of a secret set.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldNameView {
    pub field_name: String,
}

/// `GET /regions`.
#[derive(Debug, Clone, Serialize)]
pub struct RegionListView<'a> {
    pub regions: &'a [super::regions::Region],
}

/// `POST /public/{name}/start`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_room: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_token: Option<String>,
}
