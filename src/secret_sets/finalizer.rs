//! The cleanup finalizer of a `PipecatSecretSet`: added before the remote set is created or
//! adopted, removed once it is deleted (or left, by policy) and no agent uses it any more. The
//! patches carry the resourceVersion they were computed from, so another writer's finalizer is
//! never lost.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::Error;
use crate::controller::finalizer;
use crate::crd::secret_set::{PipecatSecretSet, SECRET_SET_FINALIZER};

/// True when the object carries the finalizer.
pub fn present(obj: &PipecatSecretSet) -> bool {
    obj.finalizers().iter().any(|f| f == SECRET_SET_FINALIZER)
}

/// Adds the finalizer.
pub async fn add(kube: &kube::Client, obj: &PipecatSecretSet) -> Result<(), Error> {
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(SECRET_SET_FINALIZER.to_string());
    let metadata = json!({"finalizers": finalizers, "resourceVersion": obj.resource_version()});
    patch(kube, obj, metadata)
        .await
        .map_err(|source| Error::Kube {
            action: "add the cleanup finalizer",
            source,
        })
}

/// Removes the finalizer (an object already gone is fine).
pub async fn remove(kube: &kube::Client, obj: &PipecatSecretSet) -> Result<(), Error> {
    let api: Api<PipecatSecretSet> =
        Api::namespaced(kube.clone(), &obj.namespace().unwrap_or_default());
    finalizer::remove_finalizer(&api, obj.meta(), SECRET_SET_FINALIZER)
        .await
        .map_err(|source| Error::Kube {
            action: "remove the cleanup finalizer",
            source,
        })
}

async fn patch(
    kube: &kube::Client,
    obj: &PipecatSecretSet,
    metadata: Value,
) -> Result<(), kube::Error> {
    let api: Api<PipecatSecretSet> =
        Api::namespaced(kube.clone(), &obj.namespace().unwrap_or_default());
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({ "metadata": metadata })),
    )
    .await?;
    Ok(())
}
