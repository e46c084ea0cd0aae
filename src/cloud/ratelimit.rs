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

    #[test]
    fn burst_then_steady_rate() {
        let rl = RateLimiter::new(10.0, 5);
        let now = Instant::now();
        // The burst goes at once.
        for _ in 0..5 {
            assert!(rl.reserve() <= now + Duration::from_millis(5));
        }
        // The next ones are spaced by 1/rate.
        let sixth = rl.reserve();
        let tenth = (0..4).map(|_| rl.reserve()).last().unwrap();
        assert!(
            sixth >= now + Duration::from_millis(90),
            "{:?}",
            sixth - now
        );
        let spacing = tenth - sixth;
        assert!(
            spacing >= Duration::from_millis(390) && spacing <= Duration::from_millis(410),
            "{spacing:?}"
        );
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let rl = RateLimiter::new(0.0, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(rl.reserve() <= now + Duration::from_millis(5));
        }
    }

    #[test]
    fn repeated_429_pauses_the_whole_client() {
        let rl = RateLimiter::new(0.0, 1);
        rl.on_response(Some(Some(Duration::from_secs(2))));
        assert!(
            rl.paused_until().is_none(),
            "one 429 is the object's business"
        );
        rl.on_response(Some(Some(Duration::from_secs(2))));
        let until = rl.paused_until().expect("paused");
        assert!(until >= Instant::now() + Duration::from_millis(1900));
        assert!(rl.reserve() >= until, "requests wait for the pause");
        rl.on_response(Some(None));
        assert!(
            rl.paused_until().unwrap() >= until,
            "a third 429 extends the pause"
        );
        rl.on_response(None);
        // The pause already set still holds, but the streak is over.
        rl.on_response(Some(None));
        assert!(rl.paused_until().unwrap() <= Instant::now() + Duration::from_secs(5));
    }
}
