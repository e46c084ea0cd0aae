//! The observe step of a secret set's pass: the values its Secret gives the set, with their
//! digest ([`Observed`]), and the remote set as Pipecat Cloud reports it ([`remote_set`]).

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::desired::{DesiredValues, desired_values};
use super::digest::digest;
use super::error::Error;
use super::pass::{Remote, RemoteStatus};
use crate::cloud::{ApiKey, ErrorKind};
use crate::crd::secret_set::PipecatSecretSet;

/// What a pass observed.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The values the set must hold, from the Secret.
    pub values: DesiredValues,
    /// Their key names (none for an image-pull set).
    pub names: Vec<String>,
    /// Digest of the values.
    pub digest: String,
    /// How many values the Secret gives the set.
    pub count: usize,
    /// The remote set (`None`: it does not exist), with no value in its error message.
    pub remote: Option<Remote>,
}

/// The observe step: reads the Secret of `obj` into the values the set `set` must hold and
/// their digest, then the remote set.
pub async fn observe(
    obj: &PipecatSecretSet,
    ctx: &Context,
    key: &ApiKey,
    set: &str,
) -> Result<Observed, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let secret_name = &obj.spec.secret_ref.name;
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), &namespace);
    let secret = secrets
        .get_opt(secret_name)
        .await
        .map_err(|source| Error::Kube {
            action: "read the Secret of the values",
            source,
        })?
        .ok_or_else(|| {
            Error::invalid(
                "SecretNotFound",
                format!(
                    "Secret {secret_name} does not exist in namespace {namespace}: create it with the values (the set is created as soon as it exists)"
                ),
            )
        })?;
    let values = desired_values(&obj.spec, &secret)?;
    let names = values.names();
    let digest = digest(ctx.digest_key().await?, &values);
    let count = match &values {
        DesiredValues::Env(v) => v.len(),
        DesiredValues::ImagePull { .. } => 1,
    };
    let mut remote = remote_set(ctx, key, set).await?;
    // Pipecat's own words go to the status: never with a value in them.
    if let Some(r) = remote.as_mut() {
        r.error_message = r.error_message.take().map(|m| values.redact(m));
    }
    Ok(Observed {
        values,
        names,
        digest,
        count,
        remote,
    })
}

/// The remote set (`None` when it does not exist): its key names from `GET /secrets/{set}`,
/// its state from the same answer or, when that only lists keys, from `GET /secrets`.
pub async fn remote_set(ctx: &Context, key: &ApiKey, set: &str) -> Result<Option<Remote>, Error> {
    let detail = match ctx.cloud.get_secret_set(key, set).await {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::cloud("read", set, e)),
    };
    let summary = match detail.summary {
        Some(s) => Some(s),
        None => ctx
            .cloud
            .list_secret_sets(key)
            .await
            .map_err(|e| Error::cloud("list", set, e))?
            .into_iter()
            .find(|s| s.name == set),
    };
    let Some(summary) = summary else {
        return Ok(None);
    };
    Ok(Some(Remote {
        kind: summary.kind,
        region: summary.region,
        status: RemoteStatus::parse(summary.status.as_deref()),
        error_message: summary.error_message,
        keys: detail.keys,
    }))
}
