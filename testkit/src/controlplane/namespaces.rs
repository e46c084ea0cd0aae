//! Deleting a namespace for real (the controller-manager's namespace controller empties it) and
//! saying what is left in it when it does not go away.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Client, ResourceExt};

use super::ControlPlane;
use super::startup::check_running;

impl ControlPlane {
    /// Deletes namespace `ns` and waits up to `timeout` until it is gone. Already gone counts as
    /// done, already terminating as deleted. On timeout the error says what keeps it: the
    /// namespace controller's conditions that are true (content or finalizers remaining, deletion
    /// failures), each object still in it with its finalizers and deletion time, and whether the
    /// controller-manager still runs. Call it inside a tokio runtime.
    pub async fn delete_namespace(&self, ns: &str, timeout: Duration) -> Result<(), String> {
        let client = self.client();
        let api = Api::<Namespace>::all(client.clone());
        match api.delete(ns, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            // Already terminating: "the system is ensuring all content is removed".
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(format!("deleting namespace {ns}: {e}")),
        }
        let deadline = Instant::now() + timeout;
        loop {
            let last = match api.get_opt(ns).await {
                Ok(None) => return Ok(()),
                Ok(Some(namespace)) => Ok(namespace),
                // Transient (e.g. an apiserver restart): retried until the deadline.
                Err(e) => Err(e.to_string()),
            };
            if Instant::now() >= deadline {
                return Err(match last {
                    Ok(namespace) => self.describe_left(&client, &namespace, timeout).await,
                    Err(e) => format!("namespace {ns}: still not gone after {timeout:?}: {e}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn describe_left(
        &self,
        client: &Client,
        namespace: &Namespace,
        waited: Duration,
    ) -> String {
        let ns = namespace.name_any();
        let status = namespace.status.as_ref();
        let mut out = format!(
            "namespace {ns} still exists {waited:?} after its deletion (phase {})",
            status.and_then(|s| s.phase.as_deref()).unwrap_or("?")
        );
        let controller_manager =
            check_running(&self.inner.controller_manager, "kube-controller-manager")
                .err()
                .unwrap_or_else(|| "kube-controller-manager is running".to_string());
        let _ = write!(out, "; {controller_manager}");
        let spec_finalizers = namespace
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if !spec_finalizers.is_empty() || !namespace.finalizers().is_empty() {
            let _ = write!(
                out,
                "\nnamespace finalizers: spec {spec_finalizers:?}, metadata {:?}",
                namespace.finalizers()
            );
        }
        // The namespace controller's conditions that report a problem or something remaining.
        let conditions = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten();
        for c in conditions.filter(|c| c.status == "True") {
            let _ = write!(
                out,
                "\n  {}: {}",
                c.type_,
                c.message.as_deref().unwrap_or("")
            );
        }
        match objects_in(client, &ns).await {
            Ok(left) if left.is_empty() => out.push_str("\nno objects left in it"),
            Ok(left) => {
                out.push_str("\nleft in it:");
                for line in left {
                    let _ = write!(out, "\n  {line}");
                }
            }
            Err(e) => {
                let _ = write!(out, "\n(listing what is left in it failed: {e})");
            }
        }
        out
    }
}

/// Every object in namespace `ns`, of every listable namespaced resource type (`events` left
/// out), as `resource.group/name` with its finalizers and deletion timestamp.
async fn objects_in(client: &Client, ns: &str) -> Result<Vec<String>, String> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| format!("discovery: {e}"))?;
    let mut left = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || resource.plural == "events"
            {
                continue;
            }
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource);
            let list = match api.list_metadata(&ListParams::default()).await {
                Ok(list) => list,
                Err(e) => {
                    left.push(format!("{}: listing failed: {e}", resource.plural));
                    continue;
                }
            };
            let kind = if resource.group.is_empty() {
                resource.plural.clone()
            } else {
                format!("{}.{}", resource.plural, resource.group)
            };
            for object in list.items {
                let mut line = format!("{kind}/{}", object.name_any());
                if !object.finalizers().is_empty() {
                    let _ = write!(line, " finalizers {:?}", object.finalizers());
                }
                if let Some(ts) = &object.metadata.deletion_timestamp {
                    let _ = write!(line, " (deleting since {})", ts.0);
                }
                left.push(line);
            }
        }
    }
    left.sort();
    Ok(left)
}
