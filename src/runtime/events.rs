//! The event publisher every kind shares: what a person reading `kubectl describe` should
//! learn, sent in the background, since an event is never worth delaying or failing a pass
//! for: a bounded queue, a bounded number of requests at once, and no memory of what was sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Resource;
use kube::api::{Api, PostParams};
use tracing::warn;

use super::MANAGER;
use super::conditions::MAX_MESSAGE;
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
    /// A Normal event.
    pub fn normal(reason: &str, message: String) -> Self {
        Note {
            warning: false,
            reason: reason.into(),
            message,
        }
    }
    /// A Warning event.
    pub fn warning(reason: &str, message: String) -> Self {
        Note {
            warning: true,
            reason: reason.into(),
            message,
        }
    }
}

/// Events waiting at most (their heap size per event is measured in docs/PERFORMANCE.md);
/// when full, the oldest waiting event is dropped (counted in
/// `pipecat_operator_events_dropped_total`): the newer ones describe the current state.
pub const QUEUE: usize = 8192;

/// Sends one event.
type Sender = Arc<dyn Fn(K8sEvent) -> BoxFuture<'static, Result<(), kube::Error>> + Sync + Send>;

/// Sends events about resources, in the background, through a bounded queue and at most as
/// many requests at once as reconciles run at once (`--concurrency`): a pass writes at most
/// one status and publishes about one event, so the queue drains as fast as passes fill it (a
/// fixed number of senders let it overflow in a large cold convergence). Every event is a
/// plain create: no cache of published events and no series (an agent's events rarely repeat,
/// and kube-runtime's `Recorder` kept each one for 6 minutes to fold repeats). The
/// measurements behind both are in docs/PERFORMANCE.md.
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

    /// Publishes `note` about `obj` (of any kind) in the background.
    pub fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, note: Note) {
        self.publish_about(obj.object_ref(&()), note);
    }

    /// Publishes `note` about the object `regarding` in the background: every kind's
    /// controller shares this publisher, so one bound holds for the process.
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
    use k8s_openapi::api::core::v1::ConfigMap;

    fn obj() -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("bot".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
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
            (Some("ConfigMap"), Some("bot"), Some("ns"), Some("u1"))
        );
        assert_eq!(ev.metadata.namespace.as_deref(), Some("ns"));
        assert!(ev.metadata.name.as_ref().unwrap().starts_with("bot."));
        p.publish(&o, note(1));
        let pending = p.shared.state.lock().unwrap().waiting.pop_front().unwrap();
        let normal = p.shared.event(pending);
        assert_eq!(normal.type_.as_deref(), Some("Normal"));
    }
}
