//! The cleanup finalizer: added before anything is created remotely, removed once the remote
//! agent is deleted (or left, by policy). Both patches carry the resourceVersion they were
//! computed from (optimistic concurrency), so another writer's finalizer is never lost.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::Error;
use crate::crd::{FINALIZER, PipecatAgent};

/// Adds the cleanup finalizer unless the object already carries it.
pub async fn add(kube: &kube::Client, obj: &PipecatAgent) -> Result<(), Error> {
    if obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    patch(kube, obj, finalizers.iter().collect())
        .await
        .map_err(|source| Error::Kube {
            action: "add the cleanup finalizer",
            source,
        })
}

/// Removes the cleanup finalizer (an object already gone is fine).
pub async fn remove(kube: &kube::Client, obj: &PipecatAgent) -> Result<(), Error> {
    let finalizers: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    match patch(kube, obj, finalizers).await {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Kube {
            action: "remove the cleanup finalizer",
            source,
        }),
    }
}

async fn patch(
    kube: &kube::Client,
    obj: &PipecatAgent,
    finalizers: Vec<&String>,
) -> Result<(), kube::Error> {
    let api: Api<PipecatAgent> =
        Api::namespaced(kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
