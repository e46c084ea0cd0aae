//! The cleanup finalizer: added before anything is created or adopted remotely (together with
//! the create marker when a create follows, in one write), removed once the remote agent is
//! deleted (or left, by policy). The patches carry the resourceVersion they were computed from
//! (optimistic concurrency), so another writer's finalizer is never lost.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Error;
use crate::crd::{CREATE_MARKER, FINALIZER, PipecatAgent};

/// True when the resource carries the create marker for `agent`: this resource sent (or was
/// about to send) the create of that agent.
pub fn marked_creating(obj: &PipecatAgent, agent: &str) -> bool {
    obj.annotations().get(CREATE_MARKER).map(String::as_str) == Some(agent)
}

/// Adds the cleanup finalizer and, with `creating`, the create marker for that agent, in one
/// write; nothing when both are there already. Returns true when it wrote.
pub async fn add(
    kube: &kube::Client,
    obj: &PipecatAgent,
    creating: Option<&str>,
    has_finalizer: bool,
) -> Result<bool, Error> {
    let need_marker = creating.is_some_and(|a| !marked_creating(obj, a));
    if has_finalizer && !need_marker {
        return Ok(false);
    }
    let mut metadata = json!({"resourceVersion": obj.resource_version()});
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = obj.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        metadata["finalizers"] = json!(finalizers);
    }
    if let Some(agent) = creating.filter(|_| need_marker) {
        metadata["annotations"] = json!({ CREATE_MARKER: agent });
    }
    patch(kube, obj, metadata)
        .await
        .map_err(|source| Error::Kube {
            action: "add the cleanup finalizer",
            source,
        })?;
    Ok(true)
}

/// Removes the cleanup finalizer (an object already gone is fine).
pub async fn remove(kube: &kube::Client, obj: &PipecatAgent) -> Result<(), Error> {
    let api: Api<PipecatAgent> =
        Api::namespaced(kube.clone(), &obj.namespace().unwrap_or_default());
    remove_finalizer(&api, obj.meta(), FINALIZER)
        .await
        .map_err(|source| Error::Kube {
            action: "remove the cleanup finalizer",
            source,
        })
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

async fn patch(
    kube: &kube::Client,
    obj: &PipecatAgent,
    metadata: Value,
) -> Result<(), kube::Error> {
    let api: Api<PipecatAgent> =
        Api::namespaced(kube.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({ "metadata": metadata });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_names_the_agent_it_was_set_for() {
        let mut a: PipecatAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": "bot", "namespace": "ns"},
            "spec": {"image": "a/b:1"}
        }))
        .unwrap();
        assert!(!marked_creating(&a, "bot"));
        a.annotations_mut()
            .insert(CREATE_MARKER.into(), "bot".into());
        assert!(marked_creating(&a, "bot"));
        assert!(!marked_creating(&a, "other"));
    }
}
