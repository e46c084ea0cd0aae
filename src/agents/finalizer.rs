//! The cleanup finalizer of a `PipecatAgent`: added before anything is created or adopted
//! remotely (together with the create marker when a create follows, in one write), removed
//! once the remote agent is deleted (or left, by policy). Written through
//! [`crate::runtime::finalizer`].

use kube::ResourceExt;
use serde_json::json;

use super::Error;
use crate::crd::{CREATE_MARKER, FINALIZER, PipecatAgent};
use crate::runtime::finalizer;

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
    let marker = creating
        .filter(|_| need_marker)
        .map(|agent| json!({ CREATE_MARKER: agent }));
    finalizer::add(kube, obj, FINALIZER, marker)
        .await
        .map_err(|source| Error::Kube {
            action: "add the cleanup finalizer",
            source,
        })
}

/// Removes the cleanup finalizer (an object already gone is fine).
pub async fn remove(kube: &kube::Client, obj: &PipecatAgent) -> Result<(), Error> {
    finalizer::remove(kube, obj, FINALIZER)
        .await
        .map_err(|source| Error::Kube {
            action: "remove the cleanup finalizer",
            source,
        })
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
