//! Agents: the `/agents` operations of an organization (list, get, create, update, delete) and
//! an agent's deployments, pruned to the ones that still matter.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::AgentPatch;
use super::config::AgentConfig;
use super::deployment::Deployment;
use super::error::ApiError;
use super::org::{DEFAULT_REGION, Org};
use super::sessions::Session;
use super::state::{Settings, uuid_text};
use super::views::{AgentListView, AgentView, agent_summary_view, agent_view};

const NO_CHANGE_WARNING: &str = "No changes detected: no new deployment was created. Use \
                                 forceRedeploy to redeploy the same configuration.";

/// An agent (a "service").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    #[serde(with = "uuid_text")]
    pub(super) id: Uuid,
    pub(super) name: String,
    pub(super) region: String,
    pub(super) created_at: Timestamp,
    pub(super) updated_at: Timestamp,
    /// Oldest first, never empty; the last one is the desired deployment. Pruned to the ones
    /// that still matter (reconciled, previous, desired).
    pub(super) deployments: Vec<Deployment>,
    pub(super) sessions: Vec<Session>,
}

/// The deployments that matter at one instant.
pub(super) struct Life<'a> {
    pub(super) desired: &'a Deployment,
    pub(super) previous: Option<&'a Deployment>,
    pub(super) reconciled: Option<&'a Deployment>,
}

impl Agent {
    pub(super) fn desired(&self) -> &Deployment {
        self.deployments
            .last()
            .expect("an agent always has a deployment")
    }

    pub(super) fn config(&self) -> &AgentConfig {
        &self.desired().config
    }

    pub(super) fn life(&self, now: Timestamp) -> Life<'_> {
        let n = self.deployments.len();
        Life {
            desired: &self.deployments[n - 1],
            previous: n.checked_sub(2).map(|i| &self.deployments[i]),
            reconciled: self.deployments.iter().rev().find(|d| d.reconciled(now)),
        }
    }

    pub(super) fn push_deployment(&mut self, deployment: Deployment, now: Timestamp) {
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

    pub(super) fn reconciled_id(&self, now: Timestamp) -> Option<String> {
        self.life(now).reconciled.map(|d| d.id.to_string())
    }

    /// Whether sessions can start: some reconciled deployment serves traffic.
    pub(super) fn available(&self, now: Timestamp) -> bool {
        self.life(now).reconciled.is_some()
    }
}

impl Org {
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
                .map(|a| agent_summary_view(self, a, include_deployment, now))
                .collect(),
        }
    }

    /// `GET /agents/{name}`.
    pub fn get_agent(&self, name: &str, now: Timestamp) -> Result<AgentView, ApiError> {
        let agent = self.agents.get(name).ok_or_else(ApiError::not_found)?;
        Ok(agent_view(self, agent, now))
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
        settings.check_region(&region)?;
        let mut config = AgentConfig::apply(None, patch)?;
        settings.profile.normalise(&mut config);
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
        let view = agent_view(self, &agent, now);
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
        let mut next = AgentConfig::apply(Some(agent.config()), patch)?;
        settings.profile.normalise(&mut next);
        if next == *agent.config() && !patch.force_redeploy {
            let mut view = agent_view(self, agent, now);
            view.warning = Some(NO_CHANGE_WARNING.to_owned());
            return Ok(view);
        }
        self.check_bindings(&next, &agent.region, now)?;
        let agent = self.agents.get_mut(name).ok_or_else(ApiError::not_found)?;
        agent.push_deployment(Deployment::new(next, settings, now), now);
        let agent = &self.agents[name];
        Ok(agent_view(self, agent, now))
    }

    /// `DELETE /agents/{name}`.
    pub fn delete_agent(&mut self, name: &str) -> Result<(), ApiError> {
        self.agents
            .remove(name)
            .map(drop)
            .ok_or_else(ApiError::not_found)
    }
}
