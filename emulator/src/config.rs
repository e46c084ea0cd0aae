//! An agent's configuration: a checked request body applied over the previous configuration
//! (or the defaults), with the rules that span several fields.

use serde::{Deserialize, Serialize};

use super::body::{AgentPatch, Field};
use super::error::ApiError;

/// The configuration of one deployment, the body fields after defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    pub(super) image: Option<String>,
    pub(super) build_id: Option<String>,
    pub(super) node_type: String,
    pub(super) image_pull_secret_set: Option<String>,
    pub(super) secret_set: Option<String>,
    pub(super) min_agents: u32,
    pub(super) max_agents: u32,
    pub(super) krisp_viva: Option<String>,
    pub(super) agent_profile: String,
    pub(super) max_session_duration: u32,
}

impl AgentConfig {
    /// Applies a checked body over `base` (the previous configuration, or
    /// `assumptions::default_config` for a new agent) and checks the combined rules.
    pub(super) fn apply(base: &AgentConfig, patch: &AgentPatch) -> Result<Self, ApiError> {
        let mut c = base.clone();
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
    pub(super) fn artifact(&self) -> &str {
        self.image
            .as_deref()
            .or(self.build_id.as_deref())
            .unwrap_or_default()
    }
}
