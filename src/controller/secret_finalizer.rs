//! The credentials Secret outlives the remote objects it must delete: while a resource with
//! `deletionPolicy: Delete` manages a remote object with a Secret's key, that Secret carries its
//! controller's in-use finalizer (`pipecat.daily.co/credentials-in-use` for `PipecatAgent`s,
//! [`crate::crd::secret_set::SET_CREDENTIALS_FINALIZER`] for `PipecatSecretSet`s: each
//! controller releases only its own). Deleting the Secret (or its whole namespace) then waits
//! until those remote objects are deleted from Pipecat Cloud, and the operator removes the
//! finalizer once no such resource uses the Secret any more. The state lives in the finalizers
//! themselves, so an operator restart in the middle changes nothing.
//!
//! [`SecretMarks`] is the mechanism, shared by both controllers; this module's functions are
//! the agents' use of it (the sets' is `secret_sets::credentials_finalizer`).

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

use super::credentials::{self, SecretLocation};
use super::{Context, Error};
use crate::crd::{CREDENTIALS_FINALIZER, DeletionPolicy, FINALIZER, PipecatAgent};

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

/// The agents' marks.
pub fn agent_marks() -> SecretMarks {
    SecretMarks::new(CREDENTIALS_FINALIZER)
}

/// True when `agent` may still need the key at `loc` to delete its remote agent.
pub fn uses(agent: &PipecatAgent, loc: &SecretLocation, ctx: &Context) -> bool {
    agent.spec.deletion_policy == DeletionPolicy::Delete
        && agent.finalizers().iter().any(|f| f == FINALIZER)
        && {
            let l = credentials::locate(agent, &ctx.config.default_credentials);
            l.namespace == loc.namespace && l.name == loc.name
        }
}

/// Puts the agents' finalizer on the Secret at `loc` unless it is known to be there.
pub async fn ensure(ctx: &Context, loc: &SecretLocation) -> Result<(), Error> {
    ctx.marked
        .ensure(&ctx.kube, loc)
        .await
        .map_err(|source| Error::Kube {
            action: "mark the credentials Secret as in use",
            source,
        })
}

/// Removes the agents' finalizer from the Secret `namespace/name` when no agent with
/// `deletionPolicy: Delete` still needs its key (`leaving`: an agent whose cleanup just
/// finished, not counted).
pub async fn release_if_unused(
    ctx: &Context,
    namespace: &str,
    name: &str,
    leaving: Option<&PipecatAgent>,
) -> Result<(), Error> {
    let loc = SecretLocation {
        namespace: namespace.to_string(),
        name: name.to_string(),
        key: String::new(),
    };
    let needs = |a: &PipecatAgent| leaving.is_none_or(|l| l.uid() != a.uid()) && uses(a, &loc, ctx);
    ctx.marked
        .release_if_unused(&ctx.kube, &ctx.config.namespaces, (namespace, name), needs)
        .await
        .map_err(|source| Error::Kube {
            action: "release the credentials Secret",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let sets = SecretMarks::new(crate::crd::secret_set::SET_CREDENTIALS_FINALIZER);
        let agents_only = vec![CREDENTIALS_FINALIZER.to_string()];
        assert!(!sets.observed("ns", "key", &agents_only, true), "not ours");
        assert!(!sets.contains("ns", "key"));
        assert!(agent_marks().observed("ns", "key", &agents_only, true));
    }
}
