//! Watching: one controller per scope (all namespaces, or each namespace of `--namespace`),
//! fed by three streams: the resources (spec changes and deletions), the Secrets they read
//! (values and API keys; metadata only), and the agents (a deletion held by an agent resumes
//! as soon as that agent changes or goes).

use std::collections::HashSet;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::{Context, credentials_finalizer, reconcile};
use crate::crd::PipecatAgent;
use crate::crd::secret_set::PipecatSecretSet;
use crate::runtime::credentials;
use crate::runtime::secret_marks::SecretMarks;
use crate::runtime::secrets::{SecretsSeen, secret_changes};

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// True when the PipecatSecretSet CRD is installed (listing works in every scope).
async fn installed(client: &kube::Client, scopes: &[Option<String>]) -> bool {
    for scope in scopes {
        let sets: Api<PipecatSecretSet> = api(client, scope.as_deref());
        if let Err(e) = sets
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
        {
            warn!(error = %e, "PipecatSecretSets cannot be listed (is the CRD installed? `kubectl apply -f crds/`): secret sets are not managed");
            return false;
        }
    }
    true
}

/// Runs the secret set controller until `shutdown` resolves. Without the CRD (an upgrade that
/// did not apply `crds/`), it logs how to fix that and returns at once: agents are still
/// managed.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let scopes: Vec<Option<String>> = if ctx.config.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config.namespaces.iter().cloned().map(Some).collect()
    };
    if !installed(&ctx.kube, &scopes).await {
        return Ok(());
    }
    info!(namespaces = %ctx.config.namespaces.join(","), "starting the PipecatSecretSet controller");
    let shutdown = shutdown.shared();
    let controllers: Vec<_> = scopes
        .into_iter()
        .map(|scope| controller_for(ctx.clone(), scope, shutdown.clone()))
        .collect();
    futures::future::join_all(controllers).await;
    info!("secret set controller stopped");
    Ok(())
}

fn controller_for(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl std::future::Future<Output = ()> {
    let (reader, writer) = reflector::store();
    let forget = ctx.clone();
    let scope = namespace.clone();
    let mut listed = HashSet::new();
    let sets = watcher(
        api::<PipecatSecretSet>(&ctx.kube, namespace.as_deref()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(crate::runtime::scope::trim_cached::<PipecatSecretSet>)
    .inspect(move |event| match event {
        Ok(watcher::Event::Delete(s)) => forget.objects.forget(&ObjectRef::from_obj(s)),
        Ok(watcher::Event::Init) => listed.clear(),
        Ok(watcher::Event::InitApply(s)) => {
            listed.insert(ObjectRef::from_obj(s));
        }
        Ok(watcher::Event::InitDone) => {
            forget.objects.retain_listed(scope.as_deref(), &listed);
            listed.clear();
        }
        _ => {}
    })
    .reflect(writer);
    // A re-list's objects wait for the store to hold them.
    let sets = crate::runtime::relist::applied_when_stored(sets, |_| true)
        // Spec changes and deletions only: our own status writes do not come back as work.
        .predicate_filter(predicates::generation, Default::default());
    let secrets = secret_changes(ctx.clone(), &ctx.kube, namespace.as_deref());
    let agents = watcher(
        api::<PipecatAgent>(&ctx.kube, namespace.as_deref()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .touched_objects();
    let concurrency = ctx.config.concurrency;
    Controller::for_stream(sets, reader.clone())
        .watches_stream(secrets, sets_reading(ctx.clone(), reader.clone()))
        .watches_stream(agents, deleting_sets(reader))
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

impl SecretsSeen for Context {
    type Error = super::Error;
    fn keys(&self) -> &credentials::KeyCache {
        &self.keys
    }
    fn marks(&self) -> &SecretMarks {
        &self.marked
    }
    async fn release_if_unused(
        self: Arc<Self>,
        ns: String,
        name: String,
    ) -> Result<(), Self::Error> {
        credentials_finalizer::release_if_unused(&self, &ns, &name, None).await
    }
}

/// The sets that read this Secret: their values, or their API key.
fn sets_reading(
    ctx: Arc<Context>,
    store: Store<PipecatSecretSet>,
) -> impl Fn(PartialObjectMeta<Secret>) -> Vec<ObjectRef<PipecatSecretSet>> + Send + Sync + 'static
{
    move |secret| {
        let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        store
            .state()
            .into_iter()
            .filter(|s| {
                let own_ns = s.namespace().unwrap_or_default();
                let loc = credentials::locate_in(
                    Some(&own_ns),
                    s.spec.credentials.as_ref(),
                    &ctx.config.default_credentials,
                );
                (own_ns == ns && s.spec.secret_ref.name == name)
                    || (loc.namespace == ns && loc.name == name)
            })
            .map(|s| ObjectRef::from_obj(&*s))
            .collect()
    }
}

/// The sets whose deletion waits (any agent change may release them).
fn deleting_sets(
    store: Store<PipecatSecretSet>,
) -> impl Fn(PipecatAgent) -> Vec<ObjectRef<PipecatSecretSet>> + Send + Sync + 'static {
    move |_agent| {
        store
            .state()
            .into_iter()
            .filter(|s| s.metadata.deletion_timestamp.is_some())
            .map(|s| ObjectRef::from_obj(&*s))
            .collect()
    }
}
