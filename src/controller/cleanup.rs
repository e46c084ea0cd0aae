//! Deletion: with `deletionPolicy: Delete` the remote agent is deleted (a 404 counts as done)
//! before the finalizer goes; with `Orphan` it is left alone. Only the agent name and the
//! credentials are needed, so a bad spec never blocks deletion.

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::info;

use super::{Context, Error, ReconcileResult, credentials, ownership};
use crate::cloud;
use crate::crd::{DeletionPolicy, FINALIZER, PipecatAgent};

/// Cleans up a resource being deleted.
pub async fn cleanup(obj: &PipecatAgent, ctx: &Context) -> ReconcileResult {
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let status = ctx.written.status(obj);
    let name = status
        .agent_name
        .clone()
        .unwrap_or_else(|| obj.agent_name().to_string());
    let ns = obj.namespace().unwrap_or_default();
    match obj.spec.deletion_policy {
        DeletionPolicy::Orphan => {
            info!(agent = %name, namespace = %ns, decision = "orphaned", "leaving the remote agent in place");
            ctx.event(
                obj,
                EventType::Normal,
                "Orphaned",
                format!("deletionPolicy is Orphan: agent {name} was left in Pipecat Cloud"),
            );
        }
        DeletionPolicy::Delete => {
            let loc = credentials::locate(obj, &ctx.config.default_credentials);
            let resolved = ctx.keys.resolve(&ctx.kube, &loc).await;
            let owner = match &resolved {
                Ok(key) => ownership::owner(ctx, obj, &loc, key).await?,
                Err(_) => None,
            };
            match resolved {
                Ok(_) if owner.is_some() => {
                    let owner = owner.expect("checked");
                    info!(agent = %name, namespace = %ns, decision = "orphaned", owner = %format!("{}/{}", owner.namespace, owner.name), "agent belongs to an older resource; not deleting it");
                    ctx.event(
                        obj,
                        EventType::Normal,
                        "Orphaned",
                        format!(
                            "agent {name} belongs to PipecatAgent {}/{}: it was not deleted",
                            owner.namespace, owner.name
                        ),
                    );
                }
                Ok(key) => match ctx.cloud.delete_agent(&key, &name).await {
                    Ok(()) | Err(cloud::Error::NotFound { .. }) => {
                        info!(agent = %name, namespace = %ns, decision = "deleted", "deleted the remote agent");
                        ctx.event(
                            obj,
                            EventType::Normal,
                            "Deleted",
                            format!("deleted agent {name} from Pipecat Cloud"),
                        );
                    }
                    Err(source) => {
                        let err = Error::Cloud {
                            action: "delete",
                            agent: name.clone(),
                            source,
                        };
                        ctx.event(obj, EventType::Warning, "DeleteFailed", err.to_string());
                        return Err(err);
                    }
                },
                Err(err) if status.applied_config_hash.is_none() => {
                    // Without credentials nothing was ever created: nothing to delete.
                    info!(agent = %name, namespace = %ns, decision = "deleted", reason = %err, "no remote agent was ever created");
                }
                Err(err) => {
                    ctx.event(
                        obj,
                        EventType::Warning,
                        "DeleteBlocked",
                        format!(
                            "cannot delete agent {name} from Pipecat Cloud: {err}; restore the credentials, or set spec.deletionPolicy: Orphan to let the resource go"
                        ),
                    );
                    return Err(err);
                }
            }
        }
    }
    remove_finalizer(obj, ctx).await?;
    ctx.backoff.forget(&ObjectRef::from_obj(obj));
    ctx.written.forget(obj);
    Ok(Action::await_change())
}

async fn remove_finalizer(obj: &PipecatAgent, ctx: &Context) -> Result<(), Error> {
    let finalizers: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let api: Api<PipecatAgent> =
        Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}
    });
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Already gone.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Kube {
            action: "remove the cleanup finalizer",
            source,
        }),
    }
}
