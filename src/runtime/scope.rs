//! What one release of the operator watches: all namespaces or those of `--namespace`, and
//! only the resources matching `--label-selector` (to shard a cluster across releases). Every
//! kind is scoped the same way ([`Scope`]); kinds that are read, not reconciled (Secrets), are
//! watched by namespace only.

use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::Config;

/// The namespaces watched, each as the controllers of every kind run them: `None` is all.
pub fn namespaces(config: &Config) -> Vec<Option<String>> {
    if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    }
}

/// One scope: a namespace (or all) and the label selector of the reconciled kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The namespace (`None`: all).
    pub namespace: Option<String>,
    /// The label selector of the reconciled kinds (`None`: every object).
    pub selector: Option<String>,
}

impl Scope {
    /// Every scope of `config`.
    pub fn all(config: &Config) -> Vec<Scope> {
        namespaces(config)
            .into_iter()
            .map(|namespace| Scope {
                namespace,
                selector: config.label_selector.clone(),
            })
            .collect()
    }

    /// The API of kind `K` in this scope's namespace (or all).
    pub fn api<K>(&self, client: &kube::Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        api(client, self.namespace.as_deref())
    }

    /// The watch of a reconciled kind in this scope: its label selector applies.
    pub fn reconciled(&self) -> watcher::Config {
        let cfg = watcher::Config::default().any_semantic();
        match &self.selector {
            Some(sel) => cfg.labels(sel),
            None => cfg,
        }
    }

    /// The watch of a kind read by the reconciled ones (Secrets): the whole namespace.
    pub fn read(&self) -> watcher::Config {
        watcher::Config::default().any_semantic()
    }
}

/// The API of kind `K` in `namespace`, or in all namespaces when `None`.
pub fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// What the watch caches of an object, without what no pass reads: `managedFields` (nearly
/// half of each object), the labels (the label selector is applied by the API server; no pass
/// reads one), owner references, and every annotation but the operator's own (`kubectl
/// apply`'s copy of the whole spec, tools' tracking notes). Passes read the name, namespace,
/// uid, generation, resourceVersion (the finalizer patch's precondition), creation time
/// (ownership), finalizers, deletion time, the operator's annotations (the create marker),
/// the spec and the status.
pub fn trim_cached<K: ResourceExt>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|k, _| own(k));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// True for an annotation of the operator's own (`pipecat.daily.co/...`).
fn own(annotation: &str) -> bool {
    annotation
        .strip_prefix(crate::crd::GROUP)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The annotation `kubectl apply` keeps its last applied configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CREATE_MARKER, PipecatAgent};

    #[test]
    fn a_selector_applies_to_reconciled_kinds_only() {
        let config = Config {
            namespaces: vec!["a".into(), "b".into()],
            label_selector: Some("shard=1".into()),
            ..Config::default()
        };
        let scopes = Scope::all(&config);
        assert_eq!(
            scopes
                .iter()
                .map(|s| s.namespace.as_deref())
                .collect::<Vec<_>>(),
            [Some("a"), Some("b")]
        );
        assert_eq!(
            scopes[0].reconciled().label_selector.as_deref(),
            Some("shard=1")
        );
        assert_eq!(scopes[0].read().label_selector, None);
        assert_eq!(namespaces(&Config::default()), [None]);
    }

    #[test]
    fn the_cache_keeps_what_passes_read_and_drops_the_rest() {
        let mut a: PipecatAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {
                "name": "a", "namespace": "ns",
                "annotations": {
                    LAST_APPLIED: "{\"spec\":{\"image\":\"a/b:1\"}}",
                    "argocd.argoproj.io/tracking-id": "app:pipecat.daily.co/PipecatAgent:ns/a",
                    CREATE_MARKER: "a",
                },
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u"}],
                "finalizers": ["pipecat.daily.co/cleanup"],
                "uid": "u1", "generation": 3, "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"image": "a/b:1"}
        }))
        .unwrap();
        let before = a.clone();
        trim_cached(&mut a);
        assert!(a.managed_fields().is_empty());
        assert!(a.labels().is_empty() && a.owner_references().is_empty());
        assert_eq!(
            a.annotations().keys().collect::<Vec<_>>(),
            [CREATE_MARKER],
            "the create marker stays (passes read it), nothing else"
        );
        // What passes read is untouched.
        assert_eq!(a.spec, before.spec);
        for (what, kept, was) in [
            ("name", a.meta().name.clone(), before.meta().name.clone()),
            ("uid", a.meta().uid.clone(), before.meta().uid.clone()),
            (
                "resourceVersion",
                a.meta().resource_version.clone(),
                before.meta().resource_version.clone(),
            ),
        ] {
            assert_eq!(kept, was, "{what}");
        }
        assert_eq!(a.metadata.generation, Some(3));
        assert_eq!(a.finalizers(), before.finalizers());
        assert_eq!(
            a.metadata.creation_timestamp,
            before.metadata.creation_timestamp
        );
        let mut bare = PipecatAgent::new("b", before.spec.clone());
        bare.annotations_mut()
            .insert(LAST_APPLIED.into(), "{}".into());
        trim_cached(&mut bare);
        assert!(bare.metadata.annotations.is_none(), "no empty map kept");
    }
}
