//! The credentials Secret outlives the agents it must delete: while a `PipecatAgent` with
//! `deletionPolicy: Delete` manages a remote agent with a Secret's key, that Secret carries the
//! finalizer `pipecat.daily.co/credentials-in-use`. Deleting the Secret (or its whole namespace)
//! then waits until those agents are deleted from Pipecat Cloud, and the operator removes the
//! finalizer once no such agent uses the Secret any more. The state lives in the finalizers
//! themselves, so an operator restart in the middle changes nothing.

use std::collections::HashSet;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::info;

use super::credentials::{self, SecretLocation};
use super::{Context, Error};
use crate::crd::{CREDENTIALS_FINALIZER, DeletionPolicy, FINALIZER, PipecatAgent};

/// The Secrets known to carry the finalizer (from this process's writes and the Secret watch).
#[derive(Default)]
pub struct Marked {
    secrets: Mutex<HashSet<(String, String)>>,
}

impl Marked {
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

    /// The Secret watch saw this Secret: records whether it carries the finalizer. True when it
    /// is being deleted while carrying it (time to check whether it is still in use).
    pub fn observed(&self, ns: &str, name: &str, finalizers: &[String], deleting: bool) -> bool {
        let has = finalizers.iter().any(|f| f == CREDENTIALS_FINALIZER);
        self.set(ns, name, has);
        has && deleting
    }
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

/// Puts the finalizer on the Secret at `loc` unless it is known to be there.
pub async fn ensure(ctx: &Context, loc: &SecretLocation) -> Result<(), Error> {
    if ctx.marked.contains(&loc.namespace, &loc.name) {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), &loc.namespace);
    let kube_err = |source| Error::Kube {
        action: "mark the credentials Secret as in use",
        source,
    };
    // Agents sharing a Secret mark it concurrently: a lost race (409) is read again.
    for attempt in 0.. {
        let meta = api.get_metadata(&loc.name).await.map_err(kube_err)?;
        let mut finalizers = meta.finalizers().to_vec();
        if finalizers.iter().any(|f| f == CREDENTIALS_FINALIZER) {
            break;
        }
        finalizers.push(CREDENTIALS_FINALIZER.to_string());
        let patch = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": meta.resource_version(),
        }});
        match api
            .patch(&loc.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                info!(secret = %format!("{}/{}", loc.namespace, loc.name), "credentials Secret marked in use");
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 4 => continue,
            Err(e) => return Err(kube_err(e)),
        }
    }
    ctx.marked.set(&loc.namespace, &loc.name, true);
    Ok(())
}

/// Removes the finalizer from the Secret `namespace/name` when no resource with
/// `deletionPolicy: Delete` still needs its key (`leaving`: a resource whose cleanup just
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
    let scopes: Vec<Api<PipecatAgent>> = if ctx.config.namespaces.is_empty() {
        vec![Api::all(ctx.kube.clone())]
    } else {
        ctx.config
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.kube.clone(), ns))
            .collect()
    };
    let kube_err = |source| Error::Kube {
        action: "release the credentials Secret",
        source,
    };
    for api in scopes {
        let agents = api.list(&ListParams::default()).await.map_err(kube_err)?;
        let in_use = agents
            .items
            .iter()
            .any(|a| leaving.is_none_or(|l| l.uid() != a.uid()) && uses(a, &loc, ctx));
        if in_use {
            return Ok(());
        }
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), namespace);
    let Some(meta) = secrets.get_metadata_opt(name).await.map_err(kube_err)? else {
        ctx.marked.set(namespace, name, false);
        return Ok(());
    };
    if meta.finalizers().iter().any(|f| f == CREDENTIALS_FINALIZER) {
        crate::controller::finalizer::remove_finalizer(
            &secrets,
            &meta.metadata,
            CREDENTIALS_FINALIZER,
        )
        .await
        .map_err(kube_err)?;
        info!(secret = %format!("{namespace}/{name}"), "credentials Secret no longer in use: finalizer removed");
    }
    ctx.marked.set(namespace, name, false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_keeps_the_marks_and_flags_a_secret_deleted_in_use() {
        let m = Marked::default();
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
}
