//! The emulator's state: every organization, the run-time settings (`settings`) and the
//! clock, and the shape of the state file. The logic is pure and split by what it acts on
//! (`org`, `agents`, `config`, `deployment`, `sessions`, `secret_sets`; bodies in `views`):
//! nothing does I/O or reads the clock, every operation takes `now`.

use std::collections::HashMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::org::Org;
use super::settings::Settings;

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
mod tests;
