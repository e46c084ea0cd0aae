//! The credentials Secret outlives the remote objects it must delete: while a resource with
//! `deletionPolicy: Delete` manages a remote object with a Secret's key, that Secret carries its
//! controller's in-use finalizer (one per kind: each controller releases only its own).
//! Deleting the Secret (or its whole namespace) then waits until those remote objects are
//! deleted from Pipecat Cloud, and the operator removes the finalizer once no such resource
//! uses the Secret any more. The state lives in the finalizers themselves, so an operator
//! restart in the middle changes nothing. [`SecretMarks`] is the mechanism; each kind's
//! `credentials` module says which of its resources need a key.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Mutex;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::info;

use super::credentials::SecretLocation;

/// One controller's in-use finalizer, and the Secrets known to carry it (from this process's
/// writes and the Secret watch).
pub struct SecretMarks {
    finalizer: &'static str,
    secrets: Mutex<HashSet<(String, String)>>,
}

impl SecretMarks {
    /// Marks with `finalizer`.
    pub fn new(finalizer: &'static str) -> Self {
        SecretMarks {
            finalizer,
            secrets: Mutex::default(),
        }
    }

    fn contains(&self, ns: &str, name: &str) -> bool {
        self.secrets
            .lock()
            .expect("marked secrets lock")
            .contains(&(ns.to_string(), name.to_string()))
    }

    fn set(&self, ns: &str, name: &str, marked: bool) {
        let mut s = self.secrets.lock().expect("marked secrets lock");
        let key = (ns.to_string(), name.to_string());
        if marked {
            s.insert(key);
        } else {
            s.remove(&key);
        }
    }

    fn carried_by(&self, finalizers: &[String]) -> bool {
        finalizers.iter().any(|f| f == self.finalizer)
    }

    /// The Secret watch saw this Secret: records whether it carries the finalizer. True when it
    /// is being deleted while carrying it (time to check whether it is still in use).
    pub fn observed(&self, ns: &str, name: &str, finalizers: &[String], deleting: bool) -> bool {
        let has = self.carried_by(finalizers);
        self.set(ns, name, has);
        has && deleting
    }

    /// Puts the finalizer on the Secret at `loc` unless it is known to be there.
    pub async fn ensure(&self, kube: &kube::Client, loc: &SecretLocation) -> kube::Result<()> {
        if self.contains(&loc.namespace, &loc.name) {
            return Ok(());
        }
        let api: Api<Secret> = Api::namespaced(kube.clone(), &loc.namespace);
        // Resources sharing a Secret mark it concurrently: a lost race (409) is read again.
        for attempt in 0.. {
            let meta = api.get_metadata(&loc.name).await?;
            let mut finalizers = meta.finalizers().to_vec();
            if self.carried_by(&finalizers) {
                break;
            }
            finalizers.push(self.finalizer.to_string());
            let patch = json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": meta.resource_version(),
            }});
            match api
                .patch(&loc.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    info!(
                        secret = %format!("{}/{}", loc.namespace, loc.name),
                        finalizer = self.finalizer,
                        "credentials Secret marked in use"
                    );
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < 4 => continue,
                Err(e) => return Err(e),
            }
        }
        self.set(&loc.namespace, &loc.name, true);
        Ok(())
    }

    /// Removes the finalizer from the Secret `namespace/name` when no resource of kind `K` in
    /// `scopes` (every namespace when empty) still `needs` its key.
    pub async fn release_if_unused<K>(
        &self,
        kube: &kube::Client,
        scopes: &[String],
        (namespace, name): (&str, &str),
        needs: impl Fn(&K) -> bool,
    ) -> kube::Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let apis: Vec<Api<K>> = if scopes.is_empty() {
            vec![Api::all(kube.clone())]
        } else {
            scopes
                .iter()
                .map(|ns| Api::namespaced(kube.clone(), ns))
                .collect()
        };
        for api in apis {
            if api
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .any(&needs)
            {
                return Ok(());
            }
        }
        let secrets: Api<Secret> = Api::namespaced(kube.clone(), namespace);
        let Some(meta) = secrets.get_metadata_opt(name).await? else {
            self.set(namespace, name, false);
            return Ok(());
        };
        if self.carried_by(meta.finalizers()) {
            super::finalizer::remove_finalizer(&secrets, &meta.metadata, self.finalizer).await?;
            info!(
                secret = %format!("{namespace}/{name}"),
                finalizer = self.finalizer,
                "credentials Secret no longer in use: finalizer removed"
            );
        }
        self.set(namespace, name, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CREDENTIALS_FINALIZER;
    use crate::crd::secret_set::SET_CREDENTIALS_FINALIZER;

    fn agent_marks() -> SecretMarks {
        SecretMarks::new(CREDENTIALS_FINALIZER)
    }

    #[test]
    fn the_watch_keeps_the_marks_and_flags_a_secret_deleted_in_use() {
        let m = agent_marks();
        let fin = vec![CREDENTIALS_FINALIZER.to_string()];
        assert!(!m.observed("ns", "key", &fin, false));
        assert!(m.contains("ns", "key"));
        assert!(
            m.observed("ns", "key", &fin, true),
            "deleted while in use: check"
        );
        assert!(!m.observed("ns", "key", &[], true), "nothing of ours on it");
        assert!(!m.contains("ns", "key"));
    }

    #[test]
    fn each_controller_sees_only_its_own_finalizer() {
        let sets = SecretMarks::new(SET_CREDENTIALS_FINALIZER);
        let agents_only = vec![CREDENTIALS_FINALIZER.to_string()];
        assert!(!sets.observed("ns", "key", &agents_only, true), "not ours");
        assert!(!sets.contains("ns", "key"));
        assert!(agent_marks().observed("ns", "key", &agents_only, true));
    }
}
