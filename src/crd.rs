//! The `PipecatAgent` custom resource.
//!
//! The spec mirrors the Pipecat Cloud agent body (camelCase as on the wire) plus the few fields
//! the operator itself needs (which agent, which API key, what happens on delete, how to force a
//! redeploy). The doc comments on the fields below are user documentation: they become the
//! `kubectl explain pipecatagent.spec` text.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod secret_set;
pub mod warnings;

/// API group of the custom resource.
pub const GROUP: &str = "pipecat.daily.co";
/// Finalizer that keeps a `PipecatAgent` until its remote agent is deleted (or orphaned).
pub const FINALIZER: &str = "pipecat.daily.co/cleanup";
/// Annotation the operator sets on a `PipecatAgent` (in the same write as its finalizer) right
/// before it creates the remote agent, naming that agent: after a crash between the create
/// call and the status write, it recognises the agent as its own creation, not someone
/// else's.
pub const CREATE_MARKER: &str = "pipecat.daily.co/creating";
/// Finalizer the operator puts on a credentials Secret while a `PipecatAgent` with
/// `deletionPolicy: Delete` uses it: the key must outlive the agents it deletes (for example
/// when their namespace is deleted, Secret and all).
pub const CREDENTIALS_FINALIZER: &str = "pipecat.daily.co/credentials-in-use";
/// Label key of the scale subresource's selector (`status.selector`): the agent name.
pub const AGENT_LABEL: &str = "pipecat.daily.co/agent";
/// Regular expression every Pipecat Cloud agent name must match.
pub const AGENT_NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])$";
/// Longest agent name Pipecat Cloud accepts.
pub const AGENT_NAME_MAX_LEN: usize = 54;

/// The desired Pipecat Cloud agent: its configuration (the Pipecat Cloud agent body) and how
/// the operator manages it. The operator creates the agent with exactly this configuration and
/// keeps it that way: changes made elsewhere (dashboard, CLI) are reverted.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pipecat.daily.co",
    version = "v1alpha1",
    kind = "PipecatAgent",
    plural = "pipecatagents",
    singular = "pipecatagent",
    shortname = "pca",
    category = "pipecat",
    namespaced,
    cel,
    status = "PipecatAgentStatus",
    scale(
        spec_replicas_path = ".spec.autoScaling.minAgents",
        status_replicas_path = ".status.autoScaling.minReplicas",
        label_selector_path = ".status.selector"
    ),
    doc = "A Pipecat Cloud voice agent managed from Kubernetes: the spec is the agent's configuration, the status its live state.",
    printcolumn(name = "Agent", type_ = "string", json_path = ".status.agentName", priority = 1),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Sessions", type_ = "integer", json_path = ".status.activeSessionCount"),
    printcolumn(name = "Deployment", type_ = "string", json_path = ".status.activeDeploymentId"),
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(
        "has(self.spec.agentName) || (size(self.metadata.name) <= 54 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])$'))"
    ).message("metadata.name is not a valid Pipecat agent name (2 to 54 lowercase letters, digits or '-', starting and ending with a letter or digit): set spec.agentName to a valid name"),
    validation = Rule::new(
        "(has(self.spec.agentName) ? self.spec.agentName : self.metadata.name) == (has(oldSelf.spec.agentName) ? oldSelf.spec.agentName : oldSelf.metadata.name)"
    ).message("spec.agentName is immutable: it names the remote agent; create a new PipecatAgent to use another name"),
)]
#[x_kube(
    validation = Rule::new("has(self.image) != has(self.buildId)").message("exactly one of spec.image or spec.buildId must be set"),
    validation = Rule::new("!has(oldSelf.region) || (has(self.region) && self.region == oldSelf.region)").message("spec.region is immutable once set: Pipecat Cloud cannot move an agent to another region"),
)]
#[serde(rename_all = "camelCase")]
pub struct PipecatAgentSpec {
    /// Name of the agent in Pipecat Cloud. Defaults to `metadata.name`. Lowercase letters, digits
    /// and '-', 2 to 54 characters, starting and ending with a letter or digit. Cannot be changed
    /// after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 2, max = 54),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])$")
    )]
    pub agent_name: Option<String>,

    /// Container image of the agent, e.g. `your-dockername/voice-starter:0.1`. Images must be
    /// built for linux/arm64. Exactly one of `image` or `buildId` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,

    /// ID (a UUID) of a Pipecat Cloud build to deploy instead of an image. The build must be in
    /// the agent's region. Exactly one of `image` or `buildId` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub build_id: Option<String>,

    /// Type of node the agent runs on. Only `arm` exists today.
    #[serde(default)]
    pub node_type: NodeType,

    /// Name of the Pipecat Cloud image-pull secret set used to pull a private `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub image_pull_secret_set: Option<String>,

    /// Name of the Pipecat Cloud secret set whose values become the agent's environment
    /// variables. It must exist in the agent's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub secret_set: Option<String>,

    /// How many agent instances Pipecat Cloud keeps warm and the most it may run. Each instance
    /// takes one session at a time. When omitted, Pipecat Cloud's defaults apply.
    ///
    /// The `scale` subresource (`kubectl scale`, a HorizontalPodAutoscaler, KEDA) sets
    /// `minAgents`, the warm pool; `maxAgents` stays as written. A scale above `maxAgents` is
    /// rejected (`minAgents must not be greater than maxAgents`), never clamped. Without
    /// `autoScaling` there is no scale to read (`.spec.autoScaling.minAgents` does not exist)
    /// and a scale is rejected (`spec.autoScaling.maxAgents: Required value`): set both bounds
    /// first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling: Option<AutoScaling>,

    /// Ignored: Pipecat Cloud removed `enableKrisp` from its API on 2026-04-15, and the operator
    /// never sends it. Use `krispViva.audioFilter` (`tel` or `pro`) for Krisp noise
    /// cancellation. Still accepted so that existing manifests apply; `kubectl apply` warns and
    /// the resource gets one `EnableKrispIgnored` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_krisp: Option<bool>,

    /// Krisp VIVA audio filter settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krisp_viva: Option<KrispViva>,

    /// Size of each agent instance: `agent-1x` (0.5 vCPU, the Pipecat Cloud default),
    /// `agent-2x` (1 vCPU) or `agent-3x` (1.5 vCPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_profile: Option<AgentProfile>,

    /// Longest a session may last, in seconds, from 60 to 14400 (Pipecat Cloud's default is 7200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 14400))]
    pub max_session_duration: Option<i32>,

    /// Pipecat Cloud region the agent is created in, e.g. `us-west` (Pipecat Cloud's default).
    /// Secret sets must be in the same region. Set at creation only: it cannot be changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 2, max = 63),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub region: Option<String>,

    /// Where the Pipecat Cloud Private API key comes from. When omitted, the operator's default
    /// credentials Secret is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,

    /// What happens to the Pipecat Cloud agent when this resource is deleted: `Delete` (the
    /// default) deletes the agent, `Orphan` leaves it running in Pipecat Cloud. Only an agent
    /// this resource created or adopted is ever deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Take over an agent of this name that already exists in Pipecat Cloud (made with
    /// `pcc deploy`, the dashboard, or another cluster). Without it, such an agent is left
    /// untouched and the resource reports `Synced=False` reason `AgentExists`. When true, the
    /// agent is updated to this spec once, managed from then on, and deleted with this resource
    /// under `deletionPolicy: Delete`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,

    /// Change this value (to any new string, e.g. a timestamp) to roll a new deployment without
    /// changing the configuration, like `kubectl rollout restart`: for a re-pushed mutable image
    /// tag or rotated secret values. Each change sends one forced redeploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub redeploy_token: Option<String>,

    /// What happens when a secret set this agent uses (`secretSet`, `imagePullSecretSet`) is
    /// managed by a PipecatSecretSet and its values change. `Redeploy` (the default): a
    /// rotation of the env set (`secretSet`) rolls one new deployment once the set is ready
    /// again, so the agent runs with the new values (running sessions finish on the old
    /// deployment); a rotation of the image-pull set redeploys nothing, since new instances
    /// pull with the set's current credentials anyway (registry tokens refreshed every few
    /// hours would otherwise redeploy every agent each time). `RedeployIncludingImagePull`:
    /// both kinds of rotation redeploy. `Ignore`: no rotation redeploys (new values reach the
    /// agent at its next deployment). Either way, the agent waits while such a set is not ready
    /// (`Synced=False`, reason `SecretSetNotReady`).
    #[serde(default)]
    pub secret_rotation: SecretRotation,
}

/// What a rotation of a managed secret set does to the agents using it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SecretRotation {
    /// One forced redeploy per rotation of the env set (`secretSet`), once the set is ready
    /// again; image-pull set rotations redeploy nothing.
    #[default]
    Redeploy,
    /// One forced redeploy per rotation of either set, the image-pull set included.
    RedeployIncludingImagePull,
    /// No redeploy: the new values reach the agent at its next deployment.
    Ignore,
}

/// The only node type Pipecat Cloud offers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    /// ARM (linux/arm64) nodes.
    #[default]
    Arm,
}

/// Auto-scaling bounds of the agent pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.minAgents <= self.maxAgents").message("autoScaling.minAgents must not be greater than autoScaling.maxAgents")
)]
#[serde(rename_all = "camelCase")]
pub struct AutoScaling {
    /// Instances kept running even with no sessions (0 lets the pool scale to zero, at the cost
    /// of a cold start for the first session). The scale subresource's replicas.
    #[schemars(range(min = 0, max = 1000))]
    pub min_agents: i32,
    /// Most instances that may run at once, i.e. the most concurrent sessions. At least 1.
    #[schemars(range(min = 1, max = 1000))]
    pub max_agents: i32,
}

/// Krisp VIVA settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KrispViva {
    /// Audio filter model: `tel` (telephony audio) or `pro` (wideband audio). Omit to disable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_filter: Option<AudioFilter>,
}

/// Krisp VIVA audio filter model: `tel` (telephony audio) or `pro` (wideband audio). Omit to
/// disable the filter.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AudioFilter {
    /// Telephony (narrowband) audio.
    Tel,
    /// Wideband audio.
    Pro,
}

/// Size of each agent instance: `agent-1x` (0.5 vCPU, the Pipecat Cloud default), `agent-2x`
/// (1 vCPU) or `agent-3x` (1.5 vCPU).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AgentProfile {
    /// 0.5 vCPU.
    #[serde(rename = "agent-1x")]
    Agent1x,
    /// 1 vCPU.
    #[serde(rename = "agent-2x")]
    Agent2x,
    /// 1.5 vCPU.
    #[serde(rename = "agent-3x")]
    Agent3x,
}

/// Where the Pipecat Cloud Private API key is read from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// A key of a Secret in this resource's own namespace (Secrets of other namespaces cannot be
    /// referenced).
    pub secret_ref: SecretKeyRef,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as this PipecatAgent.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret's data holding the API key. Defaults to `api-key`.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// The key read from a credentials Secret when `key` is omitted.
pub const DEFAULT_SECRET_KEY: &str = "api-key";

fn default_secret_key() -> String {
    DEFAULT_SECRET_KEY.to_string()
}

/// What happens to the remote agent when the resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the agent from Pipecat Cloud.
    #[default]
    Delete,
    /// Leave the agent running in Pipecat Cloud.
    Orphan,
}

/// The live state of the agent, as last observed in Pipecat Cloud.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipecatAgentStatus {
    /// Name of the remote agent this resource manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    /// True when the deployment of the current spec is reconciled and ready to take sessions.
    #[serde(default)]
    pub ready: bool,
    /// True when the agent can take sessions (possibly on an older deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    /// The agent's active deployment, as Pipecat Cloud reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deployment_id: Option<String>,
    /// Whether Pipecat Cloud reports the active deployment ready (older API field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deployment_ready: Option<bool>,
    /// The deployment Pipecat Cloud is rolling out (the latest configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_deployment_id: Option<String>,
    /// The deployment Pipecat Cloud has finished rolling out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_deployment_id: Option<String>,
    /// Sessions running right now (refreshed at every resync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_session_count: Option<i64>,
    /// When the operator last wrote what it read from Pipecat Cloud (activeSessionCount,
    /// autoScaling, the deployments). It re-reads them at every resync but writes the status
    /// only when something changed, so an older time means "unchanged since, as of the last
    /// resync". Ready agents are re-read once per resync period: --resync-interval, stretched
    /// when many agents share the API budget (the operator's
    /// `pipecat_operator_resync_period_seconds` metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
    /// Auto-scaling bounds as Pipecat Cloud applies them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling: Option<ObservedAutoScaling>,
    /// Region the agent runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Fingerprint of the configuration last sent to Pipecat Cloud successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_config_hash: Option<String>,
    /// The `spec.redeployToken` last sent as a forced redeploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_redeploy_token: Option<String>,
    /// True when this resource took over an agent that already existed (`spec.adopt`), false
    /// when it created the agent (or manages none yet).
    #[serde(default)]
    pub adopted: bool,
    /// The deployment the operator's last create or update asked for: `Ready` waits for this
    /// deployment (or a later one) to be rolled out and ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_deployment: Option<RequestedDeployment>,
    /// Set while Pipecat Cloud does not take the spec: the fields it kept otherwise. The
    /// operator does not send the same change again until the spec or the remote agent
    /// changes (`Synced=False`, reason `NotConverging`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_convergence: Option<NonConvergence>,
    /// Label selector of the scale subresource, `pipecat.daily.co/agent=<agent name>`. A
    /// HorizontalPodAutoscaler requires one; no pod carries it (the agent's instances run in
    /// Pipecat Cloud), so scale on External or Object metrics, not on Pods or Resource ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// For each secret set this agent uses that a PipecatSecretSet manages: the set's
    /// `readyRevision` the agent's deployment has (a higher revision of the set means a
    /// rotation not yet rolled out to the agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_set_revisions: Vec<SecretSetRevision>,
    /// A forced redeploy for a rotation, recorded right before it is sent: if the operator
    /// stops before recording its result, the next pass sees whether the agent's deployment
    /// moved on since (the redeploy happened) instead of sending it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_rotation: Option<PendingRotation>,
    /// `Ready`: the current spec's deployment is live. `Synced`: the last reconcile with Pipecat
    /// Cloud succeeded. Reasons are CamelCase words; messages say what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A deployment this operator asked for.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestedDeployment {
    /// Its id.
    pub id: String,
    /// The deployment it replaces (an answer that still names this one describes the past).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// A secret set and one of its revisions (`PipecatSecretSet` `status.readyRevision`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretSetRevision {
    /// The Pipecat Cloud secret set name.
    pub name: String,
    /// The set's revision.
    pub revision: i64,
}

/// A forced redeploy sent (or about to be sent) for secret set rotations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRotation {
    /// The revisions the redeploy brings to the agent.
    #[serde(default)]
    pub revisions: Vec<SecretSetRevision>,
    /// The agent's deployment before the redeploy (a later one means it happened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// An update Pipecat Cloud did not take.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NonConvergence {
    /// Fingerprint of the configuration that was sent.
    pub config_hash: String,
    /// The fields that stayed different, with what Pipecat Cloud reports.
    #[serde(default)]
    pub fields: Vec<FieldValue>,
}

/// A field and the value Pipecat Cloud reports for it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldValue {
    /// The spec field.
    pub field: String,
    /// Its remote value.
    pub remote: String,
}

/// Auto-scaling as reported by Pipecat Cloud.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedAutoScaling {
    /// Instances kept running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i64>,
    /// Most instances allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i64>,
}

impl PipecatAgent {
    /// The remote agent's name: `spec.agentName`, or `metadata.name` when unset.
    pub fn agent_name(&self) -> &str {
        self.spec
            .agent_name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }

    /// The label selector published in `status.selector` for the scale subresource.
    pub fn scale_selector(&self) -> String {
        format!("{AGENT_LABEL}={}", self.agent_name())
    }

    /// The condition of the given type, if any.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
    }
}

/// True when `name` is a valid Pipecat Cloud agent name.
pub fn is_valid_agent_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (2..=AGENT_NAME_MAX_LEN).contains(&bytes.len())
        && alnum(&bytes[0])
        && alnum(&bytes[bytes.len() - 1])
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

/// The CustomResourceDefinition as installed: the derived one with every schema description
/// reflowed into paragraphs (see [`reflow_description`]), so `kubectl explain` wraps the text
/// to the terminal instead of breaking lines where the doc comments happened to.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(PipecatAgent::crd()).expect("the CRD always serializes");
    reflow_descriptions(&mut crd);
    serde_json::from_value(crd).expect("reflowing descriptions keeps the CRD well-formed")
}

/// Rewrites every `description` string of a JSON schema tree with [`reflow_description`].
fn reflow_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = reflow_description(text);
                    }
                    _ => reflow_descriptions(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(reflow_descriptions),
        _ => {}
    }
}

/// Joins the hard-wrapped lines of a doc comment into paragraphs: lines of one paragraph become
/// one line (joined with a space), a blank line stays a paragraph break, and a list item
/// (`- `, `* ` or `1. `) starts on its own line, its wrapped continuation lines joined to it.
pub fn reflow_description(text: &str) -> String {
    fn is_list_item(line: &str) -> bool {
        let line = line.trim_start();
        if line.starts_with("- ") || line.starts_with("* ") {
            return true;
        }
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && line[digits..].starts_with(". ")
    }
    let mut paragraphs = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut lines: Vec<String> = Vec::new();
        for line in paragraph.lines().map(str::trim_end) {
            match lines.last_mut() {
                Some(last) if !is_list_item(line) && !line.trim().is_empty() => {
                    last.push(' ');
                    last.push_str(line.trim_start());
                }
                _ if line.trim().is_empty() => {}
                _ => lines.push(line.to_string()),
            }
        }
        paragraphs.push(lines.join("\n"));
    }
    paragraphs.join("\n\n")
}

/// The CustomResourceDefinition as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> String {
    generated_yaml(&crd())
}

/// A CRD as committed under `crds/`: a YAML document of its own (it opens with `---`), so
/// the files of `crds/` put one after the other are what `pipecat-operator crd` prints.
pub(crate) fn generated_yaml(crd: &CustomResourceDefinition) -> String {
    let yaml = serde_saphyr::to_string(crd).expect("the CRD always serializes");
    format!("---\n# Generated by `pipecat-operator crd`; do not edit by hand.\n{yaml}")
}

/// Every CRD of the operator, then the apply-time warnings policy, in the order of their files
/// under `crds/` (by name).
pub fn all_crds_yaml() -> String {
    crd_yaml() + &secret_set::crd_yaml() + &warnings::warnings_yaml()
}
