//! Client-side rate limiting toward Pipecat Cloud: a token bucket shared by every request, and
//! a whole-client pause when the server keeps answering 429.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest whole-client pause after repeated 429s.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// A token bucket (requests per second with a burst) plus a 429 brake.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    consecutive_429: u32,
}

impl RateLimiter {
    /// `rate` requests per second on average, up to `burst` at once. A rate of 0 disables the
    /// bucket (the 429 brake still applies).
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                last: Instant::now(),
                paused_until: None,
                consecutive_429: 0,
            }),
        }
    }

    /// Reserves a slot and returns when it may be used (now, or later).
    pub fn reserve(&self) -> Instant {
        let mut st = self.state.lock().expect("rate limiter lock");
        let now = Instant::now();
        let mut at = st.paused_until.filter(|p| *p > now).unwrap_or(now);
        if self.rate > 0.0 {
            let elapsed = now.duration_since(st.last).as_secs_f64();
            st.tokens = (st.tokens + elapsed * self.rate).min(self.burst);
            st.last = now;
            st.tokens -= 1.0;
            if st.tokens < 0.0 {
                at = at.max(now + Duration::from_secs_f64(-st.tokens / self.rate));
            }
        }
        at
    }

    /// Waits for a slot; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let at = self.reserve();
        let now = Instant::now();
        if at > now {
            tokio::time::sleep_until(at.into()).await;
            at - now
        } else {
            Duration::ZERO
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
