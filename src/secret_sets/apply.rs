//! The remote part of a live pass: resolve the key, read the Secret into the values the set
//! must hold and their digest, read the remote set, [`plan`], and carry the plan out (at most
//! one write to Pipecat Cloud per pass).

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use tracing::info;

use super::context::Context;
use super::desired::desired_values;
use super::digest::digest;
use super::error::Error;
use super::pass::{Outcome, Remote, RemoteStatus, Synced};
use super::plan::{Last, Plan, Wanted, plan};
use super::{credentials, finalizer, report};
use crate::cloud::{self, ApiKey, ErrorKind};
use crate::crd::DeletionPolicy;
use crate::crd::secret_set::{PipecatSecretSet, PipecatSecretSetStatus};

/// The remote set (`None` when it does not exist): its key names from `GET /secrets/{set}`,
/// its state from the same answer or, when that only lists keys, from `GET /secrets`.
pub async fn observe(ctx: &Context, key: &ApiKey, set: &str) -> Result<Option<Remote>, Error> {
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

/// Runs the pass for a live resource. `old` is the status it starts from.
pub async fn sync(
    obj: &PipecatSecretSet,
    ctx: &Context,
    old: &PipecatSecretSetStatus,
) -> Result<Synced, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let set = old
        .set_name
        .clone()
        .unwrap_or_else(|| obj.set_name().to_string());
    let region = old
        .region
        .clone()
        .or_else(|| obj.spec.region.clone())
        .unwrap_or_else(|| crate::crd::secret_set::DEFAULT_REGION.to_string());
    let (_, key) = credentials::resolve(obj, ctx).await?;
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
        super::desired::DesiredValues::Env(v) => v.len(),
        super::desired::DesiredValues::ImagePull { .. } => 1,
    };
    let mut remote = observe(ctx, &key, &set).await?;
    // Pipecat's own words go to the status: never with a value in them.
    if let Some(r) = remote.as_mut() {
        r.error_message = r.error_message.take().map(|m| values.redact(m));
    }
    let managed = old.set_name.is_some();
    let wanted = Wanted {
        set: &set,
        type_: obj.spec.type_,
        region: &region,
        names: &names,
        digest: &digest,
        adopt: obj.spec.adopt,
    };
    let last = Last {
        managed,
        digest: old.values_digest.as_deref(),
        resent_for: old
            .resent_for
            .as_ref()
            .map(|r| (r.values_digest.as_str(), r.remote_keys.as_slice())),
    };
    let decided = plan(&wanted, &last, remote.as_ref())?;
    if managed && obj.spec.deletion_policy == DeletionPolicy::Delete {
        // Known from the Secret watch: no request once marked.
        credentials::ensure(ctx, &credentials::location(obj, ctx)).await?;
    }
    let done = |outcome, managed| Synced {
        set: set.clone(),
        region: region.clone(),
        managed,
        remote: remote.clone(),
        outcome,
        digest: digest.clone(),
        count,
    };
    match decided {
        Plan::Wait => Ok(done(Outcome::Waited, managed)),
        Plan::InSync => Ok(done(Outcome::Nothing, managed)),
        Plan::NotConverging { missing, .. } => {
            Ok(done(Outcome::NotConverging { missing }, managed))
        }
        Plan::DeleteKey(k) => match ctx.cloud.delete_secret(&key, &set, &k).await {
            Ok(()) => {
                info!(set = %set, namespace = %namespace, key = %k, "removed a key that left the Secret");
                Ok(done(Outcome::DeletedKey(k), managed))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(done(Outcome::DeletedKey(k), managed)),
            Err(e) if e.kind() == ErrorKind::Conflict => Ok(done(Outcome::Waited, managed)),
            Err(e) => Err(Error::cloud("remove a key of", &set, e)),
        },
        Plan::Put { create, adopt } => {
            claim(obj, ctx, old, &set, &region).await?;
            let region_field = create.then(|| region.clone());
            let req = values.request(region_field);
            match ctx.cloud.put_secret_set(&key, &set, &req).await {
                Ok(_) => {
                    info!(set = %set, namespace = %namespace, created = create, adopted = adopt, "sent the values of the Secret");
                    Ok(done(
                        Outcome::Put {
                            created: create,
                            adopted: adopt,
                        },
                        true,
                    ))
                }
                // Still provisioning a change (ours or someone's): wait, never resend blindly.
                Err(e) if e.kind() == ErrorKind::Conflict => Ok(done(Outcome::Waited, true)),
                Err(e) => Err(put_error(&set, e)),
            }
        }
    }
}

/// Before the first write to a set: the finalizer, and `status.setName` (so that a crash
/// right after the `PUT` still finds the set to be its own, not someone else's to adopt).
async fn claim(
    obj: &PipecatSecretSet,
    ctx: &Context,
    old: &PipecatSecretSetStatus,
    set: &str,
    region: &str,
) -> Result<(), Error> {
    if !finalizer::present(obj) && !ctx.objects.has_finalizer(obj) {
        finalizer::add(&ctx.kube, obj).await?;
        ctx.objects.finalizer_added(obj);
    }
    if obj.spec.deletion_policy == DeletionPolicy::Delete {
        credentials::ensure(ctx, &credentials::location(obj, ctx)).await?;
    }
    if old.set_name.is_none() {
        let mut claimed = old.clone();
        claimed.set_name = Some(set.to_string());
        claimed.region = Some(region.to_string());
        ctx.objects.status_pending(obj, &claimed);
        report::write(&ctx.kube, obj, &claimed).await?;
        ctx.objects.status_written(obj, &claimed);
    }
    Ok(())
}

fn put_error(set: &str, e: cloud::Error) -> Error {
    Error::cloud("send the values of", set, e)
}
