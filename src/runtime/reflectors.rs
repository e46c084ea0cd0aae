//! One watch per kind per scope, shared by every controller that reads the kind: the agents'
//! and the secret sets' controllers both follow agents, secret sets and Secrets, and each
//! scope opens three watches, not six.
//!
//! A [`Watch`] reads its watch stream once, applies each event to its reflector store (when it
//! keeps one) and only then hands the event to every subscriber, in order. A subscriber sees
//! every event (the initial list, re-lists, deletions) exactly as a watch of its own would,
//! so its bookkeeping (indexes, per-object memory, re-list handling) stays its own; and an
//! object it is handed is already in the store, which the controllers read when a pass starts.
//! Errors reach every subscriber too, shared ([`Arc`]): the watch retries on its own.

use std::future::Future;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// An event as a subscriber receives it.
pub type Shared<K> = Result<watcher::Event<K>, Arc<watcher::Error>>;

/// A kind's watch in one scope, before it runs: subscribe every reader first, then [`run`] it.
///
/// [`run`]: Watch::run
pub struct Watch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    kind: &'static str,
    events: BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
    writer: Option<reflector::store::Writer<K>>,
    subscribers: Vec<mpsc::UnboundedSender<Shared<K>>>,
}

impl<K> Watch<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Default + Send + Sync,
{
    /// The watch of `kind` (named in logs) whose events `events` yields.
    pub fn new(
        kind: &'static str,
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    ) -> Self {
        Watch {
            kind,
            events: events.boxed(),
            writer: None,
            subscribers: Vec::new(),
        }
    }

    /// Keeps the watched objects in a reflector store, updated before any subscriber sees an
    /// event; returns its reader.
    pub fn store(&mut self) -> Store<K> {
        let (reader, writer) = reflector::store();
        self.writer = Some(writer);
        reader
    }

    /// A new reader of every event, from the first.
    pub fn subscribe(&mut self) -> impl Stream<Item = Shared<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
    }

    /// How many readers it has (tests).
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// Runs the watch until `shutdown` resolves, the watch ends, or every subscriber is gone
    /// (a watch nobody reads is not opened at all).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        if self.subscribers.is_empty() {
            debug!(kind = self.kind, "watch not needed: nobody reads it");
            return;
        }
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let event = tokio::select! {
                event = self.events.next() => event,
                _ = &mut shutdown => return,
            };
            let Some(event) = event else { return };
            let shared = match event {
                Ok(event) => {
                    if let Some(writer) = &mut self.writer {
                        writer.apply_watcher_event(&event);
                    }
                    Ok(event)
                }
                Err(e) => {
                    warn!(kind = self.kind, error = %e, "watch failed; retrying");
                    Err(Arc::new(e))
                }
            };
            self.subscribers
                .retain(|tx| tx.send(shared.clone()).is_ok());
            if self.subscribers.is_empty() {
                return;
            }
        }
    }
}

/// The objects applied by a subscriber's events, as kube-runtime's controllers take them
/// (errors are dropped: the watch logs and retries them itself).
pub fn objects<K>(
    events: impl Stream<Item = Result<K, Arc<watcher::Error>>> + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
{
    events.filter_map(|e| futures::future::ready(e.ok().map(Ok)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::ObjectRef;

    fn cm(name: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns"},
        }))
        .unwrap()
    }

    fn names(events: &[Shared<ConfigMap>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Ok(watcher::Event::Init) => "init".into(),
                Ok(watcher::Event::InitApply(o)) => {
                    format!("list {}", o.metadata.name.as_deref().unwrap())
                }
                Ok(watcher::Event::InitDone) => "done".into(),
                Ok(watcher::Event::Apply(o)) => {
                    format!("apply {}", o.metadata.name.as_deref().unwrap())
                }
                Ok(watcher::Event::Delete(o)) => {
                    format!("delete {}", o.metadata.name.as_deref().unwrap())
                }
                Err(_) => "error".into(),
            })
            .collect()
    }

    /// Every subscriber sees every event in order, each applied to the store before anyone
    /// sees it; a subscriber that goes away does not stop the others.
    #[tokio::test]
    async fn every_subscriber_sees_every_event_after_the_store_has_it() {
        use watcher::Event::*;
        // The watch's events, fed one at a time: each is checked before the next is sent.
        let (feed, source) = mpsc::unbounded_channel();
        let source =
            futures::stream::unfold(
                source,
                |mut rx| async move { rx.recv().await.map(|e| (e, rx)) },
            );
        let mut watch = Watch::new("ConfigMap", source);
        let store = watch.store();
        let mut first = std::pin::pin!(watch.subscribe());
        let mut second = std::pin::pin!(watch.subscribe());
        drop(watch.subscribe());
        assert_eq!(watch.subscribers(), 3);
        let running = tokio::spawn(watch.run(std::future::pending()));
        let stored = |name: &str| store.get(&ObjectRef::new(name).within("ns")).is_some();
        type Step = (
            Result<watcher::Event<ConfigMap>, watcher::Error>,
            &'static str,
            Option<bool>,
        );
        let steps: Vec<Step> = vec![
            (Ok(Init), "init", None),
            (Ok(InitApply(cm("a"))), "list a", None),
            // The store takes a list in whole at its end.
            (Ok(InitDone), "done", Some(true)),
            (Err(watcher::Error::NoResourceVersion), "error", None),
            (Ok(Apply(cm("b"))), "apply b", None),
            (Ok(Delete(cm("a"))), "delete a", Some(false)),
        ];
        for (event, name, a_stored) in steps {
            feed.send(event).unwrap();
            let seen = [first.next().await.unwrap(), second.next().await.unwrap()];
            assert_eq!(names(&seen), [name, name]);
            if let Some(a_stored) = a_stored {
                assert_eq!(stored("a"), a_stored, "after {name}");
            }
            if name == "apply b" {
                assert!(stored("b"), "handed on before the store has it");
            }
        }
        drop(feed);
        running.await.unwrap();
    }

    #[tokio::test]
    async fn a_watch_nobody_reads_is_not_opened() {
        let opened = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = opened.clone();
        let events = futures::stream::once(async move {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(watcher::Event::<ConfigMap>::Init)
        });
        Watch::new("ConfigMap", events)
            .run(std::future::pending())
            .await;
        assert!(!opened.load(std::sync::atomic::Ordering::SeqCst));
    }
}
