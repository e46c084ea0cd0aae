//! Everything this process remembers about one `PipecatSecretSet`, forgotten on every way out
//! (deleted after cleanup, or gone from the watch): retry and poll counters, and the status it
//! last wrote until the watch cache shows it (a pass that starts from a stale copy must not
//! send the same values again, nor count their revision twice).

use std::collections::HashSet;
use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;

use crate::crd::secret_set::{PipecatSecretSet, PipecatSecretSetStatus};
use crate::metrics::Metrics;
use crate::runtime::key::Key;
use crate::runtime::memory::Memory;

#[derive(Clone, Default)]
struct Entry {
    failures: u32,
    polls: u32,
    finalizer: bool,
    status: Option<PipecatSecretSetStatus>,
    unwritten: bool,
    released: bool,
    /// The readiness counted in the `secret_sets` gauge.
    ready: Option<bool>,
}

/// The per-object state of the secret set controller.
pub struct Objects {
    memory: Memory<PipecatSecretSet, Entry>,
    metrics: Arc<Metrics>,
}

impl Objects {
    /// Empty, counting readiness in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let gauge = metrics.clone();
        Objects {
            // Forgotten, or another object under the same name: no longer counted.
            memory: Memory::new(move |_: &Key, gone: Entry| {
                gauge.secret_set_ready_changed(gone.ready, None)
            }),
            metrics,
        }
    }

    fn with<R>(&self, obj: &PipecatSecretSet, f: impl FnOnce(&mut Entry) -> R) -> R {
        self.memory.with(obj, f)
    }

    /// Records the set's readiness and moves the `secret_sets` gauge by the difference.
    pub fn set_ready(&self, obj: &PipecatSecretSet, ready: bool) {
        let before = self.with(obj, |e| e.ready.replace(ready));
        self.metrics.secret_set_ready_changed(before, Some(ready));
    }

    /// The status to start a pass from: the one last written while the cache lags behind it.
    pub fn status(&self, obj: &PipecatSecretSet) -> PipecatSecretSetStatus {
        self.with(obj, |e| {
            if e.status.is_some() && e.status == obj.status {
                e.status = None;
                e.unwritten = false;
            }
            e.status.clone()
        })
        .or_else(|| obj.status.clone())
        .unwrap_or_default()
    }

    /// Records a status about to be written (kept should the write fail).
    pub fn status_pending(&self, obj: &PipecatSecretSet, status: &PipecatSecretSetStatus) {
        self.with(obj, |e| {
            e.status = Some(status.clone());
            e.unwritten = true;
        });
    }

    /// Records a status written.
    pub fn status_written(&self, obj: &PipecatSecretSet, status: &PipecatSecretSetStatus) {
        self.with(obj, |e| {
            e.status = Some(status.clone());
            e.unwritten = false;
        });
    }

    /// True when the latest status was computed but its write failed.
    pub fn unwritten(&self, obj: &PipecatSecretSet) -> bool {
        self.with(obj, |e| e.unwritten)
    }

    /// True when this process added the finalizer (the cache may not show it yet).
    pub fn has_finalizer(&self, obj: &PipecatSecretSet) -> bool {
        self.with(obj, |e| e.finalizer)
    }

    /// Records that the finalizer was added.
    pub fn finalizer_added(&self, obj: &PipecatSecretSet) {
        self.with(obj, |e| e.finalizer = true);
    }

    /// A successful pass; returns the consecutive passes spent waiting for Pipecat Cloud
    /// (0 once nothing is in flight).
    pub fn succeeded(&self, obj: &PipecatSecretSet, settled: bool) -> u32 {
        self.with(obj, |e| {
            e.failures = 0;
            e.polls = if settled {
                0
            } else {
                e.polls.saturating_add(1)
            };
            e.polls
        })
    }

    /// A failed pass; returns the consecutive failures.
    pub fn failed(&self, obj: &PipecatSecretSet) -> u32 {
        self.with(obj, |e| {
            e.failures = e.failures.saturating_add(1);
            e.failures
        })
    }

    /// Records that the object's cleanup finished (its finalizer is gone): a pass that starts
    /// from a cached copy still showing the finalizer must not clean up twice. Forgotten
    /// with the object when the watch sees it deleted.
    pub fn released(&self, obj: &PipecatSecretSet) {
        self.with(obj, |e| e.released = true);
    }

    /// True when the object's cleanup already finished.
    pub fn is_released(&self, obj: &PipecatSecretSet) -> bool {
        self.with(obj, |e| e.released)
    }

    /// Forgets an object that left.
    pub fn forget(&self, obj: &ObjectRef<PipecatSecretSet>) {
        self.memory.forget(&Key::of_ref(obj));
    }

    /// After a complete (re-)list of `namespace` (`None`: all): forgets the objects of that
    /// scope the list no longer holds (deleted while the watch was down).
    pub fn retain_listed(
        &self,
        namespace: Option<&str>,
        listed: &HashSet<ObjectRef<PipecatSecretSet>>,
    ) {
        self.memory.retain_listed(namespace, listed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ns: &str, name: &str, uid: &str) -> PipecatSecretSet {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatSecretSet",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "spec": {"secretRef": {"name": "s"}}
        }))
        .unwrap()
    }

    fn gauge(m: &Metrics, ready: bool) -> i64 {
        let line = format!("pipecat_operator_secret_sets{{ready=\"{ready}\"}} ");
        m.encode()
            .lines()
            .find_map(|l| l.strip_prefix(&line).map(|v| v.parse().unwrap()))
            .unwrap_or(0)
    }

    #[test]
    fn the_ready_gauge_counts_each_set_once_and_forgets_it_on_every_way_out() {
        let m = Arc::new(Metrics::new());
        let o = Objects::new(m.clone());
        let (a, b, c) = (
            set("ns", "a", "ua"),
            set("ns", "b", "ub"),
            set("other", "c", "uc"),
        );
        o.set_ready(&a, false);
        o.set_ready(&a, true);
        o.set_ready(&a, true);
        o.set_ready(&b, false);
        o.set_ready(&c, true);
        assert_eq!((gauge(&m, true), gauge(&m, false)), (2, 1));
        // Deleted (watch), re-created under the same name (new uid), gone from a re-list.
        o.forget(&ObjectRef::from_obj(&a));
        assert_eq!((gauge(&m, true), gauge(&m, false)), (1, 1));
        o.set_ready(&set("ns", "b", "ub2"), true);
        assert_eq!((gauge(&m, true), gauge(&m, false)), (2, 0));
        o.retain_listed(Some("other"), &HashSet::new());
        assert_eq!((gauge(&m, true), gauge(&m, false)), (1, 0));
    }
}
