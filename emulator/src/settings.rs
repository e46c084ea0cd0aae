//! The run-time settings: delays, failure patterns, the response profile and the regions the
//! organizations may use; the admin API changes the first three at run time.

use std::time::Duration;

use super::assumptions::Profile;
use super::error::ApiError;
use super::pattern::Pattern;
use super::regions::{Region, default_regions};

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
