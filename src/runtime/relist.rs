//! The objects a watch applied, each handed on only once the reflector's store holds it.
//!
//! kube-runtime's store takes a re-list in whole, at its `InitDone` (until then it keeps the
//! objects as they were), while `applied_objects()` yields every listed object the moment it
//! arrives. Its controller reads the object to reconcile from the store when the pass starts,
//! so a change that reaches the operator through a re-list (the watch came back after the API
//! server was away, with a resourceVersion too old to resume from) could be reconciled with the
//! object as it was *before* the change, and an object new in the re-list not at all ("object
//! not found"). Neither comes back: the generation predicate has already seen the new
//! generation. [`applied_when_stored`] holds the objects of a re-list until it is complete.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{Lookup, ObjectRef};
use kube::runtime::watcher;

/// The objects applied by `events` (which must already be reflected into the store, i.e. come
/// after `.reflect(writer)` or from a [`super::reflectors::Watch`]): a watch event's object at once, a re-list's objects at its end.
/// `keep` picks the objects worth handing on (applied as they arrive, so a re-list holds only
/// those); deletions are not handed on (the finalizer makes a deletion an update).
pub fn applied_when_stored<K, E, S>(
    events: S,
    mut keep: impl FnMut(&K) -> bool + Send + 'static,
) -> impl Stream<Item = Result<K, E>> + Send
where
    K: Send + 'static,
    E: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, E>> + Send,
{
    events
        .scan(Vec::new(), move |held: &mut Vec<K>, event| {
            let out: Vec<Result<K, E>> = match event {
                Ok(watcher::Event::Apply(obj)) => {
                    keep(&obj).then_some(Ok(obj)).into_iter().collect()
                }
                Ok(watcher::Event::Init) => {
                    // A re-list that started over drops what the broken one held: the new one
                    // lists every object again.
                    held.clear();
                    Vec::new()
                }
                Ok(watcher::Event::InitApply(obj)) => {
                    if keep(&obj) {
                        held.push(obj);
                    }
                    Vec::new()
                }
                Ok(watcher::Event::InitDone) => std::mem::take(held).into_iter().map(Ok).collect(),
                Ok(watcher::Event::Delete(_)) => Vec::new(),
                Err(e) => vec![Err(e)],
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

/// `events` unchanged, with `done` called at the end of each complete (re-)list with every
/// object it held, before the `InitDone` is handed on: what the list no longer holds is what a
/// kind's indexes and per-object memory must forget. A list that started over counts only its
/// second start.
pub fn on_listed<K, E, S>(
    events: S,
    mut done: impl FnMut(&HashSet<ObjectRef<K>>) + Send + 'static,
) -> impl Stream<Item = Result<watcher::Event<K>, E>> + Send
where
    K: Lookup<DynamicType = ()> + Send + 'static,
    E: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, E>> + Send,
{
    let mut listed: HashSet<ObjectRef<K>> = HashSet::new();
    events.inspect(move |event| match event {
        Ok(watcher::Event::Init) => listed.clear(),
        Ok(watcher::Event::InitApply(obj)) => {
            listed.insert(obj.to_object_ref(()));
        }
        Ok(watcher::Event::InitDone) => {
            done(&listed);
            listed.clear();
        }
        _ => {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::reflector::{self, ObjectRef};

    fn agent(name: &str, generation: i64) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns", "uid": name, "generation": generation},
        }))
        .unwrap()
    }

    /// Every object handed on is in the store, at the generation handed on, at the moment it
    /// is handed on: the controller that reads it from there sees what triggered it.
    #[tokio::test]
    async fn a_relisted_object_is_handed_on_once_the_store_holds_it() {
        use watcher::Event::*;
        let (reader, writer) = reflector::store::<ConfigMap>();
        let events = vec![
            // The first list, then a watch event.
            Init,
            InitApply(agent("changed", 1)),
            InitApply(agent("skipped", 1)),
            InitDone,
            Apply(agent("watched", 1)),
            // The API server came back: a re-list that breaks off and starts again, then a
            // complete one, with a spec change, a new object and one gone.
            Init,
            InitApply(agent("changed", 2)),
            Init,
            InitApply(agent("changed", 2)),
            InitApply(agent("new", 1)),
            InitApply(agent("skipped", 2)),
            InitDone,
            Delete(agent("watched", 1)),
        ];
        let stream = futures::stream::iter(events.into_iter().map(Ok)).reflect(writer);
        let handed = applied_when_stored(stream, |a: &ConfigMap| {
            a.metadata.name.as_deref() != Some("skipped")
        });
        let mut handed = std::pin::pin!(handed);
        let mut seen = Vec::new();
        while let Some(obj) = handed.next().await {
            let obj = obj.unwrap();
            let stored = reader.get(&ObjectRef::from_obj(&obj)).unwrap_or_else(|| {
                panic!(
                    "{:?} handed on before the store holds it",
                    obj.metadata.name
                )
            });
            assert_eq!(
                stored.metadata.generation, obj.metadata.generation,
                "{:?} handed on while the store holds another generation",
                obj.metadata.name
            );
            seen.push(format!(
                "{}@{}",
                obj.metadata.name.unwrap(),
                obj.metadata.generation.unwrap()
            ));
        }
        assert_eq!(seen, ["changed@1", "watched@1", "changed@2", "new@1"]);
    }

    #[tokio::test]
    async fn errors_pass_through() {
        let events: Vec<Result<watcher::Event<ConfigMap>, watcher::Error>> = vec![
            Ok(watcher::Event::Init),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::InitDone),
        ];
        let out: Vec<_> = applied_when_stored(futures::stream::iter(events), |_| true)
            .collect()
            .await;
        assert_eq!(out.len(), 1);
        assert!(out[0].is_err());
    }

    #[tokio::test]
    async fn each_complete_list_is_reported_once_with_every_object_it_held() {
        use watcher::Event::*;
        let events: Vec<Result<watcher::Event<ConfigMap>, ()>> = vec![
            Ok(Init),
            Ok(InitApply(agent("a", 1))),
            Ok(InitDone),
            Ok(Apply(agent("b", 1))),
            // A re-list that broke off and started over: only the second start counts.
            Ok(Init),
            Ok(InitApply(agent("a", 2))),
            Ok(Init),
            Ok(InitApply(agent("b", 1))),
            Ok(InitDone),
        ];
        let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = reports.clone();
        let out: Vec<_> = on_listed(futures::stream::iter(events), move |listed| {
            let mut names: Vec<String> = listed.iter().map(|r| r.name.clone()).collect();
            names.sort();
            seen.lock().unwrap().push(names);
        })
        .collect()
        .await;
        assert_eq!(out.len(), 9, "every event handed on");
        assert_eq!(*reports.lock().unwrap(), [vec!["a"], vec!["b"]]);
    }
}
