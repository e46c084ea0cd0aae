//! Resolving a resource's Pipecat Cloud API key from a Kubernetes Secret.
//!
//! A resource names a Secret of its own namespace (`spec.credentials.secretRef`); without one,
//! the operator's default Secret is used. The key is wrapped in [`ApiKey`] at once so that it
//! cannot reach a log line, an event or a status by accident.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::Error;
use crate::cloud::ApiKey;
use crate::crd::{Credentials, DEFAULT_SECRET_KEY};

/// Where a key is read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretLocation {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Secret name.
    pub name: String,
    /// Key in its data.
    pub key: String,
}

/// The operator-wide default credentials (flags).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct DefaultCredentials {
    /// Namespace of the default Secret (typically the operator's own); when empty, each
    /// resource looks for it in its own namespace.
    #[arg(
        long = "default-secret-namespace",
        env = "PIPECAT_DEFAULT_SECRET_NAMESPACE"
    )]
    pub namespace: Option<String>,
    /// Secret holding the API key for resources that name none.
    #[arg(
        long = "default-secret-name",
        env = "PIPECAT_DEFAULT_SECRET_NAME",
        default_value = "pipecat-api-key"
    )]
    pub name: String,
    /// Key of the default Secret holding the API key.
    #[arg(long = "default-secret-key", env = "PIPECAT_DEFAULT_SECRET_KEY", default_value = DEFAULT_SECRET_KEY)]
    pub key: String,
}

impl Default for DefaultCredentials {
    fn default() -> Self {
        crate::flags::defaults()
    }
}

/// The Secret the key of a resource of `namespace` with these `credentials` comes from. An
/// explicit reference is always in the resource's own namespace (the schema has no namespace
/// field to leave it).
pub fn locate_in(
    namespace: Option<&str>,
    credentials: Option<&Credentials>,
    default: &DefaultCredentials,
) -> SecretLocation {
    let own_ns = namespace.unwrap_or_default().to_string();
    match credentials {
        Some(c) => SecretLocation {
            namespace: own_ns,
            name: c.secret_ref.name.clone(),
            key: c.secret_ref.key.clone(),
        },
        None => SecretLocation {
            // An empty flag means "not set" (Helm renders unset values as empty strings).
            namespace: default
                .namespace
                .clone()
                .filter(|ns| !ns.trim().is_empty())
                .unwrap_or(own_ns),
            name: default.name.clone(),
            key: default.key.clone(),
        },
    }
}

/// Keys already read, valid while their Secret's resourceVersion (as the Secret metadata watch
/// reports it) is unchanged: a resync costs no Secret read. Secrets outside the watched
/// namespaces are read every time.
#[derive(Default)]
pub struct KeyCache {
    versions: Mutex<HashMap<(String, String), String>>,
    keys: Mutex<HashMap<SecretLocation, (String, ApiKey)>>,
}

impl KeyCache {
    /// The watch saw this Secret (created or changed).
    pub fn observed(&self, namespace: String, name: String, resource_version: Option<String>) {
        let mut versions = self.versions.lock().expect("key cache lock");
        match resource_version {
            Some(rv) => versions.insert((namespace, name), rv),
            None => versions.remove(&(namespace, name)),
        };
    }

    /// The watch saw this Secret deleted.
    pub fn deleted(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.versions.lock().expect("key cache lock").remove(&key);
        self.keys
            .lock()
            .expect("key cache lock")
            .retain(|loc, _| loc.namespace != namespace || loc.name != name);
    }

    /// The key at `loc`, from the cache when its Secret has not changed since it was read.
    pub async fn resolve(
        &self,
        client: &kube::Client,
        loc: &SecretLocation,
    ) -> Result<ApiKey, Error> {
        let current = self
            .versions
            .lock()
            .expect("key cache lock")
            .get(&(loc.namespace.clone(), loc.name.clone()))
            .cloned();
        if let Some(rv) = &current
            && let Some((cached_rv, key)) = self.keys.lock().expect("key cache lock").get(loc)
            && cached_rv == rv
        {
            return Ok(key.clone());
        }
        let (rv, key) = fetch(client, loc).await?;
        if let Some(rv) = rv {
            self.keys
                .lock()
                .expect("key cache lock")
                .insert(loc.clone(), (rv, key.clone()));
        }
        Ok(key)
    }
}

/// Reads the key and the Secret's resourceVersion from the apiserver.
async fn fetch(
    client: &kube::Client,
    loc: &SecretLocation,
) -> Result<(Option<String>, ApiKey), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &loc.namespace);
    let secret = api.get_opt(&loc.name).await.map_err(|source| Error::Kube {
        action: "read the credentials Secret",
        source,
    })?;
    let Some(secret) = secret else {
        return Err(Error::CredentialsNotFound(format!(
            "Secret {}/{} with the Pipecat Cloud Private API key does not exist: create it with `kubectl create secret generic {} -n {} --from-literal={}=<key>`",
            loc.namespace, loc.name, loc.name, loc.namespace, loc.key
        )));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&loc.key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&loc.key).cloned())
        });
    let key = ApiKey::new(value.unwrap_or_default());
    if key.is_empty() {
        return Err(Error::CredentialsNotFound(format!(
            "Secret {}/{} has no non-empty key {:?}: add the Pipecat Cloud Private API key under that key",
            loc.namespace, loc.name, loc.key
        )));
    }
    Ok((secret.metadata.resource_version, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cached_key_is_used_until_the_secret_changes() {
        // A client that cannot reach anything: any fetch fails.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let loc = SecretLocation {
            namespace: "ns".into(),
            name: "key".into(),
            key: "api-key".into(),
        };
        let cache = KeyCache::default();
        cache.observed("ns".into(), "key".into(), Some("7".into()));
        cache
            .keys
            .lock()
            .unwrap()
            .insert(loc.clone(), ("7".into(), ApiKey::new("pk_cached")));
        let key = cache
            .resolve(&client, &loc)
            .await
            .expect("served from the cache");
        assert_eq!(key.expose(), "pk_cached");

        // The Secret changed: the cache must not answer any more.
        cache.observed("ns".into(), "key".into(), Some("8".into()));
        assert!(matches!(
            cache.resolve(&client, &loc).await,
            Err(Error::Kube { .. })
        ));
        // Deleted: forgotten.
        cache.deleted("ns", "key");
        assert!(cache.keys.lock().unwrap().is_empty());
    }
}
