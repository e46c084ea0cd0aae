//! Deletion: with `deletionPolicy: Delete` the remote agent is deleted (a 404 counts as done)
//! before the finalizer goes; with `Orphan` it is left alone. Only the agent name and the
//! credentials are needed, so a bad spec never blocks deletion.

use kube::ResourceExt;

use super::context::Context;
use super::error::Error;
use super::events;
use super::pass::{OrphanReason, Outcome};
use super::{credentials, finalizer, ownership};
use crate::cloud;
use crate::crd::{DeletionPolicy, FINALIZER, PipecatAgent};
use crate::runtime::events::Note;

/// Cleans up a resource being deleted; `None` when there was nothing to do (the finalizer is
/// already gone).
pub async fn cleanup(obj: &PipecatAgent, ctx: &Context) -> Result<Option<Outcome>, Error> {
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(None);
    }
    let status = ctx.objects.status(obj);
    let name = status
        .agent_name
        .clone()
        .unwrap_or_else(|| obj.agent_name().to_string());
    // Only an agent this resource created (or was about to) or adopted is ever deleted.
    let ours = status.applied_config_hash.is_some() || ctx.objects.marked_creating(obj, &name);
    let outcome = release(obj, ctx, &name, ours).await?;
    if let Some(note) = events::action(&outcome, &name, None) {
        ctx.events.publish(obj, note);
    }
    finalizer::remove(&ctx.kube, obj).await?;
    // The credentials Secret may go once no resource needs its key to delete an agent.
    let loc = credentials::locate(obj, &ctx.config.default_credentials);
    credentials::release_if_unused(ctx, &loc.namespace, &loc.name, Some(obj)).await?;
    Ok(Some(outcome))
}

/// Deletes or leaves the remote agent `name`; `ours`: this resource created or adopted it.
async fn release(
    obj: &PipecatAgent,
    ctx: &Context,
    name: &str,
    ours: bool,
) -> Result<Outcome, Error> {
    if obj.spec.deletion_policy == DeletionPolicy::Orphan {
        return Ok(Outcome::Orphaned(OrphanReason::Policy));
    }
    if !ours {
        // Never created nor adopted here: an agent of that name is someone else's.
        return Ok(Outcome::NothingToDelete);
    }
    let loc = credentials::locate(obj, &ctx.config.default_credentials);
    let key = match ctx.keys.resolve(&ctx.kube, &loc).await {
        Ok(key) => key,
        Err(err) => {
            ctx.events.publish(
                obj,
                Note {
                    warning: true,
                    reason: "DeleteBlocked".into(),
                    message: format!(
                        "cannot delete agent {name} from Pipecat Cloud: {err}; restore the credentials, or set spec.deletionPolicy: Orphan to let the resource go"
                    ),
                },
            );
            return Err(err.into());
        }
    };
    if let Some(owner) = ownership::owner(ctx, obj, &loc, &key).await? {
        return Ok(Outcome::Orphaned(OrphanReason::OwnedBy(format!(
            "{}/{}",
            owner.namespace(),
            owner.name()
        ))));
    }
    match ctx.cloud.delete_agent(&key, name).await {
        Ok(()) | Err(cloud::Error::NotFound { .. }) => Ok(Outcome::Deleted),
        Err(source) => {
            let err = Error::cloud("delete", name, source);
            ctx.events.publish(
                obj,
                Note {
                    warning: true,
                    reason: "DeleteFailed".into(),
                    message: err.to_string(),
                },
            );
            Err(err)
        }
    }
}
