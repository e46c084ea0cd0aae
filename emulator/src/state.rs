//! The emulator's state: every organization, the run-time settings and the clock, and the
//! shape of the state file. The logic is pure and split by what it acts on (`org`, `agents`,
//! `config`, `deployment`, `sessions`, `secret_sets`; bodies in `views`): nothing does I/O or
//! reads the clock, every operation takes `now`.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::assumptions::Profile;
use super::error::ApiError;
use super::org::Org;
use super::pattern::Pattern;

/// Delays, failure patterns, the response profile and the regions; the admin API changes the
/// first three at run time.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How agent reads and writes answer, and what the server stores.
    pub profile: Profile,
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
    /// The regions the organizations may use (`GET /regions`).
    pub regions: Vec<Region>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            profile: Profile::default(),
            ready_delay: Duration::ZERO,
            reconcile_delay: Duration::ZERO,
            secret_ready_delay: Duration::ZERO,
            crash_image: None,
            pull_fail_image: None,
            secret_fail: None,
            regions: default_regions(),
        }
    }
}

impl Settings {
    /// A 400 unless `region` is one of the regions, as the API words it.
    pub(super) fn check_region(&self, region: &str) -> Result<(), ApiError> {
        if self.regions.iter().any(|r| r.code == region) {
            Ok(())
        } else {
            Err(ApiError::bad_request(
                "Invalid region or organization does not have access",
            ))
        }
    }
}

/// A region (`GET /regions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// `us-west`, ...
    pub code: String,
    /// `US West (Oregon)`, ...
    pub display_name: String,
}

impl Region {
    /// A region from `CODE` or `CODE=Display name` (the code is the display name when none is
    /// given).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (code, name) = match text.split_once('=') {
            Some((code, name)) => (code.trim(), name.trim()),
            None => (text.trim(), text.trim()),
        };
        if code.is_empty() || name.is_empty() {
            return Err(format!("expected CODE or CODE=NAME, got {text:?}"));
        }
        Ok(Self {
            code: code.to_owned(),
            display_name: name.to_owned(),
        })
    }
}

/// The regions of the contract's `GET /regions` example.
pub fn default_regions() -> Vec<Region> {
    [
        ("us-west", "US West (Oregon)"),
        ("us-east", "US East (Virginia)"),
        ("eu-central", "Europe (Frankfurt)"),
        ("ap-south", "Asia Pacific (Mumbai)"),
    ]
    .into_iter()
    .map(|(code, name)| Region {
        code: code.to_owned(),
        display_name: name.to_owned(),
    })
    .collect()
}

/// Uuids as strings in the state file (the `uuid` crate is built without serde here).
pub(super) mod uuid_text {
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

/// `t + d`, saturating at the end of time.
pub(super) fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// API timestamps: RFC 3339, milliseconds, `Z`.
pub fn format_ts(t: Timestamp) -> String {
    format!("{t:.3}")
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
mod tests;
