//! The background lane of any kind: a queue of the objects it holds, ordered by their last
//! refresh ([`Due`], kept by [`super::memory::Memory`]), and the pacer that takes the due ones
//! from its front ([`run`]), a few at a time, at the period the API budget allows
//! ([`super::lanes::effective_period`]), spread evenly over it. A look costs what it starts,
//! not the fleet: the pacer never walks the caches.
//!
//! The kind says what a refresh is ([`Background`]): the cached object under a key while it
//! still belongs to the lane, and the pass itself.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::key::Key;
use super::lanes::{Busy, Held, Lockable, accrue, effective_period, spacing};
use crate::metrics::Metrics;

/// Where a kind places an object in the lane: when it was last refreshed; `None`, never by
/// this process.
pub type Position = Option<Instant>;

/// Where an object stands in the queue: never refreshed by this process (since it joined the
/// lane), which go first, or last refreshed (or its refresh last started) at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stamp {
    /// Never refreshed by this process; in the lane since then.
    Never(Instant),
    /// Last refreshed, or its refresh started, then.
    Last(Instant),
}

impl Stamp {
    /// The stamp of an object placed at `position` at `now`; one never refreshed keeps the time
    /// it joined the lane (`before`).
    pub fn of(position: Position, before: Option<Stamp>, now: Instant) -> Stamp {
        match (position, before) {
            (Some(t), _) => Stamp::Last(t),
            (None, Some(Stamp::Never(joined))) => Stamp::Never(joined),
            (None, _) => Stamp::Never(now),
        }
    }

    /// The position a kind gave.
    pub fn position(self) -> Position {
        match self {
            Stamp::Never(_) => None,
            Stamp::Last(t) => Some(t),
        }
    }

    /// When the object is due with refreshes every `period`: at once if never refreshed (the
    /// first round is spread over one period, so it is late only a period after it joined).
    fn due_at(self, period: Duration) -> Option<Instant> {
        match self {
            Stamp::Never(_) => None,
            Stamp::Last(t) => Some(t + period),
        }
    }
}

/// The shortest and longest pause between two looks at the queue (with refreshes closer than
/// the shortest, one look starts several).
pub const MIN_TICK: Duration = Duration::from_millis(100);
/// See [`MIN_TICK`].
pub const MAX_TICK: Duration = Duration::from_secs(1);

/// The objects of the background lane, in the order they come due: never refreshed first,
/// then the longest waiting (ties by key).
#[derive(Default)]
pub struct Due {
    order: BTreeSet<(Stamp, Key)>,
}

/// True when an object at `stamp` is due at `now` with refreshes every `period`.
fn is_due(stamp: Stamp, now: Instant, period: Duration) -> bool {
    stamp.due_at(period).is_none_or(|t| t <= now)
}

impl Due {
    /// Moves `key` from `from` to `to` (`None`: out of the queue).
    pub fn moved(&mut self, key: &Key, from: Option<Stamp>, to: Option<Stamp>) {
        if let Some(p) = from {
            self.order.remove(&(p, key.clone()));
        }
        if let Some(p) = to {
            self.order.insert((p, key.clone()));
        }
    }

    /// Objects in the lane.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when the lane is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The first object due at `now` after `after` (exclusive) in queue order.
    pub fn next_due(
        &self,
        after: Option<&(Stamp, Key)>,
        now: Instant,
        period: Duration,
    ) -> Option<(Stamp, Key)> {
        let next = match after {
            Some(a) => self
                .order
                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                .next(),
            None => self.order.first(),
        };
        next.filter(|(p, _)| is_due(*p, now, period)).cloned()
    }

    /// Objects due at `now` (never refreshed, or last refreshed a `period` ago or more).
    pub fn backlog(&self, now: Instant, period: Duration) -> usize {
        self.order
            .iter()
            .take_while(|(p, _)| is_due(*p, now, period))
            .count()
    }

    /// The stamp of the longest waiting object.
    pub fn oldest(&self) -> Option<Stamp> {
        self.order.first().map(|(p, _)| *p)
    }
}

/// The queue as the pacer reads it (a kind's [`super::memory::Memory`]).
pub trait Queue: Send + Sync {
    /// Objects in the lane.
    fn len(&self) -> usize;
    /// True when the lane is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// See [`Due::next_due`].
    fn next_due(
        &self,
        after: Option<&(Stamp, Key)>,
        now: Instant,
        period: Duration,
    ) -> Option<(Stamp, Key)>;
    /// A refresh of `key` started (or was passed over) `at`: it goes to the back of the queue
    /// (the pass's result places it again).
    fn started(&self, key: &Key, at: Instant);
    /// See [`Due::backlog`].
    fn backlog(&self, now: Instant, period: Duration) -> usize;
    /// See [`Due::oldest`].
    fn oldest(&self) -> Option<Stamp>;
}

/// What a kind's background lane refreshes.
pub trait Background: Send + Sync + 'static {
    /// The kind refreshed.
    type Kind: Lockable;
    /// The queue of the lane.
    fn queue(&self) -> &dyn Queue;
    /// The objects passes are under way for.
    fn busy(&self) -> &Busy<Self::Kind>;
    /// The cached object under `key`, while it still belongs to the background lane.
    fn object(&self, key: &Key) -> Option<Arc<Self::Kind>>;
    /// One refresh of `obj`, held by the pacer (`held`, released when the returned future ends).
    fn refresh(
        self: Arc<Self>,
        obj: Arc<Self::Kind>,
        held: Held<Self::Kind>,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// The pace of the lane.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// `--resync-interval`: the period when the budget allows it.
    pub interval: Duration,
    /// Requests a second left to refreshes (`None`: unlimited).
    pub background_rate: Option<f64>,
    /// Refreshes running at once.
    pub slots: usize,
}

impl Pace {
    /// The period for `objects` in the lane.
    pub fn period(&self, objects: usize) -> Duration {
        effective_period(self.interval, objects, self.background_rate).max(MIN_TICK)
    }

    /// How late the longest waiting refresh (`oldest`) is at `now` (zero when none is late): a
    /// period after its last refresh, or for one never refreshed, a period after it joined the
    /// lane (the first round is spread over one).
    pub fn lateness(&self, oldest: Option<Stamp>, now: Instant, period: Duration) -> Duration {
        match oldest {
            None => Duration::ZERO,
            Some(Stamp::Never(t) | Stamp::Last(t)) => now.saturating_duration_since(t + period),
        }
    }
}

/// One look at the queue: the period, the pause before the next look and the refreshes owed.
struct Look {
    period: Duration,
    tick: Duration,
}

/// The pacer's running state between looks.
struct Pacer {
    pace: Pace,
    credit: f64,
    last: Instant,
}

impl Pacer {
    fn new(pace: Pace, now: Instant) -> Self {
        Pacer {
            pace,
            credit: 0.0,
            last: now,
        }
    }

    /// Recomputes the period for the objects now in the lane and adds the refreshes owed since
    /// the last look: at most one look's worth plus one (the time a look spent waiting for a
    /// slot counts, up to [`MAX_TICK`]; a stall is not made up for in a burst).
    fn look(&mut self, objects: usize, now: Instant) -> Look {
        let period = self.pace.period(objects);
        let every = spacing(period, objects);
        let tick = every.clamp(MIN_TICK, MAX_TICK);
        let elapsed = now.saturating_duration_since(self.last);
        let window = elapsed.clamp(tick, MAX_TICK.max(tick));
        let cap = (window.as_secs_f64() / every.as_secs_f64()).max(1.0) + 1.0;
        self.credit = accrue(self.credit, elapsed, objects, period, cap);
        self.last = now;
        Look { period, tick }
    }
}

/// Runs the background lane until `shutdown` resolves, then waits for the refreshes under way.
pub async fn run<B: Background>(
    lane: Arc<B>,
    pace: Pace,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = pace.slots.max(1);
    let permits = Arc::new(Semaphore::new(slots));
    // tokio's clock (the same as std's, except in tests that pause it).
    let clock = || tokio::time::Instant::now().into_std();
    let mut pacer = Pacer::new(pace, clock());
    let mut reported: Option<Instant> = None;
    'looks: loop {
        let now = clock();
        let queue = lane.queue();
        let look = pacer.look(queue.len(), now);
        // The gauges once a second (the backlog is counted from the queue's front).
        if reported.is_none_or(|t| now >= t + MAX_TICK) {
            reported = Some(now);
            let lateness = pace.lateness(queue.oldest(), now, look.period);
            metrics.set_resync(look.period, queue.backlog(now, look.period), lateness);
        }
        let mut after = None;
        while pacer.credit >= 1.0 {
            let Some(next) = queue.next_due(after.as_ref(), now, look.period) else {
                break;
            };
            // A slot: refreshes finish in a round trip, so waiting for one is the pace of the
            // slots, not of the looks.
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("the pacer's semaphore is never closed"),
                _ = &mut shutdown => break 'looks,
            };
            let key = &next.1;
            let Some(obj) = lane.object(key) else {
                // Gone, or no longer in the lane as the cache shows it: looked at again after a
                // period, unless its next event or pass takes it out of the queue first.
                queue.started(key, now);
                after = Some(next);
                continue;
            };
            let Some(held) = lane.busy().try_enter(&obj) else {
                after = Some(next);
                continue; // a change holds it: it is being refreshed anyway
            };
            pacer.credit -= 1.0;
            queue.started(key, now);
            metrics.resynced();
            let lane = lane.clone();
            tokio::spawn(async move {
                let _permit = permit;
                lane.refresh(obj, held).await;
            });
            after = Some(next);
        }
        tokio::select! {
            _ = tokio::time::sleep(look.tick) => {}
            _ = &mut shutdown => break,
        }
    }
    // The refreshes under way finish (each holds a permit).
    let _ = permits.acquire_many(slots as u32).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PipecatAgent;
    use crate::runtime::memory::Memory;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(name: &str) -> Key {
        Key::new(Some("ns"), name)
    }

    #[test]
    fn the_queue_is_never_refreshed_first_then_longest_waiting() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let last = |t| Some(Stamp::Last(t));
        let never = Some(Stamp::Never(t0));
        let mut due = Due::default();
        due.moved(&key("recent"), None, last(t0 + s(50)));
        due.moved(&key("old"), None, last(t0 + s(10)));
        due.moved(&key("never-b"), None, never);
        due.moved(&key("never-a"), None, never);
        due.moved(&key("older"), None, last(t0));
        let order = |due: &Due, now, period| {
            let mut out = Vec::new();
            let mut after = None;
            while let Some(next) = due.next_due(after.as_ref(), now, period) {
                out.push(next.1.name().to_string());
                after = Some(next);
            }
            out
        };
        // 30 s after t0 + 10 s, with a 30 s period: the never refreshed, then "older" and "old".
        assert_eq!(
            order(&due, t0 + s(40), s(30)),
            ["never-a", "never-b", "older", "old"]
        );
        assert_eq!(due.backlog(t0 + s(40), s(30)), 4);
        assert_eq!(order(&due, t0 + s(20), s(30)), ["never-a", "never-b"]);
        assert_eq!(due.oldest(), never);
        // A refresh moves its object to the back; removal takes it out.
        due.moved(&key("never-a"), never, last(t0 + s(60)));
        due.moved(&key("never-b"), never, None);
        assert_eq!(order(&due, t0 + s(40), s(30)), ["older", "old"]);
        assert_eq!(due.oldest(), last(t0));
        assert_eq!(due.len(), 4);
        assert_eq!(
            order(&due, t0 + s(100), s(30)),
            ["older", "old", "recent", "never-a"]
        );
        // A never refreshed object keeps the time it joined; a refresh replaces it.
        assert_eq!(Stamp::of(None, never, t0 + s(5)), Stamp::Never(t0));
        assert_eq!(
            Stamp::of(None, last(t0), t0 + s(5)),
            Stamp::Never(t0 + s(5))
        );
        assert_eq!(
            Stamp::of(Some(t0 + s(9)), never, t0),
            Stamp::Last(t0 + s(9))
        );
        assert_eq!(Stamp::Never(t0 + s(99)).position(), None);
    }

    #[test]
    fn the_period_follows_the_objects_in_the_lane() {
        let s = Duration::from_secs;
        let pace = Pace {
            interval: s(30),
            background_rate: Some(5.0),
            slots: 2,
        };
        let t0 = Instant::now();
        let mut pacer = Pacer::new(pace, t0);
        assert_eq!(pacer.look(10, t0).period, s(30));
        assert_eq!(pacer.look(1_000, t0).period, s(200), "1,000 / 5 per second");
        assert_eq!(pacer.look(0, t0).period, s(30));
        let unlimited = Pace {
            background_rate: None,
            ..pace
        };
        assert_eq!(unlimited.period(1_000_000), s(30));
        // Owed: 10,000 objects over 30 s and 0.1 s later, 33 refreshes (+1 of rounding cap).
        let mut pacer = Pacer::new(unlimited, t0);
        pacer.look(10_000, t0 + Duration::from_millis(100));
        assert_eq!(pacer.credit.floor(), 33.0);
        // Half a second of waiting for slots still counts, a minute of stall does not.
        let mut pacer = Pacer::new(unlimited, t0);
        pacer.look(10_000, t0 + Duration::from_millis(500));
        assert_eq!(pacer.credit.floor(), 166.0);
        let mut pacer = Pacer::new(unlimited, t0);
        pacer.look(10_000, t0 + s(60));
        assert_eq!(pacer.credit.floor(), 334.0);
    }

    #[test]
    fn lateness_is_the_longest_wait_past_the_period() {
        let s = Duration::from_secs;
        let t0 = Instant::now();
        let pace = Pace {
            interval: s(30),
            background_rate: None,
            slots: 2,
        };
        assert_eq!(pace.lateness(None, t0 + s(100), s(30)), s(0), "empty");
        assert_eq!(
            pace.lateness(Some(Stamp::Last(t0)), t0 + s(20), s(30)),
            s(0)
        );
        assert_eq!(
            pace.lateness(Some(Stamp::Last(t0)), t0 + s(144), s(30)),
            s(114)
        );
        // Never refreshed: the first round takes a period from joining the lane.
        assert_eq!(
            pace.lateness(Some(Stamp::Never(t0)), t0 + s(29), s(30)),
            s(0)
        );
        assert_eq!(
            pace.lateness(Some(Stamp::Never(t0)), t0 + s(40), s(30)),
            s(10)
        );
    }

    /// A lane over agents in a memory, recording the refreshes in order.
    struct Fake {
        memory: Memory<PipecatAgent, u32>,
        objects: Mutex<HashMap<Key, Arc<PipecatAgent>>>,
        busy: Busy<PipecatAgent>,
        refreshed: Mutex<Vec<String>>,
        running: AtomicUsize,
    }

    fn agent(name: &str) -> PipecatAgent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"image": "a/b:1"}
        }))
        .unwrap()
    }

    impl Background for Fake {
        type Kind = PipecatAgent;
        fn queue(&self) -> &dyn Queue {
            &self.memory
        }
        fn busy(&self) -> &Busy<PipecatAgent> {
            &self.busy
        }
        fn object(&self, key: &Key) -> Option<Arc<PipecatAgent>> {
            self.objects.lock().unwrap().get(key).cloned()
        }
        async fn refresh(self: Arc<Self>, obj: Arc<PipecatAgent>, held: Held<PipecatAgent>) {
            self.running.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.refreshed
                .lock()
                .unwrap()
                .push(obj.metadata.name.clone().unwrap());
            // The pass's result places the object again (refreshed now).
            self.memory.with_lane(&obj, |_, lane| {
                *lane = Some(Some(tokio::time::Instant::now().into_std()))
            });
            self.running.fetch_sub(1, Ordering::SeqCst);
            drop(held);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn due_objects_are_refreshed_in_order_and_forgotten_ones_never() {
        let fake = Arc::new(Fake {
            memory: Memory::new(|_, _| {}),
            objects: Mutex::default(),
            busy: Busy::default(),
            refreshed: Mutex::default(),
            running: AtomicUsize::new(0),
        });
        let t0 = tokio::time::Instant::now().into_std();
        let s = Duration::from_secs;
        let mut held_by_change = None;
        for (name, position) in [
            ("recent", Some(t0 - s(31))),
            ("oldest", Some(t0 - s(90))),
            ("never", None),
            ("gone", Some(t0 - s(100))),
            ("held", Some(t0 - s(95))),
            ("older", Some(t0 - s(60))),
            ("out", None),
        ] {
            let a = agent(name);
            fake.memory.with_lane(&a, |_, lane| *lane = Some(position));
            if name != "out" {
                fake.objects
                    .lock()
                    .unwrap()
                    .insert(Key::of(&a), Arc::new(a.clone()));
            }
            if name == "held" {
                held_by_change = Some(fake.busy.enter(&a).await);
            }
        }
        fake.memory.forget(&Key::of(&agent("gone")));
        // 6 objects in the lane over 30 s: one refresh every 5 s.
        let pace = Pace {
            interval: s(30),
            background_rate: None,
            slots: 2,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let pacer = tokio::spawn(run(fake.clone(), pace, Arc::default(), async move {
            let _ = stopped.await;
        }));
        // The first round: the four due and free, before the first of them is due again.
        tokio::time::sleep(s(29)).await;
        assert_eq!(
            *fake.refreshed.lock().unwrap(),
            ["never", "oldest", "older", "recent"],
            "never refreshed first, then the longest waiting; the forgotten one, the one a \
             change holds and the one the cache no longer shows in the lane are passed over"
        );
        drop(held_by_change);
        tokio::time::sleep(s(3)).await;
        let refreshed = fake.refreshed.lock().unwrap().clone();
        assert_eq!(
            refreshed[4..],
            ["held"],
            "refreshed once the change let go, before the others come due again"
        );
        tokio::time::sleep(s(60)).await;
        let refreshed = fake.refreshed.lock().unwrap().clone();
        assert!(
            !refreshed.iter().any(|n| n == "gone" || n == "out"),
            "{refreshed:?}"
        );
        stop.send(()).unwrap();
        pacer.await.unwrap();
        assert_eq!(fake.running.load(Ordering::SeqCst), 0, "shutdown waits");
    }
}
