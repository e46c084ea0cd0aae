//! Regions (`GET /regions`): a region, how the command line writes one (`CODE=Name`) and the
//! contract's example list, the default.

use serde::{Deserialize, Serialize};

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
