//! Events: what a person reading `kubectl describe` should learn from a pass. [`transitions`]
//! decides (pure: remote actions, readiness flips, new errors); [`Publisher`] sends them in the
//! background, since an event is never worth delaying or failing a reconcile for: a bounded
//! queue, a bounded number of requests at once, and no memory of what was sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta};
use kube::Resource;
use kube::api::{Api, PostParams};
use tracing::warn;

use super::apply::Applied;
use super::outcome::{OrphanReason, Outcome};
use super::status::{MAX_MESSAGE, NOT_CONVERGING, READY, SYNCED};
use super::{Error, MANAGER};
use crate::crd::{PipecatAgent, PipecatAgentStatus};
use crate::metrics::Metrics;
use crate::text::truncate;

/// An event to publish about the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// The message.
    pub message: String,
}

impl Note {
    fn normal(reason: &str, message: String) -> Self {
        Note {
            warning: false,
            reason: reason.into(),
            message,
        }
    }
    fn warning(reason: &str, message: String) -> Self {
        Note {
            warning: true,
            reason: reason.into(),
            message,
        }
    }
}

/// The event of a remote action (created, adopted, updated, deleted, orphaned), if any.
pub fn action(outcome: &Outcome, name: &str, deployment: Option<&str>) -> Option<Note> {
    let deployment = deployment.unwrap_or("(pending)");
    Some(match outcome {
        Outcome::Created => Note::normal(
            "Created",
            format!("created agent {name} in Pipecat Cloud (deployment {deployment})"),
        ),
        Outcome::Adopted => Note::normal(
            "Adopted",
            format!(
                "agent {name} already existed in Pipecat Cloud and is now managed by this resource"
            ),
        ),
        Outcome::Updated(reason) => Note::normal(
            "Updated",
            format!(
                "updated agent {name}: {} (deployment {deployment})",
                reason.describe()
            ),
        ),
        Outcome::Deleted => Note::normal(
            "Deleted",
            format!("deleted agent {name} from Pipecat Cloud"),
        ),
        Outcome::Orphaned(OrphanReason::Policy) => Note::normal(
            "Orphaned",
            format!("deletionPolicy is Orphan: agent {name} was left in Pipecat Cloud"),
        ),
        Outcome::Orphaned(OrphanReason::OwnedBy(owner)) => Note::normal(
            "Orphaned",
            format!("agent {name} belongs to PipecatAgent {owner}: it was not deleted"),
        ),
        Outcome::Unchanged | Outcome::NotConverging | Outcome::NothingToDelete => return None,
    })
}

/// The events of a pass that moved the status from `old` to `new`.
pub fn transitions(
    old: &PipecatAgentStatus,
    new: &PipecatAgentStatus,
    result: &Result<Applied, Error>,
) -> Vec<Note> {
    let cond =
        |s: &PipecatAgentStatus, t: &str| s.conditions.iter().find(|c| c.type_ == t).cloned();
    let same = |a: &Option<Condition>, b: &Condition| {
        a.as_ref().map(|a| (&a.status, &a.reason, &a.message))
            == Some((&b.status, &b.reason, &b.message))
    };
    let mut notes = Vec::new();
    if let Ok(applied) = result
        && let Some(note) = action(
            &applied.outcome,
            &applied.desired.name,
            applied.agent.desired_deployment(),
        )
    {
        notes.push(note);
    }
    let (old_ready, new_ready) = (cond(old, READY), cond(new, READY));
    if let Some(n) = &new_ready
        && !same(&old_ready, n)
    {
        let failed = result.as_ref().is_ok_and(|a| a.readiness.failed);
        let was_true = old_ready.is_some_and(|o| o.status == "True");
        if n.status == "True" && !was_true {
            notes.push(Note::normal("DeploymentReady", n.message.clone()));
        } else if failed {
            notes.push(Note::warning("DeploymentFailed", n.message.clone()));
        }
    }
    if let Some(n) = cond(new, SYNCED)
        && !same(&cond(old, SYNCED), &n)
    {
        match result {
            // Waiting for a secret set that provisions (a rotation, a new set) is expected;
            // a failed one is a warning like any error.
            Err(e @ Error::SecretSetNotReady { failed: false, .. }) => {
                notes.push(Note::normal(e.reason(), n.message))
            }
            Err(e) => notes.push(Note::warning(e.reason(), n.message)),
            Ok(a) if a.stuck.is_some() => notes.push(Note::warning(
                a.stuck.as_ref().map_or(NOT_CONVERGING, |s| s.reason()),
                n.message,
            )),
            Ok(_) => {}
        }
    }
    notes
}

/// Warns, once per spec generation (when the status first shows it), about spec fields the
/// operator accepts but never sends.
pub fn ignored_fields(
    spec: &crate::crd::PipecatAgentSpec,
    old: &PipecatAgentStatus,
    new: &PipecatAgentStatus,
) -> Option<Note> {
    let first_seen =
        new.observed_generation.is_some() && new.observed_generation != old.observed_generation;
    (first_seen && spec.enable_krisp.is_some()).then(|| {
        Note::warning(
            ENABLE_KRISP_IGNORED,
            crate::crd::warnings::ENABLE_KRISP_WARNING.into(),
        )
    })
}

/// The event reason of [`ignored_fields`].
pub const ENABLE_KRISP_IGNORED: &str = "EnableKrispIgnored";

/// Events waiting at most (about 0.5 KB each); when full, the oldest waiting event is dropped
/// (counted in `pipecat_operator_events_dropped_total`): the newer ones describe the current
/// state.
pub const QUEUE: usize = 8192;

/// Sends one event.
type Sender = Arc<dyn Fn(K8sEvent) -> BoxFuture<'static, Result<(), kube::Error>> + Sync + Send>;

/// Sends events about resources, in the background, through a bounded queue and at most as
/// many requests at once as reconciles run at once (`--concurrency`): a pass writes at most
/// one status and publishes about one event, so the queue drains as fast as passes fill it
/// (with a fixed 8 it overflowed in a 30,000-agent cold convergence). Every event is a plain create: no cache of published events
/// and no series (an agent's events rarely repeat, and kube-runtime's `Recorder` kept each one
/// for 6 minutes to fold repeats: half the operator's memory at 10,000 agents).
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

struct Shared {
    send: Sender,
    controller: String,
    instance: String,
    workers: usize,
    capacity: usize,
    state: Mutex<Queue>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    busy: usize,
}

/// An event waiting to be sent: what it is about, what it says, and when it happened.
struct Pending {
    regarding: ObjectReference,
    note: Note,
    at: jiff::Timestamp,
}

impl Publisher {
    /// A publisher reporting as the operator (and the pod, when `POD_NAME` is set), sending
    /// through `kube`, `workers` events at once.
    pub fn new(kube: kube::Client, metrics: Arc<Metrics>, workers: usize) -> Self {
        let send: Sender = Arc::new(move |ev: K8sEvent| {
            let kube = kube.clone();
            Box::pin(async move {
                let ns = ev.metadata.namespace.clone().unwrap_or_default();
                Api::<K8sEvent>::namespaced(kube, &ns)
                    .create(&PostParams::default(), &ev)
                    .await
                    .map(|_| ())
            })
        });
        Self::with_sender(send, workers, QUEUE, metrics)
    }

    fn with_sender(send: Sender, workers: usize, capacity: usize, metrics: Arc<Metrics>) -> Self {
        Publisher {
            shared: Arc::new(Shared {
                send,
                controller: MANAGER.into(),
                instance: std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER.into()),
                workers: workers.max(1),
                capacity: capacity.max(1),
                state: Mutex::default(),
                metrics,
            }),
        }
    }

    /// Publishes `note` about `agent` in the background.
    pub fn publish(&self, agent: &PipecatAgent, note: Note) {
        self.publish_about(agent.object_ref(&()), note);
    }

    /// Publishes `note` about the object `regarding` (of any kind) in the background: the
    /// PipecatSecretSet controller shares this publisher, so one bound holds for the process.
    pub fn publish_about(&self, regarding: ObjectReference, note: Note) {
        let ev = Pending {
            regarding,
            note: Note {
                // The apiserver rejects notes over 1 KiB (the event would be lost).
                message: truncate(note.message, MAX_MESSAGE),
                ..note
            },
            at: jiff::Timestamp::now(),
        };
        let start = {
            let mut q = self.shared.state.lock().expect("event queue lock");
            if q.waiting.len() >= self.shared.capacity {
                q.waiting.pop_front();
                self.shared.metrics.event_dropped();
            }
            q.waiting.push_back(ev);
            let start = q.busy < self.shared.workers;
            if start {
                q.busy += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.shared.clone().drain());
        }
    }
}

impl Shared {
    /// The event as kube-runtime's `Recorder` built a new one: the same name scheme, reporter,
    /// type, reason, action and note.
    fn event(&self, pending: Pending) -> K8sEvent {
        let Pending {
            regarding,
            note,
            at: now,
        } = pending;
        K8sEvent {
            action: Some(note.reason.clone()),
            reason: Some(note.reason),
            type_: Some(if note.warning { "Warning" } else { "Normal" }.into()),
            note: Some(note.message),
            event_time: Some(MicroTime(now)),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }

    /// One worker: sends waiting events until none is left.
    async fn drain(self: Arc<Self>) {
        loop {
            let next = {
                let mut q = self.state.lock().expect("event queue lock");
                let next = q.waiting.pop_front();
                if next.is_none() {
                    q.busy -= 1;
                }
                next
            };
            let Some(pending) = next else { return };
            if let Err(e) = (self.send)(self.event(pending)).await {
                warn!(error = %e, "failed to publish event");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::types::Agent;
    use crate::controller::plan::{self, UpdateReason};
    use crate::controller::readiness::readiness;
    use crate::controller::status::next_status;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn obj() -> PipecatAgent {
        let mut a: PipecatAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": "bot", "namespace": "ns"},
            "spec": {"image": "acme/bot:1"}
        }))
        .unwrap();
        a.metadata.generation = Some(1);
        a
    }

    fn remote(desired: &str, reconciled: Option<&str>, ready: bool) -> Agent {
        Agent {
            name: "bot".into(),
            desired_deployment_id: Some(desired.into()),
            reconciled_deployment_id: reconciled.map(Into::into),
            ready: Some(ready),
            ..Default::default()
        }
    }

    fn pass(agent: Agent, outcome: Outcome) -> Result<Applied, Error> {
        Ok(Applied {
            readiness: readiness(&agent, None),
            agent,
            outcome,
            desired: plan::desired(&obj()),
            requested: None,
            stuck: None,
            secret_sets: Vec::new(),
        })
    }

    fn reasons(notes: &[Note]) -> Vec<&str> {
        notes.iter().map(|n| n.reason.as_str()).collect()
    }

    #[test]
    fn enable_krisp_is_warned_about_once_per_generation() {
        let mut spec = obj().spec;
        let st = |g: Option<i64>| PipecatAgentStatus {
            observed_generation: g,
            ..Default::default()
        };
        assert_eq!(ignored_fields(&spec, &st(None), &st(Some(1))), None);
        spec.enable_krisp = Some(true);
        let note = ignored_fields(&spec, &st(None), &st(Some(1))).expect("warned");
        assert!(note.warning);
        assert_eq!(note.reason, ENABLE_KRISP_IGNORED);
        assert!(note.message.contains("krispViva"), "{}", note.message);
        assert_eq!(ignored_fields(&spec, &st(Some(1)), &st(Some(1))), None);
        assert!(ignored_fields(&spec, &st(Some(1)), &st(Some(2))).is_some());
        assert_eq!(ignored_fields(&spec, &st(Some(1)), &st(None)), None);
    }

    #[test]
    fn create_then_ready_then_quiet() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let empty = PipecatAgentStatus::default();
        let created = pass(remote("d1", None, false), Outcome::Created);
        let s1 = next_status(&o, &empty, &created, &t);
        assert_eq!(reasons(&transitions(&empty, &s1, &created)), ["Created"]);
        let n = &transitions(&empty, &s1, &created)[0];
        assert!(!n.warning && n.message.contains("deployment d1"), "{n:?}");

        let live = pass(remote("d1", Some("d1"), true), Outcome::Unchanged);
        let s2 = next_status(&o, &s1, &live, &t);
        assert_eq!(reasons(&transitions(&s1, &s2, &live)), ["DeploymentReady"]);
        let s3 = next_status(&o, &s2, &live, &t);
        assert!(
            transitions(&s2, &s3, &live).is_empty(),
            "nothing new, nothing said"
        );
    }

    #[test]
    fn an_update_names_its_reason_and_a_failure_warns_once() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let live = pass(remote("d1", Some("d1"), true), Outcome::Unchanged);
        let s1 = next_status(&o, &PipecatAgentStatus::default(), &live, &t);
        let updated = pass(
            remote("d2", Some("d1"), true),
            Outcome::Updated(UpdateReason::SpecChanged(vec!["image"])),
        );
        let s2 = next_status(&o, &s1, &updated, &t);
        let notes = transitions(&s1, &s2, &updated);
        assert_eq!(reasons(&notes), ["Updated"]);
        assert!(
            notes[0].message.contains("spec changed (image)"),
            "{notes:?}"
        );

        let mut crashing = remote("d2", Some("d1"), false);
        crashing.errors = Some(vec![crate::cloud::types::DeploymentError {
            code: Some("PCC_CRASH".into()),
            message: Some("exit 1".into()),
        }]);
        let failed = pass(crashing, Outcome::Unchanged);
        let s3 = next_status(&o, &s2, &failed, &t);
        let notes = transitions(&s2, &s3, &failed);
        assert_eq!(reasons(&notes), ["DeploymentFailed"]);
        assert!(notes[0].warning);
        let s4 = next_status(&o, &s3, &failed, &t);
        assert!(
            transitions(&s3, &s4, &failed).is_empty(),
            "the same failure is not repeated"
        );
    }

    #[test]
    fn a_new_error_warns_with_its_reason_once() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let empty = PipecatAgentStatus::default();
        let err: Result<Applied, Error> = Err(Error::CredentialsNotFound("no key".into()));
        let s1 = next_status(&o, &empty, &err, &t);
        let notes = transitions(&empty, &s1, &err);
        assert_eq!(reasons(&notes), ["CredentialsNotFound"]);
        assert!(notes[0].warning && notes[0].message == "no key");
        let s2 = next_status(&o, &s1, &err, &t);
        assert!(transitions(&s1, &s2, &err).is_empty());
    }

    #[test]
    fn not_converging_warns_once() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let live = pass(remote("d1", Some("d1"), true), Outcome::Unchanged);
        let s1 = next_status(&o, &PipecatAgentStatus::default(), &live, &t);
        let mut stuck = live.as_ref().unwrap().clone();
        stuck.outcome = Outcome::NotConverging;
        stuck.stuck = Some(crate::controller::plan::Stuck::Refused(vec![
            crate::controller::compare::Mismatch {
                field: "autoScaling",
                remote: "minAgents 1, maxAgents 5".into(),
            },
        ]));
        let stuck = Ok(stuck);
        let s2 = next_status(&o, &s1, &stuck, &t);
        let notes = transitions(&s1, &s2, &stuck);
        assert_eq!(reasons(&notes), ["NotConverging"]);
        assert!(notes[0].warning);
        let s3 = next_status(&o, &s2, &stuck, &t);
        assert!(transitions(&s2, &s3, &stuck).is_empty(), "said once");
    }

    #[test]
    fn waiting_for_a_provisioning_set_is_normal_and_a_failed_set_warns() {
        let t = Time(jiff::Timestamp::from_second(1).unwrap());
        let o = obj();
        let empty = PipecatAgentStatus::default();
        let wait = |failed| -> Result<Applied, Error> {
            Err(Error::SecretSetNotReady {
                message: format!("agent bot waits for secret set env (failed: {failed})"),
                failed,
            })
        };
        let pending = wait(false);
        let s1 = next_status(&o, &empty, &pending, &t);
        let notes = transitions(&empty, &s1, &pending);
        assert_eq!(reasons(&notes), ["SecretSetNotReady"]);
        assert!(!notes[0].warning, "{notes:?}");
        assert!(notes[0].message.contains("secret set env"));
        let failed = wait(true);
        let s2 = next_status(&o, &s1, &failed, &t);
        let notes = transitions(&s1, &s2, &failed);
        assert_eq!(reasons(&notes), ["SecretSetNotReady"]);
        assert!(notes[0].warning);
    }

    #[test]
    fn deletion_outcomes_have_their_events() {
        let n = action(&Outcome::Orphaned(OrphanReason::Policy), "bot", None).unwrap();
        assert_eq!(n.reason, "Orphaned");
        assert!(n.message.contains("deletionPolicy is Orphan"));
        let n = action(
            &Outcome::Orphaned(OrphanReason::OwnedBy("a/b".into())),
            "bot",
            None,
        )
        .unwrap();
        assert!(n.message.contains("belongs to PipecatAgent a/b"));
        assert_eq!(
            action(&Outcome::Deleted, "bot", None).unwrap().reason,
            "Deleted"
        );
        assert_eq!(action(&Outcome::Unchanged, "bot", None), None);
        assert_eq!(action(&Outcome::NothingToDelete, "bot", None), None);
    }

    /// A sender that holds every event until `gate` lets it through, recording how many were in
    /// flight at most and which were sent.
    struct Fake {
        gate: Arc<tokio::sync::Semaphore>,
        in_flight: Arc<std::sync::atomic::AtomicUsize>,
        most: Arc<std::sync::atomic::AtomicUsize>,
        sent: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn new() -> Self {
            Fake {
                gate: Arc::new(tokio::sync::Semaphore::new(0)),
                in_flight: Arc::default(),
                most: Arc::default(),
                sent: Arc::default(),
            }
        }

        fn sender(&self) -> Sender {
            let (gate, in_flight, most, sent) = (
                self.gate.clone(),
                self.in_flight.clone(),
                self.most.clone(),
                self.sent.clone(),
            );
            Arc::new(move |ev: K8sEvent| {
                let (gate, in_flight, most, sent) =
                    (gate.clone(), in_flight.clone(), most.clone(), sent.clone());
                Box::pin(async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = in_flight.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    gate.acquire().await.unwrap().forget();
                    in_flight.fetch_sub(1, SeqCst);
                    sent.lock().unwrap().push(ev.note.unwrap());
                    Ok(())
                })
            })
        }

        fn sent(&self) -> Vec<String> {
            self.sent.lock().unwrap().clone()
        }
    }

    fn note(i: usize) -> Note {
        Note::normal("Created", format!("event {i}"))
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_counts_it() {
        let fake = Fake::new();
        let metrics = Arc::new(Metrics::new());
        let p = Publisher::with_sender(fake.sender(), 1, 2, metrics.clone());
        let o = obj();
        p.publish(&o, note(0));
        settle().await; // the one worker holds event 0 in flight
        for i in 1..=5 {
            p.publish(&o, note(i));
        }
        assert!(
            metrics
                .encode()
                .contains("pipecat_operator_events_dropped_total 3"),
            "{}",
            metrics.encode()
        );
        fake.gate.add_permits(10);
        settle().await;
        assert_eq!(fake.sent(), ["event 0", "event 4", "event 5"]);
        assert_eq!(p.shared.state.lock().unwrap().busy, 0, "the worker ended");
    }

    #[tokio::test]
    async fn at_most_the_worker_count_is_in_flight() {
        let fake = Fake::new();
        let metrics = Arc::new(Metrics::new());
        let p = Publisher::with_sender(fake.sender(), 3, 100, metrics.clone());
        let o = obj();
        for i in 0..20 {
            p.publish(&o, note(i));
        }
        settle().await;
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(fake.in_flight.load(SeqCst), 3, "three sent at once");
        assert_eq!(p.shared.state.lock().unwrap().waiting.len(), 17);
        for _ in 0..20 {
            fake.gate.add_permits(1);
            settle().await;
        }
        assert_eq!(fake.most.load(SeqCst), 3, "never more than three");
        let sent = fake.sent();
        assert_eq!(sent.len(), 20, "nothing lost below the queue's bound");
        assert!(
            metrics
                .encode()
                .contains("pipecat_operator_events_dropped_total 0")
        );
        // Sent in order (one worker picks each event up in turn from the queue's head).
        let expected: Vec<String> = (0..20).map(|i| format!("event {i}")).collect();
        assert_eq!(sent, expected);
        assert_eq!(p.shared.state.lock().unwrap().busy, 0);
        // Idle publishers hold no task: a later event starts a worker again.
        p.publish(&o, note(20));
        fake.gate.add_permits(1);
        settle().await;
        assert_eq!(fake.sent().len(), 21);
    }

    #[tokio::test]
    async fn the_event_is_the_one_the_recorder_created() {
        let fake = Fake::new();
        let p = Publisher::with_sender(fake.sender(), 1, 1, Arc::new(Metrics::new()));
        let mut o = obj();
        o.metadata.uid = Some("u1".into());
        p.publish(&o, Note::warning("NotConverging", "x".repeat(2000)));
        let pending = p.shared.state.lock().unwrap().waiting.pop_front().unwrap();
        let ev = p.shared.event(pending);
        assert_eq!(ev.reason.as_deref(), Some("NotConverging"));
        assert_eq!(ev.action.as_deref(), Some("NotConverging"));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert_eq!(ev.reporting_controller.as_deref(), Some(MANAGER));
        assert!(ev.reporting_instance.is_some());
        assert!(ev.note.as_ref().unwrap().len() <= MAX_MESSAGE);
        assert!(ev.series.is_none() && ev.event_time.is_some());
        let r = ev.regarding.as_ref().unwrap();
        assert_eq!(
            (
                r.kind.as_deref(),
                r.name.as_deref(),
                r.namespace.as_deref(),
                r.uid.as_deref()
            ),
            (Some("PipecatAgent"), Some("bot"), Some("ns"), Some("u1"))
        );
        assert_eq!(ev.metadata.namespace.as_deref(), Some("ns"));
        assert!(ev.metadata.name.as_ref().unwrap().starts_with("bot."));
        p.publish(&o, note(1));
        let pending = p.shared.state.lock().unwrap().waiting.pop_front().unwrap();
        let normal = p.shared.event(pending);
        assert_eq!(normal.type_.as_deref(), Some("Normal"));
    }
}
