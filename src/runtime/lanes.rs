//! The priority machinery every kind's passes share, so that a user's change never waits
//! behind the operator's own polling: changes first, then follow-ups, then background work
//! ([`Lane`]).
//!
//! - [`Busy`] keeps two passes off the same object at once: a change waits for a refresh under
//!   way on its object (and is not lost), a refresh skips an object a change holds, and a
//!   newer version of an object promotes the lower-lane pass under way on it
//!   ([`Busy::changed`]). Follow-ups hold at most their share of the controller's slots
//!   ([`follow_up_slots`]).
//! - The resync period stretches to the API budget: with `n` objects to refresh, `c` calls per
//!   resync and a background rate `r` (the rate limit times the share changes leave), one
//!   round takes at least `n x c / r`; the period is the longer of that and the configured
//!   interval ([`effective_period`]). Refreshes are spread evenly over it ([`spacing`],
//!   [`accrue`]), never in bursts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::OwnedMutexGuard;

use crate::cloud::{Lane, Promotion};

/// An object [`Busy`] can hold: a resource of a kind known at compile time.
pub trait Lockable: Resource<DynamicType = ()> + Send + Sync + 'static {}
impl<K: Resource<DynamicType = ()> + Send + Sync + 'static> Lockable for K {}

/// Pipecat Cloud calls of one resync of a ready agent (its `GET`).
pub const CALLS_PER_RESYNC: f64 = 1.0;

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

type Slots<K> = Arc<Mutex<HashMap<ObjectRef<K>, Arc<Slot>>>>;

/// The objects a pass is under way for, in either lane, and the controller's slots follow-ups
/// hold.
pub struct Busy<K: Lockable> {
    slots: Slots<K>,
    follow_ups: Arc<AtomicUsize>,
}

impl<K: Lockable> Clone for Busy<K> {
    fn clone(&self) -> Self {
        Busy {
            slots: self.slots.clone(),
            follow_ups: self.follow_ups.clone(),
        }
    }
}

impl<K: Lockable> Default for Busy<K> {
    fn default() -> Self {
        Busy {
            slots: Arc::default(),
            follow_ups: Arc::default(),
        }
    }
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
pub struct Held<K: Lockable> {
    slots: Slots<K>,
    key: ObjectRef<K>,
    slot: Option<Arc<Slot>>,
    guard: Option<OwnedMutexGuard<()>>,
    /// The lane of a lower-lane pass (a refresh, a follow-up).
    pub promotion: Option<Arc<Promotion>>,
}

impl<K: Lockable> Busy<K> {
    fn slot(&self, key: &ObjectRef<K>) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("busy lock")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Holds `obj` for a change, after any refresh under way for it (promoted meanwhile: its
    /// requests no longer wait behind other changes).
    pub async fn enter(&self, obj: &K) -> Held<K> {
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
    pub fn try_enter(&self, obj: &K) -> Option<Held<K>> {
        let key = ObjectRef::from_obj(obj);
        let slot = self.slot(&key);
        let (guard, promotion) = {
            let mut lower = slot.lower.lock().expect("slot lock");
            let guard = slot.lock.clone().try_lock_owned().ok();
            let promotion = guard.as_ref().map(|_| {
                let p = Arc::new(Promotion::new(Lane::Background));
                *lower = Some((p.clone(), obj.meta().generation));
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
    pub fn changed(&self, obj: &K) {
        let slot = self
            .slots
            .lock()
            .expect("busy lock")
            .get(&ObjectRef::from_obj(obj))
            .cloned();
        if let Some(slot) = slot
            && let Some((promotion, generation)) = slot.lower.lock().expect("slot lock").as_ref()
            && (obj.meta().generation != *generation || obj.meta().deletion_timestamp.is_some())
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

impl<K: Lockable> Held<K> {
    /// Runs the pass holding the object in `lane` (a follow-up; a change needs nothing):
    /// returns its lane for [`crate::cloud::in_lane`], promoted when a newer version of the object
    /// arrives ([`Busy::changed`]).
    pub fn lower(&mut self, lane: Lane, obj: &K) -> Arc<Promotion> {
        let promotion = Arc::new(Promotion::new(lane));
        if let Some(slot) = &self.slot {
            *slot.lower.lock().expect("slot lock") =
                Some((promotion.clone(), obj.meta().generation));
        }
        self.promotion = Some(promotion.clone());
        promotion
    }
}

impl<K: Lockable> Drop for Held<K> {
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

/// Refreshes running at once: a few, whatever the fleet (the budget, not this, sets the pace).
pub fn background_concurrency(concurrency: u16) -> usize {
    usize::from(concurrency / 4).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud;
    use crate::crd::PipecatAgent;

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
    fn follow_ups_hold_at_most_their_share_of_the_slots() {
        assert_eq!(follow_up_slots(16), 8);
        assert_eq!(follow_up_slots(1), 1);
        let busy = Busy::<PipecatAgent>::default();
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
        let busy = Busy::<PipecatAgent>::default();
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
        let busy = Busy::<PipecatAgent>::default();
        let (a, b) = (agent("a"), agent("b"));
        let lane_of = |held: &Held<PipecatAgent>| {
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
