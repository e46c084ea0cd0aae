//! Everything this process remembers about one `PipecatAgent`, in one owner, forgotten on every
//! way out: deleted after cleanup, deleted with its finalizer stripped by hand, no longer
//! matching the label selector, or gone while the watch was re-listing.
//!
//! Per object (and uid, so that a re-created object starts afresh), in the runtime's
//! [`Memory`]:
//! - retry and polling counters (read by [`super::backoff`]);
//! - what this process last wrote (the finalizer, the status): under load the watch cache lags
//!   behind our own writes by up to seconds, and a reconcile that starts from a stale copy must
//!   neither redo them nor mistake an agent it created a moment ago for one to adopt. The
//!   status is a copy only until the watch shows it ([`Objects::shown`]); from then on the entry
//!   points at the cached object that shows it (shared with the reflector's store), so a ready
//!   fleet costs no second copy of every status;
//! - the readiness last counted in the `pipecat_operator_agents` gauge;
//! - whether the agent has per-agent gauges (`--agent-metrics`), removed when it leaves;
//! - its lane ([`super::lanes`]): whether its last pass left it to periodic refreshes, when
//!   this process last saw it ready, and its place in the background lane's queue
//!   ([`Objects::queue`], read by [`super::pacer`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::crd::{PipecatAgent, PipecatAgentStatus};
use crate::metrics::{AgentGauges, Metrics};
use crate::runtime::key::Key;
use crate::runtime::memory::{Memory, Uid};
use crate::runtime::pacer::{Position, Queue};

#[derive(Clone, Default)]
struct Entry {
    failures: u32,
    polls: u32,
    finalizer: bool,
    creating: Option<Box<str>>,
    /// The status this process wrote last (or is about to write), until the watch shows it.
    /// Boxed: most entries have none, and the map's slots stay small.
    status: Option<Box<PipecatAgentStatus>>,
    /// Once the watch showed a status of this process: the newest cached object (the
    /// reflector's own copy), so that a pass that started from an older one still finds it.
    shown: Option<Arc<PipecatAgent>>,
    unwritten: bool,
    ready: Option<bool>,
    failed: bool,
    drift_corrections: u32,
    /// Per-agent gauges: `Some(true)` exported, `Some(false)` over the limit, `None` neither.
    gauges: Option<bool>,
    /// `Some(true)`: the last pass left the object to the background lane; `Some(false)`: to
    /// the change lane; `None`: no pass yet (the status decides).
    background: Option<bool>,
    /// When a pass last found the agent ready.
    synced: Option<Instant>,
    /// The generation the change trigger last let through ([`Objects::generation_changed`]).
    generation: Option<i64>,
}

/// The lane of `obj` from its entry (`None`: none yet): `Some(last refresh)` in the background
/// lane, `None` in the change lane. See [`Objects::background`].
fn lane(entry: Option<&Entry>, obj: &PipecatAgent) -> Option<Position> {
    let status = entry
        .and_then(|e| {
            e.status
                .as_deref()
                .or_else(|| e.shown.as_ref().and_then(|a| a.status.as_ref()))
        })
        .or(obj.status.as_ref());
    let synced = entry.and_then(|e| e.synced);
    match entry.and_then(|e| e.background) {
        // After a pass of this process: it decided (a spec change since sends it back).
        Some(background) => {
            let status = status?;
            let current = obj.metadata.deletion_timestamp.is_none()
                && status.observed_generation == obj.metadata.generation;
            (background && current).then_some(synced)
        }
        None => super::lanes::caught_up(obj, status).then_some(synced),
    }
}

/// The per-object state of the controller.
pub struct Objects {
    memory: Memory<PipecatAgent, Entry>,
    metrics: Arc<Metrics>,
}

impl Objects {
    /// An empty state whose readiness feeds `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let gauges = metrics.clone();
        Objects {
            // Whatever way an entry goes (forgotten, or an older object under a re-used
            // name), its gauges go with it.
            memory: Memory::new(move |key: &Key, gone: Entry| {
                if let Some(r) = gone.ready {
                    gauges.ready_changed(Some(r), None);
                }
                gauges.failed_changed(gone.failed, false);
                gauges.agent_forgotten(
                    key.namespace().unwrap_or_default(),
                    key.name(),
                    gone.gauges,
                );
            }),
            metrics,
        }
    }

    fn with<R>(&self, obj: &PipecatAgent, f: impl FnOnce(&mut Entry) -> R) -> R {
        self.memory.with(obj, f)
    }

    /// The background lane's queue of agents (read by [`super::pacer`]).
    pub fn queue(&self) -> &dyn Queue {
        &self.memory
    }

    /// Records that the finalizer was added.
    pub fn finalizer_added(&self, obj: &PipecatAgent) {
        self.with(obj, |e| e.finalizer = true);
    }

    /// Records that the create marker for `agent` was written.
    pub fn marker_added(&self, obj: &PipecatAgent, agent: &str) {
        self.with(obj, |e| e.creating = Some(agent.into()));
    }
    /// True when the object carries the create marker for `agent`, or this process wrote it.
    pub fn marked_creating(&self, obj: &PipecatAgent, agent: &str) -> bool {
        super::finalizer::marked_creating(obj, agent)
            || self.with(obj, |e| e.creating.as_deref() == Some(agent))
    }

    /// True when the object carries the finalizer, or this process added it.
    pub fn has_finalizer(&self, obj: &PipecatAgent, finalizer: &str) -> bool {
        obj.finalizers().iter().any(|f| f == finalizer) || self.with(obj, |e| e.finalizer)
    }

    /// The generation predicate of the change trigger: true when `obj`'s generation is not the
    /// one last seen here (a new object, a spec change, a deletion, which bumps it), so that
    /// our own status writes do not come back as work. Kept in the entry, forgotten with it,
    /// rather than in kube-runtime's second map keyed by name, namespace and uid strings.
    pub fn generation_changed(&self, obj: &PipecatAgent) -> bool {
        let Some(generation) = obj.metadata.generation else {
            return true;
        };
        self.with(obj, |e| {
            e.generation.replace(generation) != Some(generation)
        })
    }

    /// Records a status about to be written: until it is, it is the latest status (so a pass
    /// after a failed write still knows what was applied, and never resends it).
    pub fn status_pending(&self, obj: &PipecatAgent, status: &PipecatAgentStatus) {
        self.with(obj, |e| {
            e.status = Some(Box::new(status.clone()));
            e.unwritten = true;
        });
    }

    /// Records a status written.
    pub fn status_written(&self, obj: &PipecatAgent, status: &PipecatAgentStatus) {
        self.with(obj, |e| {
            e.status = Some(Box::new(status.clone()));
            e.unwritten = false;
        });
    }

    /// The watch applied `latest` to the reflector's store (`latest` is the store's own copy).
    /// A status copy it shows is dropped for a pointer to `latest`, which is kept pointing at
    /// the newest version from then on (it never holds an older version alive). Remembers
    /// nothing for an object this process has written no status for.
    pub fn shown(&self, latest: &Arc<PipecatAgent>) {
        self.memory.update(latest, |e| {
            if e.status.is_some() && e.status.as_deref() == latest.status.as_ref() {
                e.status = None;
                e.unwritten = false;
                e.shown = Some(latest.clone());
            } else if e.shown.is_some() {
                e.shown = Some(latest.clone());
            }
        });
    }

    /// After a re-list: points every entry that follows the cache at the store's new copy
    /// (`lookup`), or at nothing when the store no longer holds the object.
    pub fn relisted(&self, lookup: impl Fn(&ObjectRef<PipecatAgent>) -> Option<Arc<PipecatAgent>>) {
        self.memory.for_each(|key, uid, e| {
            if e.shown.is_some() {
                e.shown = lookup(&key.object_ref()).filter(|a| Uid::of(&**a) == uid);
            }
        });
    }

    /// True when the latest status was computed but its write failed.
    pub fn unwritten(&self, obj: &PipecatAgent) -> bool {
        self.with(obj, |e| e.unwritten)
    }

    /// Drift corrections in a row (the agent changed elsewhere again after each).
    pub fn drift_corrections(&self, obj: &PipecatAgent) -> u32 {
        self.with(obj, |e| e.drift_corrections)
    }

    /// One more drift correction; or, with `corrected` false, the run ended (the agent matched,
    /// or the spec changed).
    pub fn drift_corrected(&self, obj: &PipecatAgent, corrected: bool) {
        self.with(obj, |e| {
            e.drift_corrections = if corrected {
                e.drift_corrections.saturating_add(1)
            } else {
                0
            }
        });
    }

    /// The latest status: the one this process wrote last, else the newest the watch showed
    /// after it, else the object's. Once the object shows what was written, the copy is
    /// dropped (memory stays flat at scale).
    pub fn status(&self, obj: &PipecatAgent) -> PipecatAgentStatus {
        self.with(obj, |e| {
            if e.status.is_some() && e.status.as_deref() == obj.status.as_ref() {
                e.status = None;
                e.unwritten = false;
            }
            e.status
                .as_deref()
                .or_else(|| e.shown.as_ref().and_then(|a| a.status.as_ref()))
                .cloned()
        })
        .or_else(|| obj.status.clone())
        .unwrap_or_default()
    }

    /// A successful pass: failures are forgotten; returns the number of consecutive polls of a
    /// deployment that is not ready yet (0 once it is ready). A ready agent goes to the
    /// background lane, refreshed from now on; any other stays in the change lane.
    pub fn succeeded(&self, obj: &PipecatAgent, ready: bool) -> u32 {
        self.memory.with_lane(obj, |e, queued| {
            e.failures = 0;
            e.background = Some(ready);
            if ready {
                e.synced = Some(Instant::now());
            }
            e.polls = if ready { 0 } else { e.polls.saturating_add(1) };
            *queued = lane(Some(e), obj);
            e.polls
        })
    }

    /// A failed pass; returns the number of consecutive failures. The agent goes to the
    /// change lane.
    pub fn failed(&self, obj: &PipecatAgent) -> u32 {
        self.memory.with_lane(obj, |e, queued| {
            e.background = Some(false);
            *queued = None;
            e.failures = e.failures.saturating_add(1);
            e.failures
        })
    }

    /// `Some(last refresh)` when the object belongs to the background lane (see
    /// [`super::lanes`]): caught up with its spec, ready, its last pass successful; `None`
    /// when it is change work (or being deleted). Remembers nothing new.
    pub fn background(&self, obj: &PipecatAgent) -> Option<Option<Instant>> {
        self.memory.get(obj, |e| lane(e, obj))
    }

    /// As [`Objects::background`] for a version of the object the watch applied, and places
    /// the object in the background lane's queue accordingly (an object of the change lane
    /// with nothing remembered leaves nothing behind).
    pub fn sort(&self, obj: &PipecatAgent) -> Option<Option<Instant>> {
        self.memory.sort(obj, |e| lane(e, obj))
    }

    /// Consecutive failures of an object.
    pub fn failures(&self, obj: &PipecatAgent) -> u32 {
        self.with(obj, |e| e.failures)
    }

    /// Records an agent's readiness and moves the gauges by the difference.
    pub fn set_ready(&self, obj: &PipecatAgent, ready: bool) {
        let before = self.with(obj, |e| e.ready.replace(ready));
        self.metrics.ready_changed(before, Some(ready));
    }

    /// Records whether the agent's deployment failed (the `agents_failed` gauge).
    pub fn set_failed(&self, obj: &PipecatAgent, failed: bool) {
        let before = self.with(obj, |e| std::mem::replace(&mut e.failed, failed));
        self.metrics.failed_changed(before, failed);
    }

    /// Records the agent's status in its per-agent gauges (when `--agent-metrics` is on).
    pub fn set_gauges(&self, obj: &PipecatAgent, status: &PipecatAgentStatus) {
        if !self.metrics.agent_metrics_enabled() {
            return;
        }
        let gauges = AgentGauges {
            active_sessions: status.active_session_count,
            warm: status.auto_scaling.as_ref().and_then(|a| a.min_replicas),
            max: status.auto_scaling.as_ref().and_then(|a| a.max_replicas),
        };
        let namespace = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        self.with(obj, |e| {
            e.gauges = self
                .metrics
                .agent_observed(&namespace, &name, e.gauges, gauges)
        });
    }

    /// Forgets an object: it left (deleted, or out of the watched set).
    pub fn forget(&self, obj: &ObjectRef<PipecatAgent>) {
        self.memory.forget(&Key::of_ref(obj));
    }

    /// After a complete (re-)list of `namespace` (`None`: all namespaces): forgets the objects
    /// of that scope that the list no longer holds (deleted while the watch was down).
    pub fn retain_listed(
        &self,
        namespace: Option<&str>,
        listed: &HashSet<ObjectRef<PipecatAgent>>,
    ) {
        self.memory.retain_listed(namespace, listed);
    }

    /// How many objects are remembered (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    /// True when no object is remembered (tests).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::pacer::Stamp;

    fn agent(ns: &str, name: &str, uid: &str) -> PipecatAgent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "spec": {"image": "a/b:1"}
        }))
        .unwrap()
    }

    fn gauge(m: &Metrics, ready: bool) -> i64 {
        let line = format!("pipecat_operator_agents{{ready=\"{ready}\"}} ");
        m.encode()
            .lines()
            .find_map(|l| l.strip_prefix(&line).map(|v| v.parse().unwrap()))
            .unwrap_or(0)
    }

    #[test]
    fn only_a_new_generation_passes_the_change_trigger() {
        let w = Objects::new(Arc::default());
        let mut a = agent("ns", "a", "u1");
        a.metadata.generation = Some(1);
        assert!(w.generation_changed(&a), "first seen");
        assert!(
            !w.generation_changed(&a),
            "our own status write: same generation"
        );
        a.metadata.generation = Some(2);
        assert!(w.generation_changed(&a), "a spec change");
        assert!(!w.generation_changed(&a));
        // Re-created under the same name, and forgotten: seen afresh.
        let mut b = agent("ns", "a", "u2");
        b.metadata.generation = Some(2);
        assert!(w.generation_changed(&b), "a new object under an old name");
        w.forget(&ObjectRef::from_obj(&b));
        assert!(w.generation_changed(&b), "forgotten");
        // Without a generation, every event passes (as kube-runtime's predicate does).
        b.metadata.generation = None;
        assert!(w.generation_changed(&b) && w.generation_changed(&b));
    }

    #[test]
    fn a_stale_copy_sees_what_was_written() {
        let w = Objects::new(Arc::default());
        let stale = agent("ns", "a", "u1");
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
        let recreated = agent("ns", "a", "u2");
        assert!(!w.has_finalizer(&recreated, "f"));
        assert_eq!(w.status(&recreated), PipecatAgentStatus::default());
    }

    #[test]
    fn the_copy_goes_once_the_watch_shows_it_and_a_stale_copy_still_sees_it() {
        let o = Objects::new(Arc::default());
        let stale = agent("ns", "a", "u1");
        let written = PipecatAgentStatus {
            applied_config_hash: Some("h".into()),
            ..Default::default()
        };
        o.status_written(&stale, &written);
        // The watch shows another version first (say, a spec change from before the write).
        let mut other = stale.clone();
        other.metadata.generation = Some(2);
        o.shown(&Arc::new(other));
        assert!(
            o.with(&stale, |e| e.status.is_some()),
            "not shown yet: kept"
        );
        // Then the version that carries it.
        let mut showing = stale.clone();
        showing.status = Some(written.clone());
        o.shown(&Arc::new(showing));
        assert!(o.with(&stale, |e| e.status.is_none()), "shown: no copy");
        assert!(!o.unwritten(&stale));
        assert_eq!(
            o.status(&stale),
            written,
            "a pass that started from an older copy of the object still finds it"
        );
        // A newer version (another writer's status) is followed, never an older one kept.
        let mut newer = stale.clone();
        let theirs = PipecatAgentStatus {
            applied_config_hash: Some("h2".into()),
            ..Default::default()
        };
        newer.status = Some(theirs.clone());
        let newer = Arc::new(newer);
        o.shown(&newer);
        assert_eq!(o.status(&stale), theirs);
        assert_eq!(
            Arc::strong_count(&newer),
            2,
            "the entry shares the store's copy"
        );
        // A re-list that no longer holds it: back to the object's own status.
        o.relisted(|_| None);
        assert_eq!(o.status(&stale), PipecatAgentStatus::default());
        // An object this process never wrote a status for is not followed.
        let b = Arc::new(agent("ns", "b", "u2"));
        o.set_ready(&b, true);
        o.shown(&b);
        assert_eq!(Arc::strong_count(&b), 1);
    }

    #[test]
    fn a_status_whose_write_failed_is_still_the_latest() {
        let o = Objects::new(Arc::default());
        let a = agent("ns", "a", "u1");
        let applied = PipecatAgentStatus {
            applied_redeploy_token: Some("t2".into()),
            ..Default::default()
        };
        o.status_pending(&a, &applied);
        assert!(o.unwritten(&a));
        assert_eq!(
            o.status(&a),
            applied,
            "the next pass plans from what was applied"
        );
        o.status_written(&a, &applied);
        assert!(!o.unwritten(&a));
    }

    #[test]
    fn the_last_pass_decides_the_lane_until_the_spec_changes() {
        let o = Objects::new(Arc::default());
        let mut a = agent("ns", "a", "u1");
        a.metadata.generation = Some(1);
        assert_eq!(o.background(&a), None, "no status: a change");
        a.status = Some(PipecatAgentStatus {
            ready: true,
            observed_generation: Some(1),
            ..Default::default()
        });
        assert_eq!(
            o.background(&a),
            Some(None),
            "caught up after a restart: background, never refreshed yet"
        );
        assert!(o.is_empty(), "asking remembers nothing");

        o.succeeded(&a, false);
        assert_eq!(o.background(&a), None, "rolling out: polled as a change");
        o.succeeded(&a, true);
        assert!(
            matches!(o.background(&a), Some(Some(_))),
            "ready: background, refreshed now"
        );
        let mut changed = a.clone();
        changed.metadata.generation = Some(2);
        assert_eq!(o.background(&changed), None, "a spec change is a change");
        o.failed(&a);
        assert_eq!(o.background(&a), None, "an error retry is a change");
        let mut deleting = a.clone();
        o.succeeded(&a, true);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(o.background(&deleting), None, "a deletion is a change");
    }

    #[test]
    fn the_pacers_queue_follows_the_lane_and_every_way_out() {
        let o = Objects::new(Arc::default());
        let ready = PipecatAgentStatus {
            ready: true,
            observed_generation: Some(1),
            ..Default::default()
        };
        let caught_up = |name: &str, uid: &str| {
            let mut a = agent("ns", name, uid);
            a.metadata.generation = Some(1);
            a.status = Some(ready.clone());
            a
        };
        let a = caught_up("a", "u1");
        let mut new = a.clone();
        new.status = None;
        assert_eq!(o.sort(&new), None, "no status: a change");
        assert!(o.is_empty(), "nothing remembered for it");
        assert_eq!(o.sort(&a), Some(None), "caught up: queued, never refreshed");
        assert_eq!(o.queue().len(), 1);
        assert!(matches!(o.queue().oldest(), Some(Stamp::Never(_))));
        o.succeeded(&a, false);
        assert_eq!(o.queue().len(), 0, "rolling out: the change lane");
        o.succeeded(&a, true);
        assert_eq!(o.queue().len(), 1);
        assert!(
            matches!(o.queue().oldest(), Some(Stamp::Last(_))),
            "refreshed now"
        );
        o.failed(&a);
        assert_eq!(o.queue().len(), 0, "an error retry is a change");
        o.succeeded(&a, true);
        let mut changed = a.clone();
        changed.metadata.generation = Some(2);
        assert_eq!(o.sort(&changed), None);
        assert_eq!(o.queue().len(), 0, "a spec change is a change");
        o.succeeded(&a, true);
        assert_eq!(o.queue().len(), 1);
        o.forget(&ObjectRef::from_obj(&a));
        assert_eq!(o.queue().len(), 0, "deleted");

        let b = caught_up("b", "u2");
        o.sort(&b);
        o.sort(&caught_up("c", "u3"));
        assert_eq!(o.queue().len(), 2);
        o.retain_listed(Some("ns"), &[ObjectRef::from_obj(&b)].into_iter().collect());
        assert_eq!(o.queue().len(), 1, "gone from a re-list");
        o.set_ready(&caught_up("b", "u4"), true);
        assert_eq!(
            o.queue().len(),
            0,
            "a new object under b's name starts out of the queue"
        );
    }

    #[test]
    fn drift_corrections_count_in_a_row() {
        let o = Objects::new(Arc::default());
        let a = agent("ns", "a", "u1");
        o.drift_corrected(&a, true);
        o.drift_corrected(&a, true);
        assert_eq!(o.drift_corrections(&a), 2);
        o.drift_corrected(&a, false);
        assert_eq!(o.drift_corrections(&a), 0);
    }

    #[test]
    fn counters_reset_on_success_and_polls_count_until_ready() {
        let o = Objects::new(Arc::default());
        let a = agent("ns", "a", "u1");
        assert_eq!(o.failed(&a), 1);
        assert_eq!(o.failed(&a), 2);
        assert_eq!(o.succeeded(&a, false), 1);
        assert_eq!(o.failures(&a), 0, "success resets the failures");
        assert_eq!(o.succeeded(&a, false), 2);
        assert_eq!(o.succeeded(&a, true), 0);
    }

    #[test]
    fn forgetting_clears_every_entry_and_the_gauge() {
        let metrics = Arc::new(Metrics::new());
        let o = Objects::new(metrics.clone());
        let a = agent("ns", "a", "u1");
        let b = agent("ns", "b", "u2");
        let c = agent("other", "c", "u3");
        o.set_ready(&a, true);
        o.set_ready(&b, false);
        o.set_failed(&b, true);
        o.set_failed(&b, true);
        o.set_ready(&c, true);
        assert!(
            metrics
                .encode()
                .contains("pipecat_operator_agents_failed 1\n"),
            "counted once"
        );
        o.failed(&a);
        assert_eq!((gauge(&metrics, true), gauge(&metrics, false)), (2, 1));
        o.set_ready(&a, true);
        assert_eq!(
            gauge(&metrics, true),
            2,
            "an unchanged readiness is not counted twice"
        );

        // Deleted (whatever the path: cleanup, a stripped finalizer, leaving the selector).
        o.forget(&ObjectRef::from_obj(&a));
        assert_eq!((gauge(&metrics, true), gauge(&metrics, false)), (1, 1));
        assert_eq!(o.failures(&a), 0, "counters start afresh");
        o.forget(&ObjectRef::from_obj(&a));
        assert_eq!(gauge(&metrics, true), 1, "forgetting twice changes nothing");

        // A re-list of namespace "ns" that no longer holds b: b is forgotten, c (another
        // namespace) is kept.
        let listed: HashSet<_> = [ObjectRef::from_obj(&a)].into_iter().collect();
        o.retain_listed(Some("ns"), &listed);
        assert_eq!((gauge(&metrics, true), gauge(&metrics, false)), (1, 0));
        assert!(
            metrics
                .encode()
                .contains("pipecat_operator_agents_failed 0\n"),
            "the failed agent that left is no longer counted"
        );
        assert_eq!(o.len(), 1, "only c remains");

        // A re-created object under the same name does not inherit the old readiness.
        let c2 = agent("other", "c", "u4");
        o.set_ready(&c2, false);
        assert_eq!((gauge(&metrics, true), gauge(&metrics, false)), (0, 1));
    }

    #[test]
    fn per_agent_gauges_leave_with_the_object() {
        let metrics = Arc::new(Metrics::with_agent_metrics(
            crate::metrics::AgentMetricsConfig {
                enabled: true,
                limit: 10,
            },
        ));
        let o = Objects::new(metrics.clone());
        let status = |sessions| PipecatAgentStatus {
            active_session_count: Some(sessions),
            auto_scaling: Some(crate::crd::ObservedAutoScaling {
                min_replicas: Some(1),
                max_replicas: Some(3),
            }),
            ..Default::default()
        };
        let sessions = |name: &str| {
            let line = format!(
                "pipecat_operator_agent_active_sessions{{namespace=\"ns\",name=\"{name}\"}} "
            );
            metrics
                .encode()
                .lines()
                .find_map(|l| l.strip_prefix(&line).map(|v| v.parse::<i64>().unwrap()))
        };
        let a = agent("ns", "a", "u1");
        let b = agent("ns", "b", "u2");
        o.set_gauges(&a, &status(2));
        o.set_gauges(&b, &status(1));
        assert_eq!((sessions("a"), sessions("b")), (Some(2), Some(1)));
        o.set_gauges(&a, &status(0));
        assert_eq!(sessions("a"), Some(0));

        o.forget(&ObjectRef::from_obj(&a));
        assert_eq!(sessions("a"), None, "deleted: its series went");
        let listed = HashSet::new();
        o.retain_listed(Some("ns"), &listed);
        assert_eq!(sessions("b"), None, "gone from a re-list: its series went");

        // Re-created under the same name: the old series goes, the new object's replaces it.
        o.set_gauges(&a, &status(4));
        let a2 = agent("ns", "a", "u3");
        o.with(&a2, |_| ());
        assert_eq!(sessions("a"), None, "the old object's series went");
        o.set_gauges(&a2, &status(1));
        assert_eq!(sessions("a"), Some(1));
    }
}
