//! Three priorities of work, so that a user's change never waits behind the operator's own
//! polling.
//!
//! - A *change* is anything the status has not caught up with: a new object, a spec change
//!   (`generation` differs from `status.observedGeneration`), a deletion, a pending rotation,
//!   changed credentials. Changes run in kube-runtime's controller ([`super::watch`]), whose
//!   slots they never share with background work.
//! - A *follow-up* is a pass of the same controller on an object whose spec the status already
//!   shows but that is not caught up otherwise ([`follow_up`]): a roll-out being polled, an
//!   error being retried. Its reads go after changes in the rate limiter; its writes are
//!   changes ([`crate::cloud::Lane`]). Under a budget, follow-ups hold at most half the
//!   controller's slots ([`follow_up_slots`]), so that changes always find one.
//! - *Background* work is the periodic refresh (resync) of agents that are caught up: session
//!   counts and drift. The [`pace`] task walks the watch caches and runs the same reconcile
//!   pass for the agents that are due, a few at a time, every read of it in the rate
//!   limiter's background lane ([`crate::cloud::background`]).
//!
//! The resync period stretches to the API budget: with `n` ready agents, `c` calls per resync
//! and a background rate `r` (the rate limit times the share changes leave), one round takes
//! at least `n x c / r`; the period is the longer of that and `--resync-interval`. Refreshes
//! are spread evenly over the period (one every `period / n`), never in bursts.
//!
//! [`Busy`] keeps two passes off the same object at once: a change waits for a refresh under
//! way on its object (and is not lost), a refresh skips an object a change holds, and a newer
//! version of an object promotes the lower-lane pass under way on it ([`Busy::changed`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::debug;

use super::{Context, reconcile, status};
use crate::cloud::{self, Lane, Promotion};
use crate::crd::{PipecatAgent, PipecatAgentStatus};

/// Pipecat Cloud calls of one resync of a ready agent (its `GET`).
pub const CALLS_PER_RESYNC: f64 = 1.0;

/// The shortest and longest pause between two looks at the caches (a look walks every
/// cached object: with refreshes closer than this, one look starts several).
const MIN_TICK: Duration = Duration::from_millis(100);
const MAX_TICK: Duration = Duration::from_secs(1);

/// True when the status shows the current spec live and the last pass successful: such an
/// object belongs to the background lane (after a restart, before this process knows more).
pub fn caught_up(obj: &PipecatAgent, status: Option<&PipecatAgentStatus>) -> bool {
    let Some(status) = status else { return false };
    obj.metadata.deletion_timestamp.is_none()
        && status.ready
        && status.observed_generation == obj.metadata.generation
        // A rotation's redeploy announced and not yet recorded (the operator stopped in the
        // middle): the next pass must settle it, not wait for a resync.
        && status.pending_rotation.is_none()
        && !status
            .conditions
            .iter()
            .any(|c| c.type_ == status::SYNCED && c.status == "False")
}

/// True when a controller pass over `obj` is a follow-up ([`Lane::FollowUp`]): the latest
/// status (`status`: this process's copy, else the object's) already shows its spec
/// (`observedGeneration` is its generation, no deletion, no rotation's redeploy pending) but is
/// not caught up otherwise: a roll-out being polled (not ready) or an error being retried
/// (`Synced=False`). A failed pass does not move `observedGeneration`, so the retry of a spec
/// change that never reached Pipecat Cloud is still a change; a follow-up's write is a change
/// anyway. A caught-up object in the controller was woken by something else (its credentials
/// Secret, a secret set): a change.
pub fn follow_up(obj: &PipecatAgent, status: Option<&PipecatAgentStatus>) -> bool {
    let Some(st) = status else { return false };
    obj.metadata.deletion_timestamp.is_none()
        && st.observed_generation.is_some()
        && st.observed_generation == obj.metadata.generation
        && st.pending_rotation.is_none()
        && !caught_up(obj, status)
}

/// The resync period that fits the budget: `configured`, or longer when `agents` resyncs of
/// [`CALLS_PER_RESYNC`] calls each do not fit in it at `background_rate` requests per second
/// (`None`: unlimited).
pub fn effective_period(
    configured: Duration,
    agents: usize,
    background_rate: Option<f64>,
) -> Duration {
    match background_rate {
        Some(rate) if rate > 0.0 => {
            let needed = agents as f64 * CALLS_PER_RESYNC / rate;
            configured.max(Duration::try_from_secs_f64(needed).unwrap_or(Duration::MAX))
        }
        _ => configured,
    }
}

/// The pause between two refreshes when `agents` are spread over `period`.
pub fn spacing(period: Duration, agents: usize) -> Duration {
    period.div_f64(agents.max(1) as f64)
}

/// Refreshes owed after `elapsed` at a pace of `agents` per `period`, added to `credit` and
/// capped at `cap` (a pacer that could not run, e.g. every slot busy, catches up by at most
/// `cap`, not in a burst).
pub fn accrue(credit: f64, elapsed: Duration, agents: usize, period: Duration, cap: f64) -> f64 {
    let per_second = agents as f64 / period.as_secs_f64().max(f64::MIN_POSITIVE);
    (credit + elapsed.as_secs_f64() * per_second).min(cap)
}

/// One object under way: the lock its passes take in turn, and the lane of the lower-lane pass
/// holding it (a refresh or a follow-up) with the generation it started from, which a change
/// promotes.
#[derive(Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    lower: Mutex<Option<(Arc<Promotion>, Option<i64>)>>,
}

type Slots = Arc<Mutex<HashMap<ObjectRef<PipecatAgent>, Arc<Slot>>>>;

/// The objects a pass is under way for, in either lane, and the controller's slots follow-ups
/// hold.
#[derive(Clone, Default)]
pub struct Busy {
    slots: Slots,
    follow_ups: Arc<AtomicUsize>,
}

/// The controller's slots follow-up passes may hold at once, when the budget is limited:
/// half of `--concurrency` (at least one), so that a follow-up waiting for tokens never keeps
/// a change from starting.
pub fn follow_up_slots(concurrency: u16) -> usize {
    usize::from(concurrency / 2).max(1)
}

/// A controller slot held by a follow-up pass ([`Busy::follow_up`]); given back when dropped.
pub struct FollowUpSlot(Arc<AtomicUsize>);

impl Drop for FollowUpSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One object held by a pass; released when dropped.
pub struct Held {
    slots: Slots,
    key: ObjectRef<PipecatAgent>,
    slot: Option<Arc<Slot>>,
    guard: Option<OwnedMutexGuard<()>>,
    /// The lane of a lower-lane pass (a refresh, a follow-up).
    pub promotion: Option<Arc<Promotion>>,
}

impl Busy {
    fn slot(&self, key: &ObjectRef<PipecatAgent>) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("busy lock")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Holds `obj` for a change, after any refresh under way for it (promoted meanwhile: its
    /// requests no longer wait behind other changes).
    pub async fn enter(&self, obj: &PipecatAgent) -> Held {
        let key = ObjectRef::from_obj(obj);
        let slot = self.slot(&key);
        // Under the slot's lock: a refresh taking the object meanwhile is seen with its lane.
        let free = {
            let lower = slot.lower.lock().expect("slot lock");
            let free = slot.lock.clone().try_lock_owned().ok();
            if free.is_none()
                && let Some((refresh, _)) = lower.as_ref()
            {
                refresh.promote();
            }
            free
        };
        let guard = match free {
            Some(guard) => guard,
            None => slot.lock.clone().lock_owned().await,
        };
        Held {
            slots: self.slots.clone(),
            key,
            slot: Some(slot),
            guard: Some(guard),
            promotion: None,
        }
    }

    /// Holds `obj` for a refresh, unless a pass holds it already.
    pub fn try_enter(&self, obj: &PipecatAgent) -> Option<Held> {
        let key = ObjectRef::from_obj(obj);
        let slot = self.slot(&key);
        let (guard, promotion) = {
            let mut lower = slot.lower.lock().expect("slot lock");
            let guard = slot.lock.clone().try_lock_owned().ok();
            let promotion = guard.as_ref().map(|_| {
                let p = Arc::new(Promotion::new(Lane::Background));
                *lower = Some((p.clone(), obj.metadata.generation));
                p
            });
            (guard, promotion)
        };
        let held = Held {
            slots: self.slots.clone(),
            key,
            slot: Some(slot),
            guard,
            promotion,
        };
        // Dropped without a guard, `held` removes the entry it may have just made.
        held.guard.is_some().then_some(held)
    }

    /// A slot for one more follow-up pass, unless `cap` of them run already (the pass then
    /// comes back later and leaves the controller's slot to changes).
    pub fn follow_up(&self, cap: usize) -> Option<FollowUpSlot> {
        self.follow_ups
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| FollowUpSlot(self.follow_ups.clone()))
    }

    /// A newer version of `obj` arrived (a watch event): a lower-lane pass under way on an
    /// older generation of it, or on it before its deletion, is promoted. The controller runs
    /// one pass per object at a time, so a spec change would otherwise wait behind the
    /// follow-up (a roll-out poll) it queued behind.
    pub fn changed(&self, obj: &PipecatAgent) {
        let slot = self
            .slots
            .lock()
            .expect("busy lock")
            .get(&ObjectRef::from_obj(obj))
            .cloned();
        if let Some(slot) = slot
            && let Some((promotion, generation)) = slot.lower.lock().expect("slot lock").as_ref()
            && (obj.metadata.generation != *generation || obj.metadata.deletion_timestamp.is_some())
        {
            promotion.promote();
        }
    }

    /// Objects held or waited for (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().expect("busy lock").len()
    }
}

impl Held {
    /// Runs the pass holding the object in `lane` (a follow-up; a change needs nothing):
    /// returns its lane for [`cloud::in_lane`], promoted when a newer version of the object
    /// arrives ([`Busy::changed`]).
    pub fn lower(&mut self, lane: Lane, obj: &PipecatAgent) -> Arc<Promotion> {
        let promotion = Arc::new(Promotion::new(lane));
        if let Some(slot) = &self.slot {
            *slot.lower.lock().expect("slot lock") =
                Some((promotion.clone(), obj.metadata.generation));
        }
        self.promotion = Some(promotion.clone());
        promotion
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            if self.promotion.is_some() {
                *slot.lower.lock().expect("slot lock") = None;
            }
            drop(self.guard.take());
            drop(slot);
        }
        let mut slots = self.slots.lock().expect("busy lock");
        // Only the map's own reference left: nobody holds or waits for the object.
        if slots
            .get(&self.key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            slots.remove(&self.key);
        }
    }
}

/// One watch scope as the pacer sees it: its cache, and where follow-ups go (a refresh that
/// found an error or a roll-out hands the object to the change lane).
pub struct Scope {
    /// The scope's reflector cache.
    pub store: Store<PipecatAgent>,
    /// Objects to reconcile in the change lane.
    pub follow_ups: mpsc::UnboundedSender<ObjectRef<PipecatAgent>>,
}

/// Refreshes running at once: a few, whatever the fleet (the budget, not this, sets the pace).
pub fn background_concurrency(concurrency: u16) -> usize {
    usize::from(concurrency / 4).max(2)
}

/// Runs the background lane until `shutdown` resolves, then waits for the refreshes under way.
pub async fn pace(ctx: Arc<Context>, scopes: Vec<Scope>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let listed = futures::future::join_all(scopes.iter().map(|s| s.store.wait_until_ready()));
    tokio::select! {
        _ = listed => {}
        _ = &mut shutdown => return,
    }
    let slots = background_concurrency(ctx.config.concurrency);
    let permits = Arc::new(Semaphore::new(slots));
    let mut credit = 0.0;
    let mut last = Instant::now();
    loop {
        let now = Instant::now();
        let mut agents = 0;
        let mut due = Vec::new();
        let period_floor = ctx.config.resync_interval;
        let mut candidates = Vec::new();
        for (i, scope) in scopes.iter().enumerate() {
            for obj in scope.store.state() {
                if let Some(synced) = ctx.objects.background(&obj) {
                    agents += 1;
                    candidates.push((synced, i, obj));
                }
            }
        }
        let period =
            effective_period(period_floor, agents, ctx.cloud.background_rate()).max(MIN_TICK);
        for (synced, i, obj) in candidates {
            if synced.is_none_or(|t| now >= t + period) {
                due.push((synced, i, obj));
            }
        }
        ctx.metrics.set_resync(period, due.len());
        let every = spacing(period, agents);
        let tick = every.clamp(MIN_TICK, MAX_TICK);
        // At most what one look is due, plus one: refreshes that could not start (all slots
        // busy) are not made up for in a burst.
        let cap = (tick.as_secs_f64() / every.as_secs_f64()).max(1.0) + 1.0;
        credit = accrue(credit, now - last, agents, period, cap);
        last = now;
        // Never refreshed by this process first, then the longest waiting.
        due.sort_by_key(|(synced, _, _)| *synced);
        for (_, i, obj) in due {
            if credit < 1.0 {
                break;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let Some(held) = ctx.busy.try_enter(&obj) else {
                continue; // a change holds it: it is being refreshed anyway
            };
            credit -= 1.0;
            let follow_ups = scopes[i].follow_ups.clone();
            tokio::spawn(refresh(ctx.clone(), obj, held, permit, follow_ups));
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = &mut shutdown => break,
        }
    }
    // The refreshes under way finish (each holds a permit).
    let _ = permits.acquire_many(slots as u32).await;
}

/// One refresh in the background lane; a result that needs the change lane (an error to
/// retry, a roll-out to poll) goes there after its delay.
async fn refresh(
    ctx: Arc<Context>,
    obj: Arc<PipecatAgent>,
    held: Held,
    _permit: OwnedSemaphorePermit,
    follow_ups: mpsc::UnboundedSender<ObjectRef<PipecatAgent>>,
) {
    ctx.metrics.resynced();
    let promotion = held
        .promotion
        .clone()
        .unwrap_or_else(|| Arc::new(Promotion::new(Lane::Background)));
    let next = cloud::in_lane(promotion, reconcile::refresh(obj.clone(), ctx.clone())).await;
    drop(held);
    if let Some(delay) = next {
        let r = ObjectRef::from_obj(&*obj);
        debug!(agent = %r.name, delay_ms = delay.as_millis() as u64, "handed to the change lane");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = follow_ups.send(r);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str) -> PipecatAgent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
            "metadata": {"name": name, "namespace": "ns", "uid": name, "generation": 2},
            "spec": {"image": "a/b:1"}
        }))
        .unwrap()
    }

    #[test]
    fn the_period_stretches_to_the_budget() {
        let s = Duration::from_secs;
        // 200 agents, 4 requests/s, half for resyncs: 100 s per round, not 20.
        assert_eq!(effective_period(s(20), 200, Some(2.0)), s(100));
        // Few agents: the configured interval.
        assert_eq!(effective_period(s(20), 10, Some(2.0)), s(20));
        // Grows with the fleet.
        assert_eq!(effective_period(s(60), 10_000, Some(5.0)), s(2_000));
        // Unlimited: the configured interval, whatever the fleet.
        assert_eq!(effective_period(s(20), 1_000_000, None), s(20));
        assert_eq!(effective_period(s(20), 0, Some(2.0)), s(20));
    }

    #[test]
    fn refreshes_are_spread_evenly_over_the_period() {
        let period = Duration::from_secs(100);
        assert_eq!(spacing(period, 200), Duration::from_millis(500));
        assert_eq!(spacing(period, 0), period);
        // A pacer looking every 100 ms owes one refresh per 500 ms: 2 after a second, and a
        // whole period owes each agent once.
        let tick = Duration::from_millis(100);
        let mut credit = 0.0;
        let mut sent = 0;
        let mut per_second = Vec::new();
        for t in 1..=1000 {
            credit = accrue(credit, tick, 200, period, 4.0);
            while credit >= 1.0 {
                credit -= 1.0;
                sent += 1;
            }
            if t % 10 == 0 {
                per_second.push(sent);
                sent = 0;
            }
        }
        assert_eq!(
            per_second.iter().sum::<u32>(),
            200,
            "one per agent per period"
        );
        assert!(
            per_second.iter().all(|n| *n == 2),
            "not evenly spread: {per_second:?}"
        );
        // A stalled pacer catches up by the cap, not by everything it missed.
        assert_eq!(accrue(0.0, Duration::from_secs(60), 200, period, 4.0), 4.0);
    }

    #[test]
    fn only_caught_up_objects_are_background_work() {
        let a = agent("a");
        let ready = PipecatAgentStatus {
            ready: true,
            observed_generation: Some(2),
            ..Default::default()
        };
        assert!(caught_up(&a, Some(&ready)));
        assert!(!caught_up(&a, None), "new: no status yet");
        let old_generation = PipecatAgentStatus {
            observed_generation: Some(1),
            ..ready.clone()
        };
        assert!(!caught_up(&a, Some(&old_generation)), "a spec change");
        let rolling = PipecatAgentStatus {
            ready: false,
            ..ready.clone()
        };
        assert!(!caught_up(&a, Some(&rolling)), "a roll-out");
        let mut failing = ready.clone();
        failing.conditions.push(
            serde_json::from_value(serde_json::json!({
                "type": "Synced", "status": "False", "reason": "ApiUnavailable",
                "message": "x", "lastTransitionTime": "2026-01-01T00:00:00Z"
            }))
            .unwrap(),
        );
        assert!(!caught_up(&a, Some(&failing)), "an error to retry");
        let mut deleting = a.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert!(!caught_up(&deleting, Some(&ready)), "a deletion");
        let rotating = PipecatAgentStatus {
            pending_rotation: Some(crate::crd::PendingRotation::default()),
            ..ready.clone()
        };
        assert!(!caught_up(&a, Some(&rotating)), "a redeploy to settle");
    }

    #[test]
    fn follow_ups_are_passes_on_a_spec_the_status_already_shows() {
        let a = agent("a");
        let ready = PipecatAgentStatus {
            ready: true,
            observed_generation: Some(2),
            ..Default::default()
        };
        let synced_false = serde_json::from_value(serde_json::json!({
            "type": "Synced", "status": "False", "reason": "ApiUnavailable",
            "message": "x", "lastTransitionTime": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let rolling = PipecatAgentStatus {
            ready: false,
            ..ready.clone()
        };
        assert!(follow_up(&a, Some(&rolling)), "a roll-out being polled");
        let mut failing = ready.clone();
        failing.conditions.push(synced_false);
        assert!(follow_up(&a, Some(&failing)), "an error being retried");

        assert!(
            !follow_up(&a, Some(&ready)),
            "caught up: woken by its credentials or a secret set, a change"
        );
        assert!(!follow_up(&a, None), "new: no status yet");
        let unobserved = PipecatAgentStatus {
            observed_generation: None,
            ..rolling.clone()
        };
        let mut no_generation = a.clone();
        no_generation.metadata.generation = None;
        assert!(
            !follow_up(&no_generation, Some(&unobserved)),
            "nothing observed yet"
        );
        for st in [&rolling, &failing] {
            let old_generation = PipecatAgentStatus {
                observed_generation: Some(1),
                ..st.clone()
            };
            assert!(
                !follow_up(&a, Some(&old_generation)),
                "a spec change (or its retry) is a change"
            );
            let rotating = PipecatAgentStatus {
                pending_rotation: Some(crate::crd::PendingRotation::default()),
                ..st.clone()
            };
            assert!(!follow_up(&a, Some(&rotating)), "a redeploy to settle");
            let mut deleting = a.clone();
            deleting.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
            assert!(!follow_up(&deleting, Some(st)), "a deletion");
        }
    }

    #[test]
    fn follow_ups_hold_at_most_their_share_of_the_slots() {
        assert_eq!(follow_up_slots(16), 8);
        assert_eq!(follow_up_slots(1), 1);
        let busy = Busy::default();
        let first = busy.follow_up(2).expect("a free slot");
        let second = busy.follow_up(2).expect("a free slot");
        assert!(busy.follow_up(2).is_none(), "a third follow-up at once");
        drop(first);
        let third = busy.follow_up(2).expect("given back");
        assert!(busy.follow_up(2).is_none());
        drop((second, third));
        assert!(busy.follow_up(2).is_some());
    }

    #[tokio::test]
    async fn a_newer_version_of_the_object_promotes_the_follow_up_under_way() {
        let busy = Busy::default();
        let a = agent("a");
        let mut held = busy.enter(&a).await;
        let promotion = held.lower(cloud::Lane::FollowUp, &a);
        // Our own status write: the same generation.
        busy.changed(&a);
        assert_eq!(promotion.lane(), cloud::Lane::FollowUp);
        busy.changed(&agent("b"));
        assert_eq!(promotion.lane(), cloud::Lane::FollowUp, "another object");
        let mut newer = a.clone();
        newer.metadata.generation = Some(3);
        busy.changed(&newer);
        assert_eq!(
            promotion.lane(),
            cloud::Lane::Change,
            "a spec change waits behind the follow-up: promoted"
        );

        let mut held_again = {
            drop(held);
            busy.enter(&a).await
        };
        let promotion = held_again.lower(cloud::Lane::FollowUp, &a);
        let mut deleting = a.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        busy.changed(&deleting);
        assert_eq!(promotion.lane(), cloud::Lane::Change, "a deletion");
        drop(held_again);
        assert_eq!(busy.len(), 0, "nothing left behind");
        // No pass under way: nothing to promote, nothing remembered.
        busy.changed(&newer);
        assert_eq!(busy.len(), 0);
    }

    #[tokio::test]
    async fn a_change_waits_for_a_refresh_of_its_object_and_a_refresh_skips_a_held_one() {
        let busy = Busy::default();
        let (a, b) = (agent("a"), agent("b"));
        let lane_of = |held: &Held| {
            let promotion = held.promotion.clone().expect("a refresh's lane");
            cloud::in_lane(promotion, async { cloud::current_lane() })
        };
        let refresh = busy.try_enter(&a).expect("free");
        assert!(busy.try_enter(&a).is_none(), "one pass per object");
        assert_eq!(lane_of(&refresh).await, cloud::Lane::Background);
        let other = busy.try_enter(&b).expect("another object is free");
        drop(other);

        let change = {
            let busy = busy.clone();
            let a = a.clone();
            tokio::spawn(async move { busy.enter(&a).await })
        };
        tokio::task::yield_now().await;
        assert!(!change.is_finished(), "the change waits for the refresh");
        assert_eq!(
            lane_of(&refresh).await,
            cloud::Lane::Change,
            "the refresh a change waits for is promoted"
        );
        drop(refresh);
        let held = change.await.unwrap();
        assert!(
            busy.try_enter(&a).is_none(),
            "a refresh skips an object a change holds"
        );
        drop(held);
        assert_eq!(busy.len(), 0, "nothing left behind");
        assert!(busy.try_enter(&a).is_some());
    }
}
