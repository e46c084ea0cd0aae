//! An agent's bodies, built from its deployments at one instant: the agent itself (readiness,
//! conditions, revisions, errors), its deployment and its entry in `GET /agents`.

use jiff::Timestamp;

use super::{
    AgentSummaryView, AgentView, AutoScalingView, ConditionView, DeploymentView, ErrorView,
    HealthView, KrispModelsView, KrispVivaView, ManifestKrispVivaView, ManifestView, MetadataView,
    RevisionView, SpecScalingView, SpecView,
};
use crate::config::AgentConfig;
use crate::deployment::{Deployment, Outcome, current_phase, phase_started_at, previous_phase};
use crate::org::{Agent, Life, Org};
use crate::stamps::format_ts;

/// `GET /agents/{name}`, and the create and update responses.
pub(crate) fn agent_view(org: &Org, agent: &Agent, now: Timestamp) -> AgentView {
    let readiness = Readiness::of(agent, now);
    let life = &readiness.life;
    let desired = life.desired;
    let c = &desired.config;
    let current_health = health(desired, now);
    let conditions = vec![
        available_condition(agent, &readiness),
        progressing_condition(&readiness, &current_health),
        degraded_condition(&readiness, &current_health),
    ];
    let errors = errors(&readiness);
    let current_revision = Some(revision(
        desired,
        current_phase(desired, readiness.desired_active, now),
        current_health,
    ));
    let previous_revision = life.previous.map(|p| {
        let reconciled = life.reconciled.is_some_and(|r| r.id == p.id);
        revision(p, previous_phase(p, reconciled, now), health(p, now))
    });

    let desired_id = desired.id.to_string();
    AgentView {
        name: agent.name.clone(),
        ready: readiness.ready(),
        created_at: format_ts(agent.created_at),
        updated_at: format_ts(agent.updated_at),
        active_deployment_id: desired_id.clone(),
        active_deployment_ready: readiness.desired_active,
        auto_scaling: auto_scaling(c),
        active_session_count: u32::try_from(agent.live_sessions(now)).unwrap_or(u32::MAX),
        deployment: Some(deployment_view(org, agent, desired)),
        region: agent.region.clone(),
        available: readiness.available,
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

/// An entry of `GET /agents`; `include_deployment` adds the desired deployment.
pub(crate) fn agent_summary_view(
    org: &Org,
    agent: &Agent,
    include_deployment: bool,
    now: Timestamp,
) -> AgentSummaryView {
    let desired = agent.desired().id.to_string();
    AgentSummaryView {
        id: agent.id.to_string(),
        name: agent.name.clone(),
        region: agent.region.clone(),
        active_deployment_id: desired.clone(),
        desired_deployment_id: desired,
        reconciled_deployment_id: agent.reconciled_id(now),
        organization_id: org.id.to_string(),
        created_at: format_ts(agent.created_at),
        updated_at: format_ts(agent.updated_at),
        deleted_at: None,
        deployment: include_deployment.then(|| deployment_view(org, agent, agent.desired())),
    }
}

/// What an agent's readiness fields say, computed once from the deployments that matter.
struct Readiness<'a> {
    life: Life<'a>,
    /// The desired deployment is the reconciled one (`activeDeploymentReady`).
    desired_active: bool,
    /// The desired deployment's failure shows.
    desired_failed: bool,
    /// Some reconciled deployment serves sessions (`available`).
    available: bool,
}

impl<'a> Readiness<'a> {
    fn of(agent: &'a Agent, now: Timestamp) -> Self {
        let life = agent.life(now);
        Self {
            desired_active: life.reconciled.is_some_and(|r| r.id == life.desired.id),
            desired_failed: life.desired.failed(now),
            available: life.reconciled.is_some(),
            life,
        }
    }

    /// `ready`: true once the desired deployment is active, false once it failed, and until
    /// then whatever the reconciled (previous) deployment says.
    fn ready(&self) -> bool {
        if self.desired_active {
            true
        } else if self.desired_failed {
            false
        } else {
            self.available
        }
    }
}

/// The `Available` condition: whether some deployment serves sessions.
fn available_condition(agent: &Agent, readiness: &Readiness<'_>) -> ConditionView {
    let available = readiness.available;
    ConditionView {
        kind: "Available",
        status: if available { "True" } else { "False" },
        reason: if available {
            "MinimumReplicasAvailable"
        } else {
            "NoReadyDeployment"
        },
        message: match readiness.life.reconciled {
            Some(r) => format!("deployment {} serves sessions", r.id),
            None => format!("no deployment of agent {} is ready yet", agent.name),
        },
    }
}

/// The `Progressing` condition: the desired deployment failed, is active or is rolling out.
fn progressing_condition(readiness: &Readiness<'_>, current_health: &HealthView) -> ConditionView {
    let desired = readiness.life.desired;
    if readiness.desired_failed {
        ConditionView {
            kind: "Progressing",
            status: "False",
            reason: "DeploymentFailed",
            message: format!(
                "deployment {} failed: {}",
                desired.id, current_health.headline
            ),
        }
    } else if readiness.desired_active {
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
    }
}

/// The `Degraded` condition: true, with the container's state, when the desired deployment
/// failed.
fn degraded_condition(readiness: &Readiness<'_>, current_health: &HealthView) -> ConditionView {
    if readiness.desired_failed {
        ConditionView {
            kind: "Degraded",
            status: "True",
            reason: current_health.reason.unwrap_or(current_health.state),
            message: current_health.message.clone().unwrap_or_default(),
        }
    } else {
        ConditionView {
            kind: "Degraded",
            status: "False",
            reason: "AsExpected",
            message: String::new(),
        }
    }
}

/// `errors`: one entry, with the platform's code, when the desired deployment failed.
fn errors(readiness: &Readiness<'_>) -> Vec<ErrorView> {
    if !readiness.desired_failed {
        return Vec::new();
    }
    let desired = readiness.life.desired;
    let c = &desired.config;
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
}

/// `autoScaling` of the desired configuration.
fn auto_scaling(c: &AgentConfig) -> AutoScalingView {
    AutoScalingView {
        concurrency: 1,
        max_replicas: c.max_agents,
        min_replicas: c.min_agents,
        scale_to_zero_time: "5m",
    }
}

/// `deployment`: the manifest the platform runs for `d`.
fn deployment_view(org: &Org, agent: &Agent, d: &Deployment) -> DeploymentView {
    let c = &d.config;
    DeploymentView {
        id: d.id.to_string(),
        manifest: ManifestView {
            api_version: "pipecatcloud.daily.co/v1",
            kind: "PCService",
            metadata: MetadataView {
                name: agent.name.clone(),
                namespace: org.namespace.clone(),
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
                krisp_models: KrispModelsView { enabled: false },
                krisp_viva: ManifestKrispVivaView {
                    audio_filters: c.krisp_viva.is_some(),
                },
                agent_profile: c.agent_profile.clone(),
                max_session_duration_seconds: c.max_session_duration,
            },
        },
        service_id: agent.id.to_string(),
        created_at: format_ts(d.created_at),
        updated_at: format_ts(d.created_at),
    }
}

/// `currentRevision` / `previousRevision`: deployment `d` in `phase`.
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

/// A revision's `health`: starting, running, crashing or failing to pull. `state` is the
/// contract's `running` or `waiting` (a crashing container waits to restart, as in Kubernetes);
/// `reason` names the Kubernetes-like reason.
fn health(d: &Deployment, now: Timestamp) -> HealthView {
    if !d.started(now) {
        return HealthView {
            ready: false,
            state: "waiting",
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
            state: "running",
            restart_count: 0,
            replicas_started: d.config.min_agents.max(1),
            reason: None,
            last_exit_code: None,
            last_termination_reason: None,
            message: None,
            headline: "The agent is running".to_owned(),
        },
        Outcome::Crash => {
            let restarts = d.crash_restarts(now);
            HealthView {
                ready: false,
                state: "waiting",
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
            state: "waiting",
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
