//! A deployment's lifecycle, computed from its timestamps when it is read (so idle agents cost
//! nothing).
//!
//! Lifecycle of a deployment created at `t` (delays from [`Settings`]):
//! - its pods are ready at `t + readyDelay` (or, for a failing image, the failure shows then);
//! - it is reconciled at `t + max(reconcileDelay, readyDelay)`, unless a newer deployment
//!   replaced it first (the platform moves on to the newest desired deployment);
//! - `ready` describes the reconciled deployment until the newest one is reconciled or fails,
//!   so right after an update it still describes the previous deployment.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::config::AgentConfig;
use super::settings::Settings;
use super::stamps::{after, uuid_text};

/// Seconds between two restarts of a crashing container (drives `restartCount`).
const CRASH_RESTART_EVERY_SECS: i64 = 10;

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
    pub(super) id: Uuid,
    pub(super) created_at: Timestamp,
    pub(super) ready_at: Timestamp,
    pub(super) reconcile_at: Timestamp,
    pub(super) superseded_at: Option<Timestamp>,
    pub(super) outcome: Outcome,
    pub(super) config: AgentConfig,
}

impl Deployment {
    pub(super) fn new(config: AgentConfig, settings: &Settings, now: Timestamp) -> Self {
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

    pub(super) fn started(&self, now: Timestamp) -> bool {
        now > self.created_at && now >= self.ready_at
    }

    pub(super) fn pods_ready(&self, now: Timestamp) -> bool {
        self.outcome == Outcome::Healthy && self.started(now)
    }

    pub(super) fn failed(&self, now: Timestamp) -> bool {
        self.outcome != Outcome::Healthy && self.started(now)
    }

    pub(super) fn reconciled(&self, now: Timestamp) -> bool {
        self.outcome == Outcome::Healthy
            && now > self.created_at
            && now >= self.reconcile_at
            && self.superseded_at.is_none_or(|s| self.reconcile_at <= s)
    }

    /// How many times a crashing container has restarted by `now` (one at the failure, then
    /// one every [`CRASH_RESTART_EVERY_SECS`]).
    pub(super) fn crash_restarts(&self, now: Timestamp) -> i64 {
        let since = now.duration_since(self.ready_at).as_secs().max(0);
        1 + since / CRASH_RESTART_EVERY_SECS
    }
}

/// The phase of the desired deployment (`currentRevision.phase`); `active` when it is the
/// reconciled one.
pub(super) fn current_phase(d: &Deployment, active: bool, now: Timestamp) -> &'static str {
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

/// The phase of the deployment before the desired one (`previousRevision.phase`); `reconciled`
/// when it still serves sessions.
pub(super) fn previous_phase(d: &Deployment, reconciled: bool, now: Timestamp) -> &'static str {
    if d.failed(now) {
        "Failed"
    } else if reconciled {
        "Active"
    } else {
        "Draining"
    }
}

/// When a deployment entered `phase`.
pub(super) fn phase_started_at(d: &Deployment, phase: &str) -> Timestamp {
    match phase {
        "Creating" => d.created_at,
        "Validating" | "Failed" => d.ready_at,
        "Active" => d.reconcile_at,
        _ => d.superseded_at.unwrap_or(d.reconcile_at),
    }
}
