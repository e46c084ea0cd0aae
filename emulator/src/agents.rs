//! Agents: the `/agents` operations of an organization (list, get, create, update, delete). The
//! agent record, with its deployments pruned to the ones that still matter, is in `org`.

use jiff::Timestamp;
use uuid::Uuid;

use super::assumptions::default_config;
use super::body::AgentPatch;
use super::config::AgentConfig;
use super::deployment::Deployment;
use super::error::ApiError;
use super::org::{Agent, DEFAULT_REGION, Org};
use super::settings::Settings;
use super::views::{AgentListView, AgentView, agent_summary_view, agent_view};

const NO_CHANGE_WARNING: &str = "No changes detected: no new deployment was created. Use \
                                 forceRedeploy to redeploy the same configuration.";

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
        let mut config = AgentConfig::apply(&default_config(), patch)?;
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
        let mut next = AgentConfig::apply(agent.config(), patch)?;
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
