//! The background pacer's own cost, isolated: N caught-up agents in a reflector store and the
//! agents' per-object memory, refreshes that do nothing but record the pass's success, and the
//! process's CPU seconds over the run (from `/proc/self/stat`). `after` is the pacer of this
//! tree (`runtime::pacer::run` over the due queue); `before` is a copy of the pacer it replaced
//! (every look walks every cached object), kept here only to measure against.
//!
//! `cargo run --release --example pacer_cost -- MODE [AGENTS] [SECONDS]`
//! (MODE `before` or `after`; defaults: 30000 agents, 105 seconds, `--resync-interval 30s`,
//! no API limit, `--concurrency 32`: 8 refresh slots).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use pipecat_operator::agents::objects::Objects;
use pipecat_operator::crd::{PipecatAgent, PipecatAgentStatus};
use pipecat_operator::metrics::Metrics;
use pipecat_operator::runtime::key::Key;
use pipecat_operator::runtime::lanes::{
    Busy, Held, accrue, background_concurrency, effective_period, spacing,
};
use pipecat_operator::runtime::pacer::{self, Background, Pace, Queue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const INTERVAL: Duration = Duration::from_secs(30);
const CONCURRENCY: u16 = 32;

/// User and system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn agent(i: usize) -> PipecatAgent {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
        "metadata": {
            "name": format!("agent-{i:05}"), "namespace": "bench",
            "uid": format!("00000000-0000-0000-0000-{i:012}"), "generation": 1,
            "resourceVersion": "1", "finalizers": ["pipecat.daily.co/cleanup"]
        },
        "spec": {"image": "dailyco/voice-starter:latest", "secretSet": "voice-starter-secrets"},
        "status": PipecatAgentStatus {
            ready: true,
            observed_generation: Some(1),
            ..Default::default()
        }
    }))
    .unwrap()
}

struct Lane {
    store: Store<PipecatAgent>,
    objects: Objects,
    busy: Busy<PipecatAgent>,
    refreshes: AtomicUsize,
}

impl Lane {
    /// What a refresh leaves behind besides its Pipecat read: the pass's success.
    fn refreshed(&self, obj: &PipecatAgent) {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        self.objects.succeeded(obj, true);
    }
}

impl Background for Lane {
    type Kind = PipecatAgent;
    fn queue(&self) -> &dyn Queue {
        self.objects.queue()
    }
    fn busy(&self) -> &Busy<PipecatAgent> {
        &self.busy
    }
    fn object(&self, key: &Key) -> Option<Arc<PipecatAgent>> {
        self.store
            .get(&key.object_ref())
            .filter(|obj| self.objects.background(obj).is_some())
    }
    async fn refresh(self: Arc<Self>, obj: Arc<PipecatAgent>, held: Held<PipecatAgent>) {
        self.refreshed(&obj);
        drop(held);
    }
}

/// The pacer before the due queue (`agents::pacer::pace` at 0a2a4a5), its refresh replaced.
async fn pace_before(lane: Arc<Lane>, shutdown: impl Future<Output = ()>) {
    const MIN_TICK: Duration = Duration::from_millis(100);
    const MAX_TICK: Duration = Duration::from_secs(1);
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = background_concurrency(CONCURRENCY);
    let permits = Arc::new(Semaphore::new(slots));
    let mut credit = 0.0;
    let mut last = Instant::now();
    loop {
        let now = Instant::now();
        let mut agents = 0;
        let mut due = Vec::new();
        let mut candidates = Vec::new();
        for obj in lane.store.state() {
            if let Some(synced) = lane.objects.background(&obj) {
                agents += 1;
                candidates.push((synced, obj));
            }
        }
        let period = effective_period(INTERVAL, agents, None).max(MIN_TICK);
        for (synced, obj) in candidates {
            if synced.is_none_or(|t| now >= t + period) {
                due.push((synced, obj));
            }
        }
        let every = spacing(period, agents);
        let tick = every.clamp(MIN_TICK, MAX_TICK);
        let cap = (tick.as_secs_f64() / every.as_secs_f64()).max(1.0) + 1.0;
        credit = accrue(credit, now - last, agents, period, cap);
        last = now;
        due.sort_by_key(|(synced, _)| *synced);
        for (_, obj) in due {
            if credit < 1.0 {
                break;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let Some(held) = lane.busy.try_enter(&obj) else {
                continue;
            };
            credit -= 1.0;
            let lane = lane.clone();
            tokio::spawn(async move {
                let _permit: OwnedSemaphorePermit = permit;
                lane.refreshed(&obj);
                drop(held);
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = &mut shutdown => break,
        }
    }
    let _ = permits.acquire_many(slots as u32).await;
}

#[tokio::main(worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "after".into());
    let agents: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(105);
    let (store, mut writer) = reflector::store::<PipecatAgent>();
    let objects = Objects::new(Arc::new(Metrics::new()));
    writer.apply_watcher_event(&watcher::Event::Init);
    for i in 0..agents {
        let a = agent(i);
        writer.apply_watcher_event(&watcher::Event::InitApply(a.clone()));
        // As the watch's caught-up check does for every listed agent.
        objects.sort(&a);
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let lane = Arc::new(Lane {
        store,
        objects,
        busy: Busy::default(),
        refreshes: AtomicUsize::new(0),
    });
    let run = Duration::from_secs(seconds);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let shutdown = tokio::time::sleep(run);
    match mode.as_str() {
        "before" => pace_before(lane.clone(), shutdown).await,
        "after" => {
            let pace = Pace {
                interval: INTERVAL,
                background_rate: None,
                slots: background_concurrency(CONCURRENCY),
            };
            pacer::run(lane.clone(), pace, Arc::new(Metrics::new()), shutdown).await
        }
        other => panic!("MODE is before or after, not {other}"),
    }
    let cpu = cpu_seconds() - cpu;
    let wall = started.elapsed().as_secs_f64();
    let refreshes = lane.refreshes.load(Ordering::Relaxed);
    println!(
        "{mode}: {agents} agents, {wall:.1} s: {cpu:.2} CPU-s ({:.2} per 105 s), {refreshes} refreshes ({:.0} a minute; one per agent every {:.0} s)",
        cpu * 105.0 / wall,
        refreshes as f64 * 60.0 / wall,
        agents as f64 * wall / refreshes.max(1) as f64,
    );
}
