//! Client-side rate limiting toward Pipecat Cloud: a token bucket shared by every request, three
//! priorities, and a whole-client pause when the server keeps answering 429.
//!
//! Every request belongs to a [`Lane`], first to last:
//!
//! 1. **[`Lane::Change`]**: something the status has not caught up with yet (a new object, a
//!    spec change, a deletion, a ready agent woken by its credentials or secret set), and every
//!    write. Changes reserve tokens first come, first served.
//! 2. **[`Lane::FollowUp`]**: following up on something already seen (a roll-out being polled,
//!    an error being retried). A follow-up read takes a token only when it is free and no
//!    change waits for it, and waits while the change lane is occupied ([`RateLimiter::occupy`]:
//!    work under way that will make more requests, so that the second request of a change
//!    finds its token too); it has no share cap. It waits only while changes use the budget.
//! 3. **[`Lane::Background`]**: periodic refreshes. Like a follow-up, and it also waits while
//!    the follow-up lane is occupied, and for a token of its own share (`rate x background
//!    share`), so that changes always find tokens left.
//!
//! How a task says its lane: a task outside any scope is a change; [`in_lane`] runs a future
//! in a lower lane, kept in a tokio task-local as an [`Arc<Promotion>`] (and [`background`]
//! is its shorthand), so every request it makes is in that lane without a parameter. It is
//! promoted ([`Promotion::promote`]: its requests are changes from then on) when its caller
//! says so, and by its first write ([`RateLimiter::acquire_write`]): a write is always a change,
//! it never waits behind reads. What a lane means for a controller is
//! [`crate::runtime::lanes`]'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Longest whole-client pause after repeated 429s.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// The priority of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Something the status has not caught up with, and every write: first served.
    Change,
    /// Following up (a roll-out being polled, an error being retried): only tokens no change
    /// is waiting for, and none while the change lane is occupied.
    FollowUp,
    /// A periodic refresh: as a follow-up, also never while the follow-up lane is occupied,
    /// and within its share.
    Background,
}

/// The lane of a task's requests below [`Lane::Change`], which may be promoted to a change
/// (its own write, or its caller, must not wait behind polling).
#[derive(Debug)]
pub struct Promotion {
    lane: Lane,
    promoted: AtomicBool,
    notify: Notify,
}

impl Promotion {
    /// Requests in `lane` until promoted.
    pub fn new(lane: Lane) -> Self {
        Promotion {
            lane,
            promoted: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    /// From now on, the task's requests are changes (a request waiting already goes at once).
    pub fn promote(&self) {
        self.promoted.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// The task's lane now.
    pub fn lane(&self) -> Lane {
        if self.promoted.load(Ordering::SeqCst) {
            Lane::Change
        } else {
            self.lane
        }
    }
}

tokio::task_local! {
    static LANE: Arc<Promotion>;
}

/// Runs `fut` with every Pipecat Cloud request it makes in `promotion`'s lane (until it is
/// promoted). The one way to put a task in a lane other than [`Lane::Change`].
pub async fn in_lane<F: std::future::Future>(promotion: Arc<Promotion>, fut: F) -> F::Output {
    LANE.scope(promotion, fut).await
}

/// Runs `fut` in the background lane ([`in_lane`] with a fresh [`Lane::Background`]).
pub async fn background<F: std::future::Future>(fut: F) -> F::Output {
    in_lane(Arc::new(Promotion::new(Lane::Background)), fut).await
}

/// The lane of the current task: the one of [`in_lane`] (unless promoted), a change outside.
pub fn current_lane() -> Lane {
    LANE.try_with(|p| p.lane()).unwrap_or(Lane::Change)
}

/// A token bucket (requests per second with a burst) with three priorities, plus a 429 brake.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    /// The share of `rate` background requests may use (0..=1).
    background_share: f64,
    background_burst: f64,
    state: Mutex<State>,
    /// Work under way in each lane that will make more requests.
    occupied: watch::Sender<Occupancy>,
}

#[derive(Debug)]
struct State {
    /// Tokens of the whole bucket; below zero, reserved by waiting changes.
    tokens: f64,
    /// Tokens of the background share.
    background_tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    consecutive_429: u32,
}

/// Work under way, by lane: each holds the lanes below it.
#[derive(Clone, Copy, Debug, Default)]
struct Occupancy {
    changes: usize,
    follow_ups: usize,
}

impl Occupancy {
    /// True when a request of `lane` must let the work under way go first.
    fn hold(&self, lane: Lane) -> bool {
        match lane {
            Lane::Change => false,
            Lane::FollowUp => self.changes > 0,
            Lane::Background => self.changes > 0 || self.follow_ups > 0,
        }
    }

    fn count(&mut self, lane: Lane) -> Option<&mut usize> {
        match lane {
            Lane::Change => Some(&mut self.changes),
            Lane::FollowUp => Some(&mut self.follow_ups),
            Lane::Background => None,
        }
    }
}

/// Occupies a lane (see [`RateLimiter::occupy`]) until dropped.
#[must_use = "the lane counts as occupied only while the guard lives"]
pub struct Occupied<'a> {
    occupied: &'a watch::Sender<Occupancy>,
    lane: Lane,
}

impl Drop for Occupied<'_> {
    fn drop(&mut self) {
        self.occupied
            .send_if_modified(|p| match p.count(self.lane) {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    true
                }
                None => false,
            });
    }
}

impl RateLimiter {
    /// `rate` requests per second on average, up to `burst` at once, all of it for changes
    /// when they need it. A rate of 0 disables the bucket (the 429 brake still applies).
    pub fn new(rate: f64, burst: u32) -> Self {
        Self::with_background_share(rate, burst, 1.0)
    }

    /// Like [`RateLimiter::new`], with background requests limited to `share` of the rate
    /// (and of the burst, at least one request).
    pub fn with_background_share(rate: f64, burst: u32, share: f64) -> Self {
        let burst = f64::from(burst.max(1));
        let share = share.clamp(0.0, 1.0);
        let background_burst = (burst * share).max(1.0);
        RateLimiter {
            rate,
            burst,
            background_share: share,
            background_burst,
            state: Mutex::new(State {
                tokens: burst,
                background_tokens: background_burst,
                last: Instant::now(),
                paused_until: None,
                consecutive_429: 0,
            }),
            occupied: watch::Sender::new(Occupancy::default()),
        }
    }

    /// Requests per second background work may make on average; `None` when unlimited.
    pub fn background_rate(&self) -> Option<f64> {
        (self.rate > 0.0).then_some(self.rate * self.background_share)
    }

    /// Occupies `lane` until the guard is dropped: work under way in it will make more
    /// requests, and lower lanes wait meanwhile, also between those requests (the change lane
    /// holds follow-ups and background requests, the follow-up lane holds background
    /// requests; the background lane holds nothing).
    pub fn occupy(&self, lane: Lane) -> Occupied<'_> {
        self.occupied.send_if_modified(|p| match p.count(lane) {
            Some(n) => {
                *n += 1;
                true
            }
            None => false,
        });
        Occupied {
            occupied: &self.occupied,
            lane,
        }
    }

    fn refill(&self, st: &mut State, now: Instant) {
        if self.rate > 0.0 {
            let elapsed = now.saturating_duration_since(st.last).as_secs_f64();
            st.tokens = (st.tokens + elapsed * self.rate).min(self.burst);
            st.background_tokens = (st.background_tokens
                + elapsed * self.rate * self.background_share)
                .min(self.background_burst);
        }
        st.last = now;
    }

    /// Reserves a change's slot and returns when it may be used (now, or later).
    pub fn reserve(&self) -> Instant {
        let mut st = self.state.lock().expect("rate limiter lock");
        let now = Instant::now();
        let mut at = st.paused_until.filter(|p| *p > now).unwrap_or(now);
        if self.rate > 0.0 {
            self.refill(&mut st, now);
            st.tokens -= 1.0;
            if st.tokens < 0.0 {
                at = at.max(now + Duration::from_secs_f64(-st.tokens / self.rate));
            }
        }
        at
    }

    /// A slot for a follow-up or background request if one is free now; otherwise when to
    /// look again (`None`: when the work it yields to has ended).
    fn try_lower(&self, lane: Lane) -> Result<(), Option<Instant>> {
        let mut st = self.state.lock().expect("rate limiter lock");
        let now = Instant::now();
        if let Some(p) = st.paused_until.filter(|p| *p > now) {
            return Err(Some(p));
        }
        if self.rate <= 0.0 {
            // Unlimited: there is no token a change could miss.
            return Ok(());
        }
        if self.occupied.borrow().hold(lane) {
            return Err(None);
        }
        self.refill(&mut st, now);
        // A free token of the bucket: at least one whole, so none a waiting change reserved
        // (their reservations take the count below zero).
        let missing = (1.0 - st.tokens).max(0.0) / self.rate;
        if lane == Lane::FollowUp {
            if st.tokens >= 1.0 {
                st.tokens -= 1.0;
                return Ok(());
            }
            // A change arriving meanwhile takes it, and this looks again.
            return Err(Some(now + Duration::from_secs_f64(missing)));
        }
        if st.tokens >= 1.0 && st.background_tokens >= 1.0 {
            st.tokens -= 1.0;
            st.background_tokens -= 1.0;
            return Ok(());
        }
        // Wait for a free token of the bucket and one of the share.
        let missing_share =
            (1.0 - st.background_tokens).max(0.0) / (self.rate * self.background_share);
        let wait = missing.max(missing_share);
        if !wait.is_finite() {
            // A share of zero: background requests never get a token.
            return Err(Some(now + MAX_PAUSE));
        }
        Err(Some(now + Duration::from_secs_f64(wait)))
    }

    /// Waits for a slot for a read in the current task's lane ([`current_lane`]); returns how
    /// long it waited.
    pub async fn acquire(&self) -> Duration {
        match LANE.try_with(|p| p.clone()) {
            Ok(promotion) => self.acquire_lower(&promotion).await,
            Err(_) => self.acquire_change().await,
        }
    }

    /// Waits for a slot for a write (create, update, delete): always a change, and it
    /// promotes the current task (its later requests are changes too).
    pub async fn acquire_write(&self) -> Duration {
        let _ = LANE.try_with(|p| p.promote());
        self.acquire_change().await
    }

    /// Waits for a slot in `lane`; returns how long it waited.
    pub async fn acquire_in(&self, lane: Lane) -> Duration {
        match lane {
            Lane::Change => self.acquire_change().await,
            lane => self.acquire_lower(&Promotion::new(lane)).await,
        }
    }

    async fn acquire_change(&self) -> Duration {
        let start = Instant::now();
        let at = self.reserve();
        if at > start {
            tokio::time::sleep_until(at).await;
        }
        start.elapsed()
    }

    /// A slot in `promotion`'s lane, or a change's once it is promoted.
    async fn acquire_lower(&self, promotion: &Promotion) -> Duration {
        let start = Instant::now();
        loop {
            let promoted = promotion.notify.notified();
            let mut promoted = std::pin::pin!(promoted);
            promoted.as_mut().enable();
            let lane = promotion.lane();
            if lane == Lane::Change {
                return start.elapsed() + self.acquire_change().await;
            }
            match self.try_lower(lane) {
                Ok(()) => return start.elapsed(),
                Err(Some(at)) => tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = promoted => {}
                },
                Err(None) => {
                    let mut rx = self.occupied.subscribe();
                    // The work may have ended already: `wait_for` checks first.
                    tokio::select! {
                        _ = rx.wait_for(|p| !p.hold(lane)) => {}
                        _ = promoted => {}
                    }
                }
            }
        }
    }

    /// Feeds back a response: `Some(retry_after)` for a 429, `None` for anything else.
    /// A single 429 is the object's business (its own backoff); a second one in a row slows the
    /// whole client, doubling the pause each time.
    pub fn on_response(&self, rate_limited: Option<Option<Duration>>) {
        let mut st = self.state.lock().expect("rate limiter lock");
        match rate_limited {
            None => st.consecutive_429 = 0,
            Some(retry_after) => {
                st.consecutive_429 = st.consecutive_429.saturating_add(1);
                if st.consecutive_429 >= 2 {
                    let base = retry_after.unwrap_or(Duration::from_secs(1));
                    let pause = base
                        .saturating_mul(1 << (st.consecutive_429 - 2).min(6))
                        .min(MAX_PAUSE);
                    let until = Instant::now() + pause;
                    st.paused_until = Some(st.paused_until.map_or(until, |p| p.max(until)));
                }
            }
        }
    }

    /// The end of the current whole-client pause, if any.
    pub fn paused_until(&self) -> Option<Instant> {
        let st = self.state.lock().expect("rate limiter lock");
        st.paused_until.filter(|p| *p > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // No timing figures: `reserve` does not sleep, so each bound below is exact up to float
    // rounding, measured against instants taken before and after the calls.

    #[test]
    fn burst_then_steady_rate() {
        let before = Instant::now();
        // One token per 10 s: the checks hold unless this thread stalls for seconds.
        let rl = RateLimiter::new(0.1, 5);
        // The burst goes at once.
        for _ in 0..5 {
            let at = rl.reserve();
            assert!(at <= Instant::now(), "a burst slot had to wait");
        }
        // The next ones are spaced by 1/rate: the sixth waits for the first token to come back,
        // 10 s after the bucket was made.
        let sixth = rl.reserve();
        let tenth = (0..4).map(|_| rl.reserve()).last().unwrap();
        assert!(
            sixth >= before + Duration::from_millis(9_999),
            "{:?}",
            sixth - before
        );
        let spacing = tenth - sixth;
        assert!(
            spacing >= Duration::from_millis(39_990) && spacing <= Duration::from_millis(40_010),
            "{spacing:?}"
        );
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let rl = RateLimiter::new(0.0, 1);
        for _ in 0..1000 {
            let at = rl.reserve();
            assert!(at <= Instant::now(), "an unlimited client had to wait");
        }
    }

    /// `paused_until` right after a call made between `before` and now, expected `pause` long.
    fn assert_pause(rl: &RateLimiter, before: Instant, pause: Duration) -> Instant {
        let after = Instant::now();
        let until = rl.paused_until().expect("paused");
        assert!(
            until >= before + pause && until <= after + pause,
            "pause of {:?}..{:?}, expected {pause:?}",
            until - after,
            until - before
        );
        until
    }

    #[test]
    fn repeated_429_pauses_the_whole_client() {
        let rl = RateLimiter::new(0.0, 1);
        let retry_after = Some(Duration::from_secs(3));
        rl.on_response(Some(retry_after));
        assert!(
            rl.paused_until().is_none(),
            "one 429 is the object's business"
        );
        let before = Instant::now();
        rl.on_response(Some(retry_after));
        let second = assert_pause(&rl, before, Duration::from_secs(3));
        assert!(rl.reserve() >= second, "requests wait for the pause");
        // A third 429 in a row doubles it.
        let before = Instant::now();
        rl.on_response(Some(retry_after));
        let third = assert_pause(&rl, before, Duration::from_secs(6));
        assert!(third > second, "a third 429 extends the pause");

        // Any other answer ends the streak: the pause already set still holds, but a single
        // 429 afterwards is the object's business again (without the reset it would be the
        // fourth in a row and pause 40 s).
        rl.on_response(None);
        rl.on_response(Some(Some(Duration::from_secs(10))));
        assert_eq!(
            rl.paused_until(),
            Some(third),
            "a first 429 after the streak changed the pause"
        );
        // The next one pauses from the start again: Retry-After itself, not doubled (it
        // would be 60 s, the longest pause, as the fifth in a row).
        let before = Instant::now();
        rl.on_response(Some(Some(Duration::from_secs(10))));
        assert_pause(&rl, before, Duration::from_secs(10));
    }
}

#[cfg(test)]
mod lane_tests {
    use std::sync::Arc;

    use super::*;

    // Paused tokio time: the clock only moves when every task waits, so the order of grants
    // is exact, never a race against a real clock.

    /// Grants in order of arrival: (label, virtual instant).
    type Log = Arc<Mutex<Vec<(&'static str, Instant)>>>;

    fn spawn(rl: &Arc<RateLimiter>, log: &Log, label: &'static str, lane: Lane) {
        let (rl, log) = (rl.clone(), log.clone());
        tokio::spawn(async move {
            rl.acquire_in(lane).await;
            log.lock().unwrap().push((label, Instant::now()));
        });
    }

    fn labels(log: &Log) -> Vec<&'static str> {
        log.lock().unwrap().iter().map(|(l, _)| *l).collect()
    }

    /// A request of `lane` that waited longer still goes after two changes that came later.
    async fn changes_go_before(lane: Lane, label: &'static str) {
        let rl = Arc::new(RateLimiter::with_background_share(1.0, 1, 0.5));
        let log: Log = Arc::default();
        rl.acquire_in(Lane::Change).await; // the bucket is empty now
        spawn(&rl, &log, label, lane);
        tokio::task::yield_now().await;
        spawn(&rl, &log, "change", Lane::Change);
        spawn(&rl, &log, "second change", Lane::Change);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            labels(&log),
            ["change", "second change", label],
            "{label} took a token a change was waiting for"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_goes_before_a_background_request_that_waited_longer() {
        changes_go_before(Lane::Background, "background").await;
    }

    #[tokio::test(start_paused = true)]
    async fn background_waits_while_the_change_lane_is_occupied() {
        let rl = Arc::new(RateLimiter::with_background_share(1.0, 5, 0.5));
        let log: Log = Arc::default();
        let change = rl.occupy(Lane::Change);
        spawn(&rl, &log, "background", Lane::Background);
        // Tokens are there, but the change may need them for its next request.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            labels(&log).is_empty(),
            "background ran while the change lane was occupied"
        );
        rl.acquire_in(Lane::Change).await;
        drop(change);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            labels(&log),
            ["background"],
            "released when the lane is free"
        );

        // Unlimited: there is no token to keep, background never waits.
        let unlimited = Arc::new(RateLimiter::with_background_share(0.0, 1, 0.5));
        let _change = unlimited.occupy(Lane::Change);
        spawn(&unlimited, &log, "unlimited", Lane::Background);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(labels(&log), ["background", "unlimited"]);
    }

    #[tokio::test(start_paused = true)]
    async fn background_uses_only_its_share_and_leaves_changes_their_burst() {
        // 10 requests/s, burst 10; background 20% of it: 2/s, burst 2.
        let rl = Arc::new(RateLimiter::with_background_share(10.0, 10, 0.2));
        let start = Instant::now();
        let mut granted = 0;
        while Instant::now() < start + Duration::from_secs(10) {
            rl.acquire_in(Lane::Background).await;
            granted += 1;
        }
        // The share's burst, then 2 per second (the last grant may land at exactly 10 s).
        assert!(
            (21..=23).contains(&granted),
            "background got {granted} requests in 10 s"
        );
        // The whole bucket refilled meanwhile: changes find its burst at once (less the
        // background request granted this instant).
        let before = Instant::now();
        for _ in 0..9 {
            rl.acquire_in(Lane::Change).await;
        }
        assert_eq!(
            Instant::now(),
            before,
            "a change waited behind background work"
        );
    }

    /// The lanes a task saw, in order (asserted by the test itself: a panic inside a spawned
    /// task would be lost with its handle).
    type Lanes = Arc<Mutex<Vec<(&'static str, Lane)>>>;

    fn lanes(seen: &Lanes) -> Vec<(&'static str, Lane)> {
        seen.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_promoted_background_request_goes_as_a_change() {
        let rl = Arc::new(RateLimiter::with_background_share(1.0, 1, 0.5));
        let log: Log = Arc::default();
        let seen: Lanes = Arc::default();
        let change = rl.occupy(Lane::Change);
        let promotion = Arc::new(Promotion::new(Lane::Background));
        let refresh = {
            let (rl, log, seen, promotion) =
                (rl.clone(), log.clone(), seen.clone(), promotion.clone());
            tokio::spawn(in_lane(promotion, async move {
                seen.lock().unwrap().push(("before", current_lane()));
                rl.acquire().await;
                log.lock().unwrap().push(("refresh", Instant::now()));
                // Its later requests are changes too.
                seen.lock().unwrap().push(("after", current_lane()));
            }))
        };
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            labels(&log).is_empty(),
            "background ran while the change lane was occupied"
        );
        promotion.promote();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(labels(&log), ["refresh"], "promoted: served as a change");
        refresh.await.expect("the refresh task");
        assert_eq!(
            lanes(&seen),
            [("before", Lane::Background), ("after", Lane::Change)],
            "its later requests are changes"
        );
        drop(change);

        // Waiting for its share's token (one per 10 s): promoted, it takes the bucket's at once.
        let rl = Arc::new(RateLimiter::with_background_share(1.0, 1, 0.1));
        rl.acquire_in(Lane::Background).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let promotion = Arc::new(Promotion::new(Lane::Background));
        let share = {
            let (rl, log, promotion) = (rl.clone(), log.clone(), promotion.clone());
            tokio::spawn(in_lane(promotion, async move {
                rl.acquire().await;
                log.lock().unwrap().push(("share", Instant::now()));
            }))
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(labels(&log), ["refresh"], "the share's token is 8 s away");
        promotion.promote();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            labels(&log),
            ["refresh", "share"],
            "promoted: no wait for the share"
        );
        share.await.expect("the share task");
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_up_never_takes_a_token_a_waiting_change_needs() {
        changes_go_before(Lane::FollowUp, "follow-up").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_up_waits_while_the_change_lane_is_occupied_but_not_for_follow_ups() {
        let rl = Arc::new(RateLimiter::with_background_share(1.0, 5, 0.5));
        let log: Log = Arc::default();
        // An occupied follow-up lane does not hold it: tokens are there, it goes.
        let poll = rl.occupy(Lane::FollowUp);
        spawn(&rl, &log, "during a follow-up", Lane::FollowUp);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(labels(&log), ["during a follow-up"]);
        drop(poll);

        let change = rl.occupy(Lane::Change);
        spawn(&rl, &log, "during a change", Lane::FollowUp);
        // Tokens are there, but the change may need them for its next call.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            labels(&log),
            ["during a follow-up"],
            "a follow-up ran while the change lane was occupied"
        );
        rl.acquire_in(Lane::Change).await;
        drop(change);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            labels(&log),
            ["during a follow-up", "during a change"],
            "released when the change lane is free"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn background_waits_for_the_follow_up_lane_which_has_no_share_cap() {
        // Background: 10% of 1/s, a burst of 1.
        let rl = Arc::new(RateLimiter::with_background_share(1.0, 5, 0.1));
        let log: Log = Arc::default();
        let poll = rl.occupy(Lane::FollowUp);
        spawn(&rl, &log, "background", Lane::Background);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            labels(&log).is_empty(),
            "background ran while the follow-up lane was occupied"
        );
        // The follow-up's reads take the whole burst at once, beyond the share.
        let before = Instant::now();
        for _ in 0..5 {
            rl.acquire_in(Lane::FollowUp).await;
        }
        assert_eq!(Instant::now(), before, "a follow-up waited for a share");
        drop(poll);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            labels(&log),
            ["background"],
            "released when the lane is free"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_ups_write_goes_as_a_change() {
        let rl = Arc::new(RateLimiter::with_background_share(1.0, 5, 0.5));
        let log: Log = Arc::default();
        let seen: Lanes = Arc::default();
        let change = rl.occupy(Lane::Change);
        spawn(&rl, &log, "other follow-up read", Lane::FollowUp);
        let follow_up = {
            let (rl, log, seen) = (rl.clone(), log.clone(), seen.clone());
            let promotion = Arc::new(Promotion::new(Lane::FollowUp));
            tokio::spawn(in_lane(promotion, async move {
                seen.lock()
                    .unwrap()
                    .push(("before the write", current_lane()));
                rl.acquire_write().await;
                log.lock().unwrap().push(("write", Instant::now()));
                // Promoted: its later reads are changes too.
                seen.lock()
                    .unwrap()
                    .push(("after the write", current_lane()));
                rl.acquire().await;
                log.lock()
                    .unwrap()
                    .push(("read after the write", Instant::now()));
            }))
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            labels(&log),
            ["write", "read after the write"],
            "a follow-up's write waited behind the occupied change lane like a read"
        );
        follow_up.await.expect("the follow-up task");
        assert_eq!(
            lanes(&seen),
            [
                ("before the write", Lane::FollowUp),
                ("after the write", Lane::Change)
            ],
            "a write promotes its task"
        );
        drop(change);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(labels(&log).len(), 3);
    }

    #[tokio::test]
    async fn the_lane_travels_with_the_task() {
        assert_eq!(current_lane(), Lane::Change, "a change unless marked");
        let inner = background(async {
            tokio::task::yield_now().await;
            current_lane()
        })
        .await;
        assert_eq!(inner, Lane::Background);
        assert_eq!(current_lane(), Lane::Change);
    }
}
