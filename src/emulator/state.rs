//! Organizations, agents, deployments, sessions and secret sets: the emulator's pure logic.
//!
//! Nothing here does I/O or reads the clock: every operation takes `now`. The deployment
//! lifecycle is computed from timestamps when an agent is read, so idle agents cost nothing.
//!
//! Lifecycle of a deployment created at `t` (delays from [`Settings`]):
//! - its pods are ready at `t + readyDelay` (or, for a failing image, the failure shows then);
//! - it is reconciled at `t + max(reconcileDelay, readyDelay)`, unless a newer deployment
//!   replaced it first (the platform moves on to the newest desired deployment);
//! - `ready` describes the reconciled deployment until the newest one is reconciled or fails,
//!   so right after an update it still describes the previous deployment.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{AgentPatch, Field, NODE_TYPE, SecretSetBody};
use super::error::ApiError;
use super::pattern::Pattern;
use super::views::*;

/// Region of agents and secret sets created without one.
pub const DEFAULT_REGION: &str = "us-west";
const DEFAULT_MIN_AGENTS: u32 = 0;
const DEFAULT_MAX_AGENTS: u32 = 10;
const DEFAULT_PROFILE: &str = "agent-1x";
const DEFAULT_MAX_SESSION_DURATION: u32 = 7200;
/// Seconds between two restarts of a crashing container (drives `restartCount`).
const CRASH_RESTART_EVERY_SECS: i64 = 10;
const NO_CHANGE_WARNING: &str = "No changes detected: no new deployment was created. Use \
                                 forceRedeploy to redeploy the same configuration.";

/// Delays and failure patterns; the admin API changes them at run time.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// From deployment creation to its pods being ready (or its failure showing).
    pub ready_delay: Duration,
    /// From deployment creation to `reconciledDeploymentId` catching up.
    pub reconcile_delay: Duration,
    /// From `PUT /secrets/{set}` to the set being ready.
    pub secret_ready_delay: Duration,
    /// Images whose deployments crash.
    pub crash_image: Option<Pattern>,
    /// Images whose deployments fail to pull.
    pub pull_fail_image: Option<Pattern>,
    /// Secret set names whose provisioning fails.
    pub secret_fail: Option<Pattern>,
}

/// Uuids as strings in the state file (the `uuid` crate is built without serde here).
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(D::Error::custom)
    }
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// API timestamps: RFC 3339, milliseconds, `Z`.
pub fn format_ts(t: Timestamp) -> String {
    format!("{t:.3}")
}

/// The configuration of one deployment, the body fields after defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    image: Option<String>,
    build_id: Option<String>,
    node_type: String,
    image_pull_secret_set: Option<String>,
    secret_set: Option<String>,
    min_agents: u32,
    max_agents: u32,
    enable_krisp: bool,
    krisp_viva: Option<String>,
    agent_profile: String,
    max_session_duration: u32,
}

impl AgentConfig {
    fn defaults() -> Self {
        Self {
            image: None,
            build_id: None,
            node_type: NODE_TYPE.to_owned(),
            image_pull_secret_set: None,
            secret_set: None,
            min_agents: DEFAULT_MIN_AGENTS,
            max_agents: DEFAULT_MAX_AGENTS,
            enable_krisp: false,
            krisp_viva: None,
            agent_profile: DEFAULT_PROFILE.to_owned(),
            max_session_duration: DEFAULT_MAX_SESSION_DURATION,
        }
    }

    /// Applies a checked body over `base` (or the defaults) and checks the combined rules.
    fn apply(base: Option<&AgentConfig>, patch: &AgentPatch) -> Result<Self, ApiError> {
        let mut c = base.cloned().unwrap_or_else(Self::defaults);
        match (&patch.image, &patch.build_id) {
            (Field::Set(image), _) => {
                c.image = Some(image.clone());
                c.build_id = None;
            }
            (_, Field::Set(id)) => {
                c.build_id = Some(id.clone());
                c.image = None;
            }
            _ => {}
        }
        if c.image.is_none() && c.build_id.is_none() {
            return Err(ApiError::bad_request("one of image or buildId is required"));
        }
        if let Some(node) = &patch.node_type {
            c.node_type = node.clone();
        }
        for (field, slot) in [
            (&patch.secret_set, &mut c.secret_set),
            (&patch.image_pull_secret_set, &mut c.image_pull_secret_set),
        ] {
            match field {
                Field::Set(name) => *slot = Some(name.clone()),
                Field::Null => *slot = None,
                Field::Absent => {}
            }
        }
        if let Some(min) = patch.min_agents {
            c.min_agents = min;
        }
        if let Some(max) = patch.max_agents {
            c.max_agents = max;
        }
        if c.min_agents > c.max_agents {
            return Err(ApiError::bad_request(format!(
                "autoScaling.minAgents ({}) must not exceed autoScaling.maxAgents ({})",
                c.min_agents, c.max_agents
            )));
        }
        if let Some(enable) = patch.enable_krisp {
            c.enable_krisp = enable;
        }
        if let Some(viva) = &patch.krisp_viva {
            c.krisp_viva = viva.clone();
        }
        if let Some(profile) = &patch.agent_profile {
            c.agent_profile = profile.clone();
        }
        if let Some(seconds) = patch.max_session_duration {
            c.max_session_duration = seconds;
        }
        Ok(c)
    }

    /// What failure patterns match: the image, or the build id for build-based agents.
    fn artifact(&self) -> &str {
        self.image
            .as_deref()
            .or(self.build_id.as_deref())
            .unwrap_or_default()
    }
}

/// How a deployment ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Starts and becomes ready.
    Healthy,
    /// The container keeps crashing (`CrashLoopBackOff`).
    Crash,
    /// The image cannot be pulled (`ImagePullBackOff`).
    PullFail,
}

/// One deployment of an agent; its phase follows from the timestamps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    #[serde(with = "uuid_text")]
    id: Uuid,
    created_at: Timestamp,
    ready_at: Timestamp,
    reconcile_at: Timestamp,
    superseded_at: Option<Timestamp>,
    outcome: Outcome,
    config: AgentConfig,
}

impl Deployment {
    fn new(config: AgentConfig, settings: &Settings, now: Timestamp) -> Self {
        let artifact = config.artifact();
        let outcome = if settings
            .pull_fail_image
            .as_ref()
            .is_some_and(|p| p.is_match(artifact))
        {
            Outcome::PullFail
        } else if settings
            .crash_image
            .as_ref()
            .is_some_and(|p| p.is_match(artifact))
        {
            Outcome::Crash
        } else {
            Outcome::Healthy
        };
        Self {
            id: Uuid::new_v4(),
            created_at: now,
            ready_at: after(now, settings.ready_delay),
            reconcile_at: after(now, settings.reconcile_delay.max(settings.ready_delay)),
            superseded_at: None,
            outcome,
            config,
        }
    }

    fn started(&self, now: Timestamp) -> bool {
        now > self.created_at && now >= self.ready_at
    }

    fn pods_ready(&self, now: Timestamp) -> bool {
        self.outcome == Outcome::Healthy && self.started(now)
    }

    fn failed(&self, now: Timestamp) -> bool {
        self.outcome != Outcome::Healthy && self.started(now)
    }

    fn reconciled(&self, now: Timestamp) -> bool {
        self.outcome == Outcome::Healthy
            && now > self.created_at
            && now >= self.reconcile_at
            && self.superseded_at.is_none_or(|s| self.reconcile_at <= s)
    }
}

/// A running session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[serde(with = "uuid_text")]
    id: Uuid,
    started_at: Timestamp,
    expires_at: Timestamp,
}

/// An agent (a "service").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    #[serde(with = "uuid_text")]
    id: Uuid,
    name: String,
    region: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// Oldest first, never empty; the last one is the desired deployment. Pruned to the ones
    /// that still matter (reconciled, previous, desired).
    deployments: Vec<Deployment>,
    sessions: Vec<Session>,
}

/// The deployments that matter at one instant.
struct Life<'a> {
    desired: &'a Deployment,
    previous: Option<&'a Deployment>,
    reconciled: Option<&'a Deployment>,
}

impl Agent {
    fn desired(&self) -> &Deployment {
        self.deployments
            .last()
            .expect("an agent always has a deployment")
    }

    fn config(&self) -> &AgentConfig {
        &self.desired().config
    }

    fn life(&self, now: Timestamp) -> Life<'_> {
        let n = self.deployments.len();
        Life {
            desired: &self.deployments[n - 1],
            previous: n.checked_sub(2).map(|i| &self.deployments[i]),
            reconciled: self.deployments.iter().rev().find(|d| d.reconciled(now)),
        }
    }

    fn push_deployment(&mut self, deployment: Deployment, now: Timestamp) {
        let keep_reconciled = self.life(now).reconciled.map(|d| d.id);
        let previous = self.desired().id;
        if let Some(last) = self.deployments.last_mut() {
            last.superseded_at = Some(now);
        }
        self.deployments
            .retain(|d| d.id == previous || Some(d.id) == keep_reconciled);
        self.deployments.push(deployment);
        self.updated_at = now;
    }

    fn live_sessions(&self, now: Timestamp) -> usize {
        self.sessions.iter().filter(|s| s.expires_at > now).count()
    }

    fn reconciled_id(&self, now: Timestamp) -> Option<String> {
        self.life(now).reconciled.map(|d| d.id.to_string())
    }

    /// Whether sessions can start: some reconciled deployment serves traffic.
    fn available(&self, now: Timestamp) -> bool {
        self.life(now).reconciled.is_some()
    }
}

/// A secret set; values are never kept, only field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSet {
    name: String,
    kind: SecretKind,
    region: String,
    keys: BTreeSet<String>,
    host: Option<String>,
    updated_at: Timestamp,
    ready_at: Timestamp,
    failure: Option<String>,
}

/// The two kinds of secret sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SecretKind {
    /// Environment variables for the agent (`secretSet`).
    Secret,
    /// Registry credentials (`imagePullSecretSet`).
    ImagePullSecret,
}

impl SecretKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::ImagePullSecret => "imagePullSecret",
        }
    }
}

/// Provisioning status of a secret set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetStatus {
    /// Being provisioned.
    Pending,
    /// Usable.
    Ready,
    /// Provisioning failed.
    Failed,
}

impl SetStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }
}

impl SecretSet {
    fn status(&self, now: Timestamp) -> SetStatus {
        if !(now > self.updated_at && now >= self.ready_at) {
            SetStatus::Pending
        } else if self.failure.is_some() {
            SetStatus::Failed
        } else {
            SetStatus::Ready
        }
    }

    fn view(&self, now: Timestamp) -> SecretSetView {
        let status = self.status(now);
        SecretSetView {
            name: self.name.clone(),
            kind: self.kind.as_str(),
            region: self.region.clone(),
            status: status.as_str(),
            error_message: match status {
                SetStatus::Failed => self.failure.clone(),
                _ => None,
            },
        }
    }
}

/// One organization: what one API key sees.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Org {
    #[serde(with = "uuid_text")]
    id: Uuid,
    namespace: String,
    agents: HashMap<String, Agent>,
    secret_sets: HashMap<String, SecretSet>,
}

fn random_namespace() -> String {
    const ADJECTIVES: [&str; 8] = [
        "tiny", "brave", "quiet", "swift", "calm", "bold", "lucky", "sunny",
    ];
    const ANIMALS: [&str; 8] = [
        "ferret", "otter", "heron", "lynx", "panda", "gecko", "walrus", "finch",
    ];
    const COLOURS: [&str; 8] = [
        "maroon", "teal", "amber", "ivory", "olive", "coral", "indigo", "silver",
    ];
    let mut rng = rand::rng();
    format!(
        "{}-{}-{}-{}",
        ADJECTIVES.choose(&mut rng).copied().unwrap_or("tiny"),
        ANIMALS.choose(&mut rng).copied().unwrap_or("ferret"),
        COLOURS.choose(&mut rng).copied().unwrap_or("maroon"),
        rng.random_range(100..1000)
    )
}

impl Default for Org {
    fn default() -> Self {
        Self::new()
    }
}

impl Org {
    /// An empty organization with a fresh id and namespace.
    pub fn new() -> Self {
        Self {
            id: Uuid::new_v4(),
            namespace: random_namespace(),
            agents: HashMap::new(),
            secret_sets: HashMap::new(),
        }
    }

    /// Number of agents.
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Number of secret sets.
    pub fn secret_set_count(&self) -> usize {
        self.secret_sets.len()
    }

    /// Number of live sessions over all agents.
    pub fn session_count(&self, now: Timestamp) -> usize {
        self.agents.values().map(|a| a.live_sessions(now)).sum()
    }

    // ---- agents ----

    /// `GET /agents`.
    pub fn list_agents(
        &self,
        region: Option<&str>,
        include_deployment: bool,
        now: Timestamp,
    ) -> AgentListView {
        let mut agents: Vec<&Agent> = self
            .agents
            .values()
            .filter(|a| region.is_none_or(|r| a.region == r))
            .collect();
        agents.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        AgentListView {
            services: agents
                .into_iter()
                .map(|a| {
                    let desired = a.desired().id.to_string();
                    AgentSummaryView {
                        id: a.id.to_string(),
                        name: a.name.clone(),
                        region: a.region.clone(),
                        active_deployment_id: desired.clone(),
                        desired_deployment_id: desired,
                        reconciled_deployment_id: a.reconciled_id(now),
                        organization_id: self.id.to_string(),
                        created_at: format_ts(a.created_at),
                        updated_at: format_ts(a.updated_at),
                        deleted_at: None,
                        deployment: include_deployment
                            .then(|| self.deployment_view(a, a.desired())),
                    }
                })
                .collect(),
        }
    }

    /// `GET /agents/{name}`.
    pub fn get_agent(&self, name: &str, now: Timestamp) -> Result<AgentView, ApiError> {
        let agent = self.agents.get(name).ok_or_else(ApiError::not_found)?;
        Ok(self.agent_view(agent, now))
    }

    /// `POST /agents`.
    pub fn create_agent(
        &mut self,
        patch: &AgentPatch,
        settings: &Settings,
        now: Timestamp,
    ) -> Result<AgentView, ApiError> {
        let name = patch
            .service_name
            .clone()
            .ok_or_else(|| ApiError::bad_request("serviceName is required"))?;
        if self.agents.contains_key(&name) {
            return Err(ApiError::bad_request("Service already exists"));
        }
        let region = patch
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let config = AgentConfig::apply(None, patch)?;
        self.check_bindings(&config, &region, now)?;
        let agent = Agent {
            id: Uuid::new_v4(),
            name: name.clone(),
            region,
            created_at: now,
            updated_at: now,
            deployments: vec![Deployment::new(config, settings, now)],
            sessions: Vec::new(),
        };
        let view = self.agent_view(&agent, now);
        self.agents.insert(name, agent);
        Ok(view)
    }

    /// `POST /agents/{name}`, and out-of-band edits (same rules).
    pub fn update_agent(
        &mut self,
        name: &str,
        patch: &AgentPatch,
        settings: &Settings,
        now: Timestamp,
    ) -> Result<AgentView, ApiError> {
        let agent = self.agents.get(name).ok_or_else(ApiError::not_found)?;
        if let Some(requested) = patch.service_name.as_deref().filter(|n| *n != name) {
            return Err(ApiError::bad_request(format!(
                "serviceName cannot be changed: this agent is {name:?}, not {requested:?}"
            )));
        }
        if let Some(requested) = patch.region.as_deref().filter(|r| *r != agent.region) {
            return Err(ApiError::bad_request(format!(
                "region cannot be changed after create: agent {name:?} is in {:?}, not {requested:?}",
                agent.region
            )));
        }
        let next = AgentConfig::apply(Some(agent.config()), patch)?;
        if next == *agent.config() && !patch.force_redeploy {
            let mut view = self.agent_view(agent, now);
            view.warning = Some(NO_CHANGE_WARNING.to_owned());
            return Ok(view);
        }
        self.check_bindings(&next, &agent.region, now)?;
        let agent = self.agents.get_mut(name).ok_or_else(ApiError::not_found)?;
        agent.push_deployment(Deployment::new(next, settings, now), now);
        let agent = &self.agents[name];
        Ok(self.agent_view(agent, now))
    }

    /// `DELETE /agents/{name}`.
    pub fn delete_agent(&mut self, name: &str) -> Result<(), ApiError> {
        self.agents
            .remove(name)
            .map(drop)
            .ok_or_else(ApiError::not_found)
    }

    fn check_bindings(
        &self,
        config: &AgentConfig,
        region: &str,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let bindings = [
            (
                "secretSet",
                config.secret_set.as_deref(),
                SecretKind::Secret,
            ),
            (
                "imagePullSecretSet",
                config.image_pull_secret_set.as_deref(),
                SecretKind::ImagePullSecret,
            ),
        ];
        for (field, name, kind) in bindings {
            let Some(name) = name else { continue };
            let set = self
                .secret_sets
                .get(name)
                .filter(|s| s.region == region)
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "{field}: secret set {name:?} not found in region {region:?}"
                    ))
                })?;
            if set.kind != kind {
                return Err(ApiError::bad_request(format!(
                    "{field}: secret set {name:?} is of type {}, expected {}",
                    set.kind.as_str(),
                    kind.as_str()
                )));
            }
            match set.status(now) {
                SetStatus::Ready => {}
                SetStatus::Pending => {
                    return Err(ApiError::Conflict(format!(
                        "{field}: secret set {name:?} is still provisioning; retry when its \
                         status is ready"
                    )));
                }
                SetStatus::Failed => {
                    return Err(ApiError::bad_request(format!(
                        "{field}: secret set {name:?} failed to provision: {}",
                        set.failure.as_deref().unwrap_or("unknown error")
                    )));
                }
            }
        }
        Ok(())
    }

    fn deployment_view(&self, agent: &Agent, d: &Deployment) -> DeploymentView {
        let c = &d.config;
        DeploymentView {
            id: d.id.to_string(),
            manifest: ManifestView {
                api_version: "pipecatcloud.daily.co/v1",
                kind: "PCService",
                metadata: MetadataView {
                    name: agent.name.clone(),
                    namespace: self.namespace.clone(),
                },
                spec: SpecView {
                    daily_node_type: c.node_type.clone(),
                    cluster_local: true,
                    image: c.image.clone(),
                    build_id: c.build_id.clone(),
                    auto_scaling: SpecScalingView {
                        concurrency: 1,
                        min_replicas: c.min_agents,
                        max_replicas: c.max_agents,
                    },
                    env_from_secret_names: c.secret_set.iter().cloned().collect(),
                    image_pull_secret_name: c.image_pull_secret_set.clone(),
                    krisp_models: KrispModelsView {
                        enabled: c.enable_krisp,
                    },
                    krisp_viva: KrispVivaView {
                        audio_filter: c.krisp_viva.clone(),
                    },
                    agent_profile: c.agent_profile.clone(),
                    max_session_duration: c.max_session_duration,
                },
            },
            service_id: agent.id.to_string(),
            created_at: format_ts(d.created_at),
            updated_at: format_ts(d.created_at),
        }
    }

    fn agent_view(&self, agent: &Agent, now: Timestamp) -> AgentView {
        let life = agent.life(now);
        let desired = life.desired;
        let desired_active = life.reconciled.is_some_and(|r| r.id == desired.id);
        let desired_failed = desired.failed(now);
        let available = life.reconciled.is_some();
        let ready = if desired_active {
            true
        } else if desired_failed {
            false
        } else {
            available
        };
        let c = &desired.config;
        let current_health = health(desired, now);

        let mut conditions = Vec::with_capacity(3);
        conditions.push(ConditionView {
            kind: "Available",
            status: if available { "True" } else { "False" },
            reason: if available {
                "MinimumReplicasAvailable"
            } else {
                "NoReadyDeployment"
            },
            message: match life.reconciled {
                Some(r) => format!("deployment {} serves sessions", r.id),
                None => format!("no deployment of agent {} is ready yet", agent.name),
            },
        });
        conditions.push(if desired_failed {
            ConditionView {
                kind: "Progressing",
                status: "False",
                reason: "DeploymentFailed",
                message: format!(
                    "deployment {} failed: {}",
                    desired.id, current_health.headline
                ),
            }
        } else if desired_active {
            ConditionView {
                kind: "Progressing",
                status: "False",
                reason: "DeploymentComplete",
                message: format!("deployment {} is active", desired.id),
            }
        } else {
            ConditionView {
                kind: "Progressing",
                status: "True",
                reason: "DeploymentInProgress",
                message: format!("deployment {} is rolling out", desired.id),
            }
        });
        conditions.push(if desired_failed {
            ConditionView {
                kind: "Degraded",
                status: "True",
                reason: current_health.state,
                message: current_health.message.clone().unwrap_or_default(),
            }
        } else {
            ConditionView {
                kind: "Degraded",
                status: "False",
                reason: "AsExpected",
                message: String::new(),
            }
        });

        let errors = if desired_failed {
            vec![match desired.outcome {
                Outcome::PullFail => ErrorView {
                    code: "PCC_IMAGE_PULL_UNAUTHORIZED",
                    message: format!(
                        "unauthorized to pull image {:?}: check the credentials of \
                         imagePullSecretSet",
                        c.artifact()
                    ),
                },
                _ => ErrorView {
                    code: "PCC_AGENT_CRASH_LOOP",
                    message: format!(
                        "the agent container of image {:?} exits with code 1 and keeps \
                         restarting (CrashLoopBackOff)",
                        c.artifact()
                    ),
                },
            }]
        } else {
            Vec::new()
        };

        let current_revision = Some(revision(
            desired,
            current_phase(desired, desired_active, now),
            current_health,
        ));
        let previous_revision = life.previous.map(|p| {
            let phase = if p.failed(now) {
                "Failed"
            } else if life.reconciled.is_some_and(|r| r.id == p.id) {
                "Active"
            } else {
                "Draining"
            };
            revision(p, phase, health(p, now))
        });

        let desired_id = desired.id.to_string();
        AgentView {
            name: agent.name.clone(),
            ready,
            created_at: format_ts(agent.created_at),
            updated_at: format_ts(agent.updated_at),
            active_deployment_id: desired_id.clone(),
            active_deployment_ready: desired_active,
            auto_scaling: AutoScalingView {
                concurrency: 1,
                max_replicas: c.max_agents,
                min_replicas: c.min_agents,
                scale_to_zero_time: "5m",
            },
            active_session_count: u32::try_from(agent.live_sessions(now)).unwrap_or(u32::MAX),
            deployment: Some(self.deployment_view(agent, desired)),
            region: agent.region.clone(),
            available,
            desired_deployment_id: desired_id,
            reconciled_deployment_id: life.reconciled.map(|d| d.id.to_string()),
            agent_profile: c.agent_profile.clone(),
            krisp_viva: KrispVivaView {
                audio_filter: c.krisp_viva.clone(),
            },
            max_session_duration: c.max_session_duration,
            conditions,
            current_revision,
            previous_revision,
            errors,
            warning: None,
        }
    }

    // ---- sessions ----

    /// `POST /public/{name}/start`.
    pub fn start_session(&mut self, name: &str, now: Timestamp) -> Result<Uuid, ApiError> {
        let agent = self.agents.get_mut(name).ok_or_else(ApiError::not_found)?;
        agent.sessions.retain(|s| s.expires_at > now);
        if !agent.available(now) {
            return Err(ApiError::bad_request(format!(
                "agent {name:?} is not ready to take sessions: no deployment is available yet"
            )));
        }
        let max = agent.config().max_agents;
        if agent.sessions.len() >= max as usize {
            return Err(ApiError::TooManyRequests(format!(
                "agent {name:?} is at capacity: {max} of {max} sessions active \
                 (autoScaling.maxAgents)"
            )));
        }
        let id = Uuid::new_v4();
        let lifetime = Duration::from_secs(u64::from(agent.config().max_session_duration));
        agent.sessions.push(Session {
            id,
            started_at: now,
            expires_at: after(now, lifetime),
        });
        Ok(id)
    }

    /// Ends one session by id; whether it existed.
    pub fn end_session(&mut self, id: &str) -> bool {
        for agent in self.agents.values_mut() {
            if let Some(i) = agent.sessions.iter().position(|s| s.id.to_string() == id) {
                agent.sessions.swap_remove(i);
                return true;
            }
        }
        false
    }

    /// Ends every session of an agent; how many there were.
    pub fn end_sessions(&mut self, name: &str, now: Timestamp) -> Result<usize, ApiError> {
        let agent = self.agents.get_mut(name).ok_or_else(ApiError::not_found)?;
        let live = agent.live_sessions(now);
        agent.sessions.clear();
        Ok(live)
    }

    /// Ids and start times of an agent's live sessions.
    pub fn sessions(&self, name: &str, now: Timestamp) -> Result<Vec<(String, String)>, ApiError> {
        let agent = self.agents.get(name).ok_or_else(ApiError::not_found)?;
        Ok(agent
            .sessions
            .iter()
            .filter(|s| s.expires_at > now)
            .map(|s| (s.id.to_string(), format_ts(s.started_at)))
            .collect())
    }

    // ---- secret sets ----

    /// `GET /secrets`.
    pub fn list_secret_sets(&self, region: Option<&str>, now: Timestamp) -> SecretSetListView {
        let mut sets: Vec<&SecretSet> = self
            .secret_sets
            .values()
            .filter(|s| region.is_none_or(|r| s.region == r))
            .collect();
        sets.sort_by(|a, b| a.name.cmp(&b.name));
        SecretSetListView {
            sets: sets.into_iter().map(|s| s.view(now)).collect(),
        }
    }

    /// `GET /secrets/{set}`.
    pub fn get_secret_set(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<SecretSetDetailView, ApiError> {
        let set = self
            .secret_sets
            .get(name)
            .ok_or_else(|| set_not_found(name))?;
        let view = set.view(now);
        Ok(SecretSetDetailView {
            name: view.name,
            kind: view.kind,
            region: view.region,
            status: view.status,
            error_message: view.error_message,
            secrets: set
                .keys
                .iter()
                .map(|k| FieldNameView {
                    field_name: k.clone(),
                })
                .collect(),
            host: set.host.clone(),
        })
    }

    /// `PUT /secrets/{set}`: creates or changes a set; it is pending until provisioned.
    pub fn put_secret_set(
        &mut self,
        name: &str,
        body: SecretSetBody,
        settings: &Settings,
        now: Timestamp,
    ) -> Result<SecretSetView, ApiError> {
        let (kind, region) = match &body {
            SecretSetBody::Secrets { region, .. } => (SecretKind::Secret, region.clone()),
            SecretSetBody::ImagePull { region, .. } => {
                (SecretKind::ImagePullSecret, region.clone())
            }
        };
        let failure = settings
            .secret_fail
            .as_ref()
            .filter(|p| p.is_match(name))
            .map(|_| format!("provisioning of secret set {name:?} failed (emulated failure)"));
        let ready_at = after(now, settings.secret_ready_delay);
        if let Some(set) = self.secret_sets.get_mut(name) {
            if set.status(now) == SetStatus::Pending {
                return Err(ApiError::Conflict(format!(
                    "secret set {name:?} is still provisioning a previous change; retry when \
                     its status is ready"
                )));
            }
            if set.kind != kind {
                return Err(ApiError::bad_request(format!(
                    "secret set {name:?} is of type {}, not {}",
                    set.kind.as_str(),
                    kind.as_str()
                )));
            }
            if let Some(region) = region.filter(|r| *r != set.region) {
                return Err(ApiError::bad_request(format!(
                    "region cannot be changed: secret set {name:?} is in {:?}, not {region:?}",
                    set.region
                )));
            }
            match body {
                SecretSetBody::Secrets { keys, .. } => set.keys.extend(keys),
                SecretSetBody::ImagePull { host, .. } => set.host = Some(host),
            }
            set.updated_at = now;
            set.ready_at = ready_at;
            set.failure = failure;
            return Ok(set.view(now));
        }
        let (keys, host) = match body {
            SecretSetBody::Secrets { keys, .. } => (keys.into_iter().collect(), None),
            SecretSetBody::ImagePull { host, .. } => (BTreeSet::new(), Some(host)),
        };
        let set = SecretSet {
            name: name.to_owned(),
            kind,
            region: region.unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            keys,
            host,
            updated_at: now,
            ready_at,
            failure,
        };
        let view = set.view(now);
        self.secret_sets.insert(name.to_owned(), set);
        Ok(view)
    }

    /// `DELETE /secrets/{set}`.
    pub fn delete_secret_set(&mut self, name: &str, now: Timestamp) -> Result<(), ApiError> {
        let set = self
            .secret_sets
            .get(name)
            .ok_or_else(|| set_not_found(name))?;
        if set.status(now) == SetStatus::Pending {
            return Err(ApiError::Conflict(format!(
                "secret set {name:?} is still provisioning; retry when its status is ready"
            )));
        }
        self.secret_sets.remove(name);
        Ok(())
    }

    /// `DELETE /secrets/{set}/{key}`.
    pub fn delete_secret(
        &mut self,
        name: &str,
        key: &str,
        settings: &Settings,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let set = self
            .secret_sets
            .get_mut(name)
            .ok_or_else(|| set_not_found(name))?;
        if set.status(now) == SetStatus::Pending {
            return Err(ApiError::Conflict(format!(
                "secret set {name:?} is still provisioning; retry when its status is ready"
            )));
        }
        if set.kind == SecretKind::ImagePullSecret {
            return Err(ApiError::bad_request(format!(
                "secret set {name:?} is an image pull secret set: it has no keys to delete"
            )));
        }
        if !set.keys.remove(key) {
            return Err(ApiError::NotFound(format!(
                "secret {key:?} not found in secret set {name:?}"
            )));
        }
        set.updated_at = now;
        set.ready_at = after(now, settings.secret_ready_delay);
        Ok(())
    }
}

fn set_not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("secret set {name:?} not found"))
}

fn current_phase(d: &Deployment, active: bool, now: Timestamp) -> &'static str {
    if d.failed(now) {
        "Failed"
    } else if active {
        "Active"
    } else if d.pods_ready(now) {
        "Validating"
    } else {
        "Creating"
    }
}

fn phase_started_at(d: &Deployment, phase: &str) -> Timestamp {
    match phase {
        "Creating" => d.created_at,
        "Validating" | "Failed" => d.ready_at,
        "Active" => d.reconcile_at,
        _ => d.superseded_at.unwrap_or(d.reconcile_at),
    }
}

fn revision(d: &Deployment, phase: &'static str, health: HealthView) -> RevisionView {
    RevisionView {
        deployment_id: d.id.to_string(),
        phase,
        ready_replicas: if health.ready {
            d.config.min_agents.max(1)
        } else {
            0
        },
        phase_started_at: format_ts(phase_started_at(d, phase)),
        health,
        has_infrastructure_issue: false,
    }
}

fn health(d: &Deployment, now: Timestamp) -> HealthView {
    if !d.started(now) {
        return HealthView {
            ready: false,
            state: "ContainerCreating",
            restart_count: 0,
            replicas_started: 0,
            reason: Some("ContainerCreating"),
            last_exit_code: None,
            last_termination_reason: None,
            message: None,
            headline: "The agent is starting".to_owned(),
        };
    }
    match d.outcome {
        Outcome::Healthy => HealthView {
            ready: true,
            state: "Running",
            restart_count: 0,
            replicas_started: d.config.min_agents.max(1),
            reason: None,
            last_exit_code: None,
            last_termination_reason: None,
            message: None,
            headline: "The agent is running".to_owned(),
        },
        Outcome::Crash => {
            let since = now.duration_since(d.ready_at).as_secs().max(0);
            let restarts = 1 + since / CRASH_RESTART_EVERY_SECS;
            HealthView {
                ready: false,
                state: "CrashLoopBackOff",
                restart_count: u32::try_from(restarts).unwrap_or(u32::MAX),
                replicas_started: 1,
                reason: Some("CrashLoopBackOff"),
                last_exit_code: Some(1),
                last_termination_reason: Some("Error"),
                message: Some(format!(
                    "back-off restarting failed container: the agent exited with code 1 \
                     (restarted {restarts} times)"
                )),
                headline: "The agent container keeps crashing".to_owned(),
            }
        }
        Outcome::PullFail => HealthView {
            ready: false,
            state: "ImagePullBackOff",
            restart_count: 0,
            replicas_started: 0,
            reason: Some("ImagePullBackOff"),
            last_exit_code: None,
            last_termination_reason: None,
            message: Some(format!(
                "failed to pull image {:?}: 401 Unauthorized",
                d.config.artifact()
            )),
            headline: "The image cannot be pulled".to_owned(),
        },
    }
}

/// Every organization, the run-time settings and the emulator's clock.
#[derive(Debug, Default)]
pub struct State {
    /// Delays and failure patterns.
    pub settings: Settings,
    orgs: HashMap<String, Org>,
    clock: Option<Timestamp>,
}

/// What the state file holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version.
    pub version: u32,
    /// Organizations by key fingerprint.
    pub orgs: HashMap<String, Org>,
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    orgs: &'a HashMap<String, Org>,
}

impl State {
    /// Empty state with these settings.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            orgs: HashMap::new(),
            clock: None,
        }
    }

    /// The current instant, strictly later than any earlier answer so that "right after" and
    /// "later" never coincide.
    pub fn now(&mut self) -> Timestamp {
        let mut now = Timestamp::now();
        if let Some(last) = self.clock
            && now <= last
        {
            now = last
                .checked_add(jiff::SignedDuration::from_nanos(1))
                .unwrap_or(last);
        }
        self.clock = Some(now);
        now
    }

    /// Runs `f` on the organization of `org_key` (created on first use), with the settings and
    /// the current instant.
    pub fn with_org<R>(
        &mut self,
        org_key: &str,
        f: impl FnOnce(&mut Org, &Settings, Timestamp) -> R,
    ) -> R {
        let now = self.now();
        let org = self.orgs.entry(org_key.to_owned()).or_default();
        f(org, &self.settings, now)
    }

    /// All organizations.
    pub fn orgs(&self) -> impl Iterator<Item = &Org> {
        self.orgs.values()
    }

    /// Forgets every organization.
    pub fn clear(&mut self) {
        self.orgs.clear();
    }

    /// Serialises the organizations for the state file.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&SnapshotRef {
            version: 1,
            orgs: &self.orgs,
        })
    }

    /// Replaces the organizations with a loaded snapshot.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.orgs = snapshot.orgs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::body::BodyKind;
    use serde_json::{Value, json};

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
            (rev.phase, rev.health.state),
            ("Failed", "CrashLoopBackOff")
        );
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
        assert_eq!(v.current_revision.unwrap().health.state, "ImagePullBackOff");
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
        assert!(matches!(
            org.start_session("nope", t(1)),
            Err(ApiError::NotFound(_))
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
        assert_eq!(v.status, "pending");
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
}
