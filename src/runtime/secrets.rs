//! The Secret watch every kind reads: API keys are cached by the Secret's resourceVersion
//! ([`crate::runtime::credentials::KeyCache`]) and the in-use marks follow the Secrets'
//! finalizers ([`crate::runtime::secret_marks::SecretMarks`]). Metadata only: the operator
//! never caches Secret data.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tracing::warn;

use super::credentials::KeyCache;
use super::reflectors::{Shared, Watch, objects};
use super::scope::Scope;
use super::secret_marks::SecretMarks;

/// What a controller keeps from the Secret watch: both kinds read API keys from Secrets (cached
/// by resourceVersion) and mark the ones they need with their in-use finalizer.
pub trait SecretsSeen: Send + Sync + 'static {
    /// The failure of a release.
    type Error: std::fmt::Display + Send;
    /// Its API key cache.
    fn keys(&self) -> &KeyCache;
    /// Its in-use marks.
    fn marks(&self) -> &SecretMarks;
    /// Releases the Secret `ns/name` if none of its resources needs its key any more.
    fn release_if_unused(
        self: Arc<Self>,
        ns: String,
        name: String,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// The Secret watch of `scope` (metadata only: the operator never caches Secret data; the
/// whole namespace, whatever the label selector: resources read Secrets of any labels).
pub fn watch(kube: &kube::Client, scope: &Scope) -> Watch<PartialObjectMeta<Secret>> {
    let secrets: Api<PartialObjectMeta<Secret>> = scope.api(kube);
    Watch::new("Secret", watcher(secrets, scope.read()).default_backoff())
}

/// Secrets created, changed or deleted, as the controller `seen` reads them from its
/// subscription to the Secret watch: its key cache and in-use marks follow every event. The
/// initial list is not a change: it would reconcile every resource a second time for nothing.
pub fn secret_changes<C: SecretsSeen>(
    seen: Arc<C>,
    events: impl Stream<Item = Shared<PartialObjectMeta<Secret>>> + Send + 'static,
) -> impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static {
    let changes = events
        .inspect(move |event| match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
                seen.keys()
                    .observed(ns.clone(), name.clone(), s.resource_version());
                let deleting = s.metadata.deletion_timestamp.is_some();
                if seen.marks().observed(&ns, &name, s.finalizers(), deleting) {
                    // Deleted while in use: let it go if nothing needs its key any more
                    // (otherwise the last user's cleanup releases it).
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        if let Err(e) = seen.release_if_unused(ns, name).await {
                            warn!(error = %e, "failed to release a credentials Secret");
                        }
                    });
                }
            }
            Ok(watcher::Event::Delete(s)) => seen
                .keys()
                .deleted(&s.namespace().unwrap_or_default(), &s.name_any()),
            _ => {}
        })
        .filter_map(|event| {
            futures::future::ready(match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s)) => Some(Ok(s)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
        });
    objects(changes)
}
