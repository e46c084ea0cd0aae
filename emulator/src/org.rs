//! One organization: what one API key sees (its agents and secret sets, under a namespace of
//! its own). Its operations live beside what they act on: `agents`, `secret_sets`, `sessions`.

use std::collections::HashMap;

use jiff::Timestamp;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::agents::Agent;
use super::secret_sets::SecretSet;
use super::state::uuid_text;

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
