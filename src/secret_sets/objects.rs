//! Everything this process remembers about one `PipecatSecretSet`, forgotten on every way out
//! (deleted after cleanup, or gone from the watch): retry and poll counters, and the status it
//! last wrote until the watch cache shows it (a pass that starts from a stale copy must not
//! send the same values again, nor count their revision twice).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::crd::secret_set::{PipecatSecretSet, PipecatSecretSetStatus};

#[derive(Clone, Default)]
struct Entry {
    uid: String,
    failures: u32,
    polls: u32,
    finalizer: bool,
    status: Option<PipecatSecretSetStatus>,
    unwritten: bool,
    released: bool,
}

/// The per-object state of the secret set controller.
#[derive(Default)]
pub struct Objects {
    entries: Mutex<HashMap<ObjectRef<PipecatSecretSet>, Entry>>,
}

impl Objects {
    fn with<R>(&self, obj: &PipecatSecretSet, f: impl FnOnce(&mut Entry) -> R) -> R {
        let uid = obj.uid().unwrap_or_default();
        let mut entries = self.entries.lock().expect("objects lock");
        let entry = entries.entry(ObjectRef::from_obj(obj)).or_default();
        if entry.uid != uid {
            *entry = Entry {
                uid,
                ..Entry::default()
            };
        }
        f(entry)
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
        self.entries.lock().expect("objects lock").remove(obj);
    }

    /// After a complete (re-)list of `namespace` (`None`: all): forgets the objects of that
    /// scope the list no longer holds (deleted while the watch was down).
    pub fn retain_listed(
        &self,
        namespace: Option<&str>,
        listed: &HashSet<ObjectRef<PipecatSecretSet>>,
    ) {
        self.entries.lock().expect("objects lock").retain(|r, _| {
            !(namespace.is_none() || r.namespace.as_deref() == namespace) || listed.contains(r)
        });
    }
}
