//! Secret sets: the `/secrets` operations, and the check that the sets an agent names are
//! usable (the records and their provisioning status are in `org`). Values are never kept,
//! only field names.

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::body::SecretSetBody;
use super::config::AgentConfig;
use super::error::ApiError;
use super::org::{DEFAULT_REGION, Org, SecretKind, SecretSet, SetStatus};
use super::settings::Settings;
use super::stamps::after;
use super::views::{
    SecretSetAcceptedView, SecretSetDetailView, SecretSetListView, secret_set_detail_view,
    secret_set_view,
};

impl Org {
    /// `GET /secrets`.
    pub fn list_secret_sets(&self, region: Option<&str>, now: Timestamp) -> SecretSetListView {
        let mut sets: Vec<&SecretSet> = self
            .secret_sets
            .values()
            .filter(|s| region.is_none_or(|r| s.region == r))
            .collect();
        sets.sort_by(|a, b| a.name.cmp(&b.name));
        SecretSetListView {
            sets: sets.into_iter().map(|s| secret_set_view(s, now)).collect(),
        }
    }

    /// `GET /secrets/{set}`.
    pub fn get_secret_set(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<SecretSetDetailView, ApiError> {
        let set = self
            .secret_sets
            .get(name)
            .ok_or_else(|| set_not_found(name))?;
        Ok(secret_set_detail_view(set, now))
    }

    /// `PUT /secrets/{set}`: creates or changes a set; it is pending until provisioned. The
    /// answer only says the change was accepted, and in which region.
    pub fn put_secret_set(
        &mut self,
        name: &str,
        body: SecretSetBody,
        settings: &Settings,
        now: Timestamp,
    ) -> Result<SecretSetAcceptedView, ApiError> {
        let (kind, region) = match &body {
            SecretSetBody::Secrets { region, .. } => (SecretKind::Secret, region.clone()),
            SecretSetBody::ImagePull { region, .. } => {
                (SecretKind::ImagePullSecret, region.clone())
            }
        };
        if let Some(region) = &region {
            settings.check_region(region)?;
        }
        let failure = settings
            .secret_fail
            .as_ref()
            .filter(|p| p.is_match(name))
            .map(|_| format!("provisioning of secret set {name:?} failed (emulated failure)"));
        let ready_at = after(now, settings.secret_ready_delay);
        if let Some(set) = self.secret_sets.get_mut(name) {
            if set.status(now) == SetStatus::Pending {
                return Err(ApiError::Conflict(format!(
                    "secret set {name:?} is still provisioning a previous change; retry when \
                     its status is ready"
                )));
            }
            if set.kind != kind {
                return Err(ApiError::bad_request(format!(
                    "secret set {name:?} is of type {}, not {}",
                    set.kind.as_str(),
                    kind.as_str()
                )));
            }
            if let Some(region) = region.filter(|r| *r != set.region) {
                return Err(ApiError::bad_request(format!(
                    "region cannot be changed: secret set {name:?} is in {:?}, not {region:?}",
                    set.region
                )));
            }
            match body {
                SecretSetBody::Secrets { keys, .. } => set.keys.extend(keys),
                SecretSetBody::ImagePull { host, .. } => set.host = Some(host),
            }
            set.updated_at = now;
            set.ready_at = ready_at;
            set.failure = failure;
            return Ok(accepted(set));
        }
        let (keys, host) = match body {
            SecretSetBody::Secrets { keys, .. } => (keys.into_iter().collect(), None),
            SecretSetBody::ImagePull { host, .. } => (BTreeSet::new(), Some(host)),
        };
        let set = SecretSet {
            name: name.to_owned(),
            kind,
            region: region.unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            keys,
            host,
            updated_at: now,
            ready_at,
            failure,
        };
        let view = accepted(&set);
        self.secret_sets.insert(name.to_owned(), set);
        Ok(view)
    }

    /// `DELETE /secrets/{set}`.
    pub fn delete_secret_set(&mut self, name: &str, now: Timestamp) -> Result<(), ApiError> {
        let set = self
            .secret_sets
            .get(name)
            .ok_or_else(|| set_not_found(name))?;
        if set.status(now) == SetStatus::Pending {
            return Err(ApiError::Conflict(format!(
                "secret set {name:?} is still provisioning; retry when its status is ready"
            )));
        }
        self.secret_sets.remove(name);
        Ok(())
    }

    /// `DELETE /secrets/{set}/{key}`.
    pub fn delete_secret(
        &mut self,
        name: &str,
        key: &str,
        settings: &Settings,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let set = self
            .secret_sets
            .get_mut(name)
            .ok_or_else(|| set_not_found(name))?;
        if set.status(now) == SetStatus::Pending {
            return Err(ApiError::Conflict(format!(
                "secret set {name:?} is still provisioning; retry when its status is ready"
            )));
        }
        // An image pull set has no keys: any key is not found (the contract lists no 400 here).
        if set.kind == SecretKind::ImagePullSecret || !set.keys.remove(key) {
            return Err(ApiError::NotFound(format!(
                "secret {key:?} not found in secret set {name:?}"
            )));
        }
        set.updated_at = now;
        set.ready_at = after(now, settings.secret_ready_delay);
        Ok(())
    }

    /// Whether the secret sets `config` names exist in `region`, are of the right kind and
    /// are ready (create and update refuse an agent otherwise).
    pub(super) fn check_bindings(
        &self,
        config: &AgentConfig,
        region: &str,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let bindings = [
            (
                "secretSet",
                config.secret_set.as_deref(),
                SecretKind::Secret,
            ),
            (
                "imagePullSecretSet",
                config.image_pull_secret_set.as_deref(),
                SecretKind::ImagePullSecret,
            ),
        ];
        for (field, name, kind) in bindings {
            let Some(name) = name else { continue };
            let set = self
                .secret_sets
                .get(name)
                .filter(|s| s.region == region)
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "{field}: secret set {name:?} not found in region {region:?}"
                    ))
                })?;
            if set.kind != kind {
                return Err(ApiError::bad_request(format!(
                    "{field}: secret set {name:?} is of type {}, expected {}",
                    set.kind.as_str(),
                    kind.as_str()
                )));
            }
            match set.status(now) {
                SetStatus::Ready => {}
                SetStatus::Pending => {
                    return Err(ApiError::Conflict(format!(
                        "{field}: secret set {name:?} is still provisioning; retry when its \
                         status is ready"
                    )));
                }
                SetStatus::Failed => {
                    return Err(ApiError::bad_request(format!(
                        "{field}: secret set {name:?} failed to provision: {}",
                        set.failure.as_deref().unwrap_or("unknown error")
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The 202 answer of `PUT /secrets/{set}`.
fn accepted(set: &SecretSet) -> SecretSetAcceptedView {
    SecretSetAcceptedView {
        status: "OK",
        region: set.region.clone(),
    }
}

fn set_not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("secret set {name:?} not found"))
}
