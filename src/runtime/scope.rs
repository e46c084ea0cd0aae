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
/// half of each object) and the copy of the whole spec `kubectl apply` keeps in an annotation.
pub fn trim_cached<K: ResourceExt>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    obj.annotations_mut().remove(LAST_APPLIED);
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
                    CREATE_MARKER: "a",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"image": "a/b:1"}
        }))
        .unwrap();
        trim_cached(&mut a);
        assert!(a.managed_fields().is_empty());
        assert!(!a.annotations().contains_key(LAST_APPLIED));
        assert_eq!(
            a.annotations().get(CREATE_MARKER).map(String::as_str),
            Some("a"),
            "the create marker stays: passes read it"
        );
    }
}
