//! The background lane of agents: the periodic refresh (resync) of agents that are caught up
//! ([`super::lanes::caught_up`]): session counts and drift. [`pace`] walks the watch caches
//! and runs the same pass ([`super::reconcile::refresh`]) for the agents that are due, a few at
//! a time, every read of it in the rate limiter's background lane
//! ([`crate::cloud::background`]), at the period the API budget allows
//! ([`crate::runtime::lanes::effective_period`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::debug;

use super::context::Context;
use super::reconcile;
use crate::cloud::{self, Lane, Promotion};
use crate::crd::PipecatAgent;
use crate::runtime::lanes::{Held, accrue, background_concurrency, effective_period, spacing};

/// The shortest and longest pause between two looks at the caches (a look walks every
/// cached object: with refreshes closer than this, one look starts several).
const MIN_TICK: Duration = Duration::from_millis(100);
const MAX_TICK: Duration = Duration::from_secs(1);

/// One watch scope as the pacer sees it: its cache, and where follow-ups go (a refresh that
/// found an error or a roll-out hands the object to the change lane).
pub struct Scope {
    /// The scope's reflector cache.
    pub store: Store<PipecatAgent>,
    /// Objects to reconcile in the change lane.
    pub follow_ups: mpsc::UnboundedSender<ObjectRef<PipecatAgent>>,
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
    held: Held<PipecatAgent>,
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
