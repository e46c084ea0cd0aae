//! What this process last wrote for each object. Under load the watch cache lags behind our own
//! writes by up to seconds; a reconcile that starts from a stale copy must neither redo them
//! (a finalizer patch that then conflicts, a status write that changes nothing) nor mistake
//! an agent it created a moment ago for one to adopt.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::crd::{PipecatAgent, PipecatAgentStatus};

#[derive(Clone, Default)]
struct Entry {
    uid: String,
    finalizer: bool,
    status: Option<PipecatAgentStatus>,
}

/// Per object (and uid, so a re-created object starts afresh): finalizer added, status written.
#[derive(Default)]
pub struct Written {
    entries: Mutex<HashMap<ObjectRef<PipecatAgent>, Entry>>,
}

impl Written {
    fn with<R>(&self, obj: &PipecatAgent, f: impl FnOnce(&mut Entry) -> R) -> R {
        let uid = obj.uid().unwrap_or_default();
        let mut entries = self.entries.lock().expect("written lock");
        let entry = entries.entry(ObjectRef::from_obj(obj)).or_default();
        if entry.uid != uid {
            *entry = Entry {
                uid,
                ..Entry::default()
            };
        }
        f(entry)
    }

    /// Records that the finalizer was added.
    pub fn finalizer_added(&self, obj: &PipecatAgent) {
        self.with(obj, |e| e.finalizer = true);
    }

    /// True when the object carries the finalizer, or this process added it.
    pub fn has_finalizer(&self, obj: &PipecatAgent, finalizer: &str) -> bool {
        obj.finalizers().iter().any(|f| f == finalizer) || self.with(obj, |e| e.finalizer)
    }

    /// Records a status written.
    pub fn status_written(&self, obj: &PipecatAgent, status: &PipecatAgentStatus) {
        self.with(obj, |e| e.status = Some(status.clone()));
    }

    /// The latest status: the one this process wrote last, else the object's. Once the
    /// object shows what was written, the copy is dropped (memory stays flat at scale).
    pub fn status(&self, obj: &PipecatAgent) -> PipecatAgentStatus {
        self.with(obj, |e| {
            if e.status.is_some() && e.status == obj.status {
                e.status = None;
            }
            e.status.clone()
        })
        .or_else(|| obj.status.clone())
        .unwrap_or_default()
    }

    /// Forgets an object (deleted).
    pub fn forget(&self, obj: &PipecatAgent) {
        self.entries
            .lock()
            .expect("written lock")
            .remove(&ObjectRef::from_obj(obj));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(uid: &str) -> PipecatAgent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": "a", "namespace": "ns", "uid": uid},
            "spec": {"image": "a/b:1"}
        }))
        .unwrap()
    }

    #[test]
    fn a_stale_copy_sees_what_was_written() {
        let w = Written::default();
        let stale = agent("u1");
        assert!(!w.has_finalizer(&stale, "f"));
        w.finalizer_added(&stale);
        assert!(w.has_finalizer(&stale, "f"));
        let written = PipecatAgentStatus {
            applied_config_hash: Some("h".into()),
            ..Default::default()
        };
        w.status_written(&stale, &written);
        assert_eq!(w.status(&stale), written);
        // Once the cache catches up, the copy is dropped and the object's status is used.
        let mut caught_up = stale.clone();
        caught_up.status = Some(written.clone());
        assert_eq!(w.status(&caught_up), written);
        assert!(w.with(&caught_up, |e| e.status.is_none()), "copy dropped");
        // The same name re-created (new uid) starts afresh.
        let recreated = agent("u2");
        assert!(!w.has_finalizer(&recreated, "f"));
        assert_eq!(w.status(&recreated), PipecatAgentStatus::default());
    }
}
