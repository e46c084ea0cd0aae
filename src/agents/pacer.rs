//! The background lane of agents wired into the runtime's pacer ([`crate::runtime::pacer`]):
//! agents that are caught up ([`super::lanes::caught_up`]) wait in the queue their memory
//! keeps ([`super::objects::Objects::queue`]), and each due one gets the same pass
//! ([`super::reconcile::refresh`]) for session counts and drift, every read of it in the rate
//! limiter's background lane ([`crate::cloud::background`]), at the period the API budget
//! allows ([`crate::runtime::lanes::effective_period`]).

use std::future::Future;
use std::sync::Arc;

use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;
use tracing::debug;

use super::context::Context;
use super::reconcile;
use crate::cloud::{self, Lane, Promotion};
use crate::crd::PipecatAgent;
use crate::runtime::key::Key;
use crate::runtime::lanes::{Busy, Held, background_concurrency};
use crate::runtime::pacer::{self, Background, Pace, Queue};

/// One watch scope as the pacer sees it: its cache, and where follow-ups go (a refresh that
/// found an error or a roll-out hands the object to the change lane).
pub struct Scope {
    /// The scope's reflector cache.
    pub store: Store<PipecatAgent>,
    /// Objects to reconcile in the change lane.
    pub follow_ups: mpsc::UnboundedSender<ObjectRef<PipecatAgent>>,
}

/// The agents' background lane: their queue, caches and follow-up channels.
struct Agents {
    ctx: Arc<Context>,
    scopes: Vec<Scope>,
}

impl Agents {
    /// The cached object under `key`, with the scope that holds it.
    fn cached(&self, key: &Key) -> Option<(&Scope, Arc<PipecatAgent>)> {
        let r = key.object_ref();
        self.scopes
            .iter()
            .find_map(|s| s.store.get(&r).map(|obj| (s, obj)))
    }
}

impl Background for Agents {
    type Kind = PipecatAgent;

    fn queue(&self) -> &dyn Queue {
        self.ctx.objects.queue()
    }

    fn busy(&self) -> &Busy<PipecatAgent> {
        &self.ctx.busy
    }

    fn object(&self, key: &Key) -> Option<Arc<PipecatAgent>> {
        self.cached(key)
            .map(|(_, obj)| obj)
            .filter(|obj| self.ctx.objects.background(obj).is_some())
    }

    /// One refresh in the background lane; a result that needs the change lane (an error to
    /// retry, a roll-out to poll) goes there after its delay.
    async fn refresh(self: Arc<Self>, obj: Arc<PipecatAgent>, held: Held<PipecatAgent>) {
        let ctx = self.ctx.clone();
        let promotion = held
            .promotion
            .clone()
            .unwrap_or_else(|| Arc::new(Promotion::new(Lane::Background)));
        let next = cloud::in_lane(promotion, reconcile::refresh(obj.clone(), ctx)).await;
        drop(held);
        if let Some(delay) = next {
            let key = Key::of(&*obj);
            let Some((scope, _)) = self.cached(&key) else {
                return;
            };
            let follow_ups = scope.follow_ups.clone();
            let r = key.object_ref();
            debug!(agent = %r.name, delay_ms = delay.as_millis() as u64, "handed to the change lane");
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = follow_ups.send(r);
            });
        }
    }
}

/// Runs the background lane until `shutdown` resolves (once every scope has listed), then
/// waits for the refreshes under way.
pub async fn pace(ctx: Arc<Context>, scopes: Vec<Scope>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let listed = futures::future::join_all(scopes.iter().map(|s| s.store.wait_until_ready()));
    tokio::select! {
        _ = listed => {}
        _ = &mut shutdown => return,
    }
    let pace = Pace {
        interval: ctx.config.resync_interval,
        background_rate: ctx.cloud.background_rate(),
        slots: background_concurrency(ctx.config.concurrency),
    };
    let metrics = ctx.metrics.clone();
    pacer::run(Arc::new(Agents { ctx, scopes }), pace, metrics, shutdown).await;
}
