//! Finalizers of any kind, written so that another writer's finalizer is never lost: each
//! patch carries the resourceVersion it was computed from (optimistic concurrency).

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Adds `finalizer` to `obj` (and sets `annotations`, when given) in one merge patch guarded by
/// the resourceVersion `obj` was read at; nothing when the finalizer is there and no
/// annotation is asked for. Returns true when it wrote.
pub async fn add<K>(
    kube: &kube::Client,
    obj: &K,
    finalizer: &str,
    annotations: Option<Value>,
) -> Result<bool, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let has = obj.finalizers().iter().any(|f| f == finalizer);
    if has && annotations.is_none() {
        return Ok(false);
    }
    let mut metadata = json!({"resourceVersion": obj.resource_version()});
    if !has {
        let mut finalizers = obj.finalizers().to_vec();
        finalizers.push(finalizer.to_string());
        metadata["finalizers"] = json!(finalizers);
    }
    if let Some(annotations) = annotations {
        metadata["annotations"] = annotations;
    }
    let api: Api<K> = Api::namespaced(kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({ "metadata": metadata });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}

/// Removes `finalizer` from `obj` (an object already gone is fine).
pub async fn remove<K>(kube: &kube::Client, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(kube.clone(), &obj.namespace().unwrap_or_default());
    remove_finalizer(&api, obj.meta(), finalizer).await
}

/// Removes `finalizer` from the object `meta` describes, through `api` (any kind: agents,
/// secret sets, credentials Secrets), with a merge patch guarded by the resourceVersion the
/// list was computed from, so another writer's finalizer is never lost. An object already gone
/// is fine.
pub async fn remove_finalizer<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    finalizer: &str,
) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let finalizers: Vec<&String> = meta
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": meta.resource_version,
    }});
    let name = meta.name.as_deref().unwrap_or_default();
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
