//! Deletion of a `PipecatSecretSet`: held while any `PipecatAgent` uses the set
//! ([`agent_uses_set`]; the status and an event name them), then `deletionPolicy: Delete`
//! deletes the remote set (404 is done) and `Orphan` leaves it; then the finalizer goes. Only
//! a set this resource created or adopted (`status.setName`) is ever deleted. A bad Secret
//! never blocks deletion: only the set name and the API key are needed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::info;

use super::context::Context;
use super::error::Error;
use super::pass::Note;
use super::{credentials, finalizer, report};
use crate::cloud::ErrorKind;
use crate::crd::DeletionPolicy;
use crate::crd::PipecatAgent;
use crate::crd::secret_set::{PipecatSecretSet, agent_uses_set};
use crate::jitter::jitter;
use crate::runtime::conditions::{CondState, SYNCED, set_condition};

/// Reason of `Synced=False` while agents hold the deletion.
pub const IN_USE: &str = "InUse";

/// The agents (`namespace/name`, sorted) that use the set, in the watched namespaces.
pub async fn users(obj: &PipecatSecretSet, ctx: &Context) -> Result<Vec<String>, Error> {
    let scopes: Vec<Option<&str>> = if ctx.config.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config
            .namespaces
            .iter()
            .map(|n| Some(n.as_str()))
            .collect()
    };
    let mut users = Vec::new();
    for scope in scopes {
        let api: Api<PipecatAgent> = match scope {
            Some(ns) => Api::namespaced(ctx.kube.clone(), ns),
            None => Api::all(ctx.kube.clone()),
        };
        let agents = api
            .list(&ListParams::default())
            .await
            .map_err(|source| Error::Kube {
                action: "list the PipecatAgents that may use the set",
                source,
            })?;
        users.extend(
            agents
                .items
                .iter()
                .filter(|a| agent_uses_set(a, obj))
                .map(|a| format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any())),
        );
    }
    users.sort();
    users.dedup();
    Ok(users)
}

/// Runs the deletion of a resource.
pub async fn release(obj: &PipecatSecretSet, ctx: &Context) -> Result<Action, Error> {
    if !finalizer::present(obj) || ctx.objects.is_released(obj) {
        return Ok(Action::await_change());
    }
    let set = obj.managed_set_name().to_string();
    let users = users(obj, ctx).await?;
    if !users.is_empty() {
        let old = ctx.objects.status(obj);
        let mut new = old.clone();
        let message = format!(
            "deletion waits: secret set {set} is still used by PipecatAgent {}; delete those agents or point their secretSet/imagePullSecretSet elsewhere",
            users.join(", ")
        );
        set_condition(
            &mut new.conditions,
            SYNCED,
            CondState::fail(IN_USE, message.clone()),
            obj.metadata.generation,
            &Time(jiff::Timestamp::now()),
        );
        if new != old || ctx.objects.unwritten(obj) {
            ctx.objects.status_pending(obj, &new);
            report::write(&ctx.kube, obj, &new).await?;
            ctx.objects.status_written(obj, &new);
            ctx.publish(
                obj,
                Note {
                    warning: true,
                    reason: "DeletionBlocked".into(),
                    message,
                },
            );
            info!(set = %set, namespace = obj.namespace().unwrap_or_default(), agents = %users.join(","), "deletion held: agents use the set");
        }
        ctx.metrics.secret_set_reconciled("held");
        // The agents' watch brings it back as soon as one changes; this is the safety net.
        return Ok(Action::requeue(jitter(ctx.config.resync_interval, 0.1)));
    }
    let managed = obj
        .status
        .as_ref()
        .and_then(|s| s.set_name.as_ref())
        .is_some()
        || ctx.objects.status(obj).set_name.is_some();
    // (the `result` label, what the log says)
    let (result, decision) = match obj.spec.deletion_policy {
        DeletionPolicy::Delete if managed => {
            let (_, key) = credentials::resolve(obj, ctx).await?;
            match ctx.cloud.delete_secret_set(&key, &set).await {
                Ok(()) => ("deleted", "deleted"),
                Err(e) if e.kind() == ErrorKind::NotFound => ("deleted", "deleted"),
                Err(e) => return Err(Error::cloud("delete", &set, e)),
            }
        }
        DeletionPolicy::Delete => ("left", "left (not created or adopted by this resource)"),
        DeletionPolicy::Orphan => ("orphaned", "orphaned"),
    };
    finalizer::remove(&ctx.kube, obj).await?;
    let loc = credentials::location(obj, ctx);
    if let Err(e) = credentials::release_if_unused(ctx, &loc.namespace, &loc.name, Some(obj)).await
    {
        // The Secret's deletion checks again (watch); nothing is lost by going on.
        tracing::warn!(error = %e, "failed to release the credentials Secret");
    }
    info!(set = %set, namespace = obj.namespace().unwrap_or_default(), decision, "released the secret set");
    ctx.objects.released(obj);
    ctx.metrics.secret_set_reconciled(result);
    Ok(Action::await_change())
}
