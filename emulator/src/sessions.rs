//! Sessions: `POST /public/{agent}/start` fills an agent's pool up to `maxAgents`; each session
//! expires after `maxSessionDuration`, and the admin API lists and ends them.

use std::time::Duration;

use jiff::Timestamp;
use uuid::Uuid;

use super::error::ApiError;
use super::org::{Org, Session};
use super::stamps::{after, format_ts};

impl Org {
    /// `POST /public/{name}/start`. An unknown agent is a 400: the contract lists 200, 400 and
    /// 401 only for this operation.
    pub fn start_session(&mut self, name: &str, now: Timestamp) -> Result<Uuid, ApiError> {
        let agent = self.agents.get_mut(name).ok_or_else(|| {
            ApiError::bad_request(format!("agent {name:?} not found: no session can start"))
        })?;
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
}
