//! The credentials Secret outlives the sets it must delete: while a `PipecatSecretSet` with
//! `deletionPolicy: Delete` manages a remote set with a Secret's key, that Secret carries the
//! finalizer [`SET_CREDENTIALS_FINALIZER`] (the agents' own is separate: each controller
//! releases only its own). Deleting the Secret, or its whole namespace, then waits until those
//! sets are deleted from Pipecat Cloud. The state lives in the finalizers themselves.

use std::collections::HashSet;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::info;

use super::{Context, Error, finalizer};
use crate::controller::credentials::{self, SecretLocation};
use crate::crd::DeletionPolicy;
use crate::crd::secret_set::{PipecatSecretSet, SET_CREDENTIALS_FINALIZER};

/// The Secrets known to carry the finalizer (this process's writes and the Secret watch).
#[derive(Default)]
pub struct Marked(Mutex<HashSet<(String, String)>>);

impl Marked {
    fn contains(&self, ns: &str, name: &str) -> bool {
        let key = (ns.to_string(), name.to_string());
        self.0.lock().expect("marked lock").contains(&key)
    }

    fn set(&self, ns: &str, name: &str, marked: bool) {
        let key = (ns.to_string(), name.to_string());
        let mut s = self.0.lock().expect("marked lock");
        if marked {
            s.insert(key);
        } else {
            s.remove(&key);
        }
    }

    /// The Secret watch saw this Secret; true when it is being deleted while carrying the
    /// finalizer (time to check whether a set still needs it).
    pub fn observed(&self, ns: &str, name: &str, finalizers: &[String], deleting: bool) -> bool {
        let has = finalizers.iter().any(|f| f == SET_CREDENTIALS_FINALIZER);
        self.set(ns, name, has);
        has && deleting
    }
}

/// Where a set's key comes from.
pub fn location(set: &PipecatSecretSet, ctx: &Context) -> SecretLocation {
    credentials::locate_in(
        set.metadata.namespace.as_deref(),
        set.spec.credentials.as_ref(),
        &ctx.config.default_credentials,
    )
}

/// True when `set` may still need the key at `loc` to delete its remote set.
fn uses(set: &PipecatSecretSet, loc: &SecretLocation, ctx: &Context) -> bool {
    set.spec.deletion_policy == DeletionPolicy::Delete && finalizer::present(set) && {
        let l = location(set, ctx);
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
        action: "mark the credentials Secret as in use by secret sets",
        source,
    };
    for attempt in 0.. {
        let meta = api.get_metadata(&loc.name).await.map_err(kube_err)?;
        let mut finalizers = meta.finalizers().to_vec();
        if finalizers.iter().any(|f| f == SET_CREDENTIALS_FINALIZER) {
            break;
        }
        finalizers.push(SET_CREDENTIALS_FINALIZER.to_string());
        let patch = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": meta.resource_version(),
        }});
        match api
            .patch(&loc.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 4 => continue,
            Err(e) => return Err(kube_err(e)),
        }
    }
    ctx.marked.set(&loc.namespace, &loc.name, true);
    Ok(())
}

/// Removes the finalizer from the Secret `namespace/name` when no set with `deletionPolicy:
/// Delete` still needs its key (`leaving`: a set whose cleanup just finished).
pub async fn release_if_unused(
    ctx: &Context,
    namespace: &str,
    name: &str,
    leaving: Option<&PipecatSecretSet>,
) -> Result<(), Error> {
    let loc = SecretLocation {
        namespace: namespace.to_string(),
        name: name.to_string(),
        key: String::new(),
    };
    let kube_err = |source| Error::Kube {
        action: "release the credentials Secret",
        source,
    };
    let scopes: Vec<Api<PipecatSecretSet>> = if ctx.config.namespaces.is_empty() {
        vec![Api::all(ctx.kube.clone())]
    } else {
        ctx.config
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.kube.clone(), ns))
            .collect()
    };
    for api in scopes {
        let sets = api.list(&ListParams::default()).await.map_err(kube_err)?;
        if sets
            .items
            .iter()
            .any(|s| leaving.is_none_or(|l| l.uid() != s.uid()) && uses(s, &loc, ctx))
        {
            return Ok(());
        }
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), namespace);
    let Some(meta) = secrets.get_metadata_opt(name).await.map_err(kube_err)? else {
        ctx.marked.set(namespace, name, false);
        return Ok(());
    };
    if meta
        .finalizers()
        .iter()
        .any(|f| f == SET_CREDENTIALS_FINALIZER)
    {
        crate::controller::finalizer::remove_finalizer(
            &secrets,
            &meta.metadata,
            SET_CREDENTIALS_FINALIZER,
        )
        .await
        .map_err(kube_err)?;
        info!(secret = %format!("{namespace}/{name}"), "credentials Secret no longer used by secret sets: finalizer removed");
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
        let fin = vec![SET_CREDENTIALS_FINALIZER.to_string()];
        assert!(!m.observed("ns", "key", &fin, false));
        assert!(m.contains("ns", "key"));
        assert!(m.observed("ns", "key", &fin, true));
        let agents_only = vec!["pipecat.daily.co/credentials-in-use".to_string()];
        assert!(!m.observed("ns", "key", &agents_only, true), "not ours");
        assert!(!m.contains("ns", "key"));
    }
}
