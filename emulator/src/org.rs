//! One organization: what one API key sees (its agents and secret sets, under a namespace of
//! its own), and the records it keeps: agents with their deployments and sessions, secret sets
//! with their provisioning status. Its operations live beside what they act on: `agents`,
//! `secret_sets`, `sessions`.

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::config::AgentConfig;
use super::deployment::Deployment;
use super::stamps::uuid_text;

/// Region of agents and secret sets created without one.
pub const DEFAULT_REGION: &str = "us-west";

/// One organization: what one API key sees.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Org {
    #[serde(with = "uuid_text")]
    pub(super) id: Uuid,
    pub(super) namespace: String,
    pub(super) agents: HashMap<String, Agent>,
    pub(super) secret_sets: HashMap<String, SecretSet>,
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
}

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

    /// Sessions not yet expired at `now`.
    pub(super) fn live_sessions(&self, now: Timestamp) -> usize {
        self.sessions.iter().filter(|s| s.expires_at > now).count()
    }
}

/// A running session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[serde(with = "uuid_text")]
    pub(super) id: Uuid,
    pub(super) started_at: Timestamp,
    pub(super) expires_at: Timestamp,
}

/// A secret set; values are never kept, only field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSet {
    pub(super) name: String,
    pub(super) kind: SecretKind,
    pub(super) region: String,
    pub(super) keys: BTreeSet<String>,
    pub(super) host: Option<String>,
    pub(super) updated_at: Timestamp,
    pub(super) ready_at: Timestamp,
    pub(super) failure: Option<String>,
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
    pub(super) fn as_str(self) -> &'static str {
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
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }
}

impl SecretSet {
    pub(super) fn status(&self, now: Timestamp) -> SetStatus {
        if !(now > self.updated_at && now >= self.ready_at) {
            SetStatus::Pending
        } else if self.failure.is_some() {
            SetStatus::Failed
        } else {
            SetStatus::Ready
        }
    }
}
