//! A token bucket that paces the snapshot thread: at most a configured number of bytes per
//! second, sleeping the calling thread when it is ahead.
//!
//! [`PendingSnapshot::write`](crate::PendingSnapshot::write) counts the bytes of the records
//! it reads from the store (key plus value) and calls [`RateLimiter::acquire`] per record.
//! The limiter only sleeps once the debt reaches [`MIN_SLEEP`], so a build sleeps in a few
//! hundred slices per second at most instead of once per record. It holds no lock: the
//! capture reader takes its locks only inside a chunk read, never across the sleep.

use std::time::{Duration, Instant};

/// The default limit on a snapshot build's read rate, in bytes of records per second, for
/// raftd's `snapshot.max_build_rate` and the `snapshot_bench` example: 0, unlimited. In the
/// A/B runs of `docs/what-we-tried.md` ("Paced snapshot builds") a paced build lowered put
/// throughput during the build instead of raising it (a longer capture means more
/// copy-on-write), so pacing is opt-in.
pub const DEFAULT_MAX_BUILD_RATE: u64 = 0;

/// The shortest sleep the limiter takes; smaller debts are carried to the next record.
pub const MIN_SLEEP: Duration = Duration::from_millis(5);

/// Where the limiter reads the time and how it waits (the real clock in production, a fake
/// one in tests).
pub trait Clock {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    /// Blocks the calling thread for `d`.
    fn sleep(&self, d: Duration);
}

/// The monotonic clock and `std::thread::sleep`.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A token bucket of `rate` bytes per second holding at most one tenth of a second's worth
/// (the burst after an idle spell); the bucket starts full.
#[derive(Debug)]
pub struct RateLimiter<C: Clock = SystemClock> {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
    slept: Duration,
    clock: C,
}

impl RateLimiter<SystemClock> {
    /// A limiter of `bytes_per_sec` on the real clock; `None` for 0 (unlimited).
    pub fn new(bytes_per_sec: u64) -> Option<Self> {
        Self::with_clock(bytes_per_sec, SystemClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter of `bytes_per_sec` on `clock`; `None` for 0 (unlimited).
    pub fn with_clock(bytes_per_sec: u64, clock: C) -> Option<Self> {
        if bytes_per_sec == 0 {
            return None;
        }
        let rate = bytes_per_sec as f64;
        let burst = rate / 10.0;
        Some(Self {
            rate,
            burst,
            tokens: burst,
            last: clock.now(),
            slept: Duration::ZERO,
            clock,
        })
    }

    /// Takes `bytes` from the bucket, sleeping while the debt is at least [`MIN_SLEEP`]'s
    /// worth of bytes.
    pub fn acquire(&mut self, bytes: u64) {
        let now = self.clock.now();
        let refill = now.saturating_sub(self.last).as_secs_f64() * self.rate;
        self.last = now;
        self.tokens = (self.tokens + refill).min(self.burst) - bytes as f64;
        if self.tokens < 0.0 {
            let wait = Duration::from_secs_f64(-self.tokens / self.rate);
            if wait >= MIN_SLEEP {
                self.clock.sleep(wait);
                self.slept += wait;
            }
        }
    }

    /// The total time [`acquire`](Self::acquire) asked the clock to sleep.
    pub fn slept(&self) -> Duration {
        self.slept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A clock that only moves when slept on (or advanced by hand).
    #[derive(Default)]
    struct FakeClock(Cell<Duration>);

    impl Clock for &FakeClock {
        fn now(&self) -> Duration {
            self.0.get()
        }
        fn sleep(&self, d: Duration) {
            self.0.set(self.0.get() + d);
        }
    }

    #[test]
    fn zero_is_unlimited() {
        assert!(RateLimiter::new(0).is_none());
        assert!(RateLimiter::with_clock(0, &FakeClock::default()).is_none());
    }

    #[test]
    fn bytes_at_a_rate_take_their_time_on_a_fake_clock() {
        let clock = FakeClock::default();
        let rate = 1_000_000;
        let mut l = RateLimiter::with_clock(rate, &clock).unwrap();
        // 10 MB in 143-byte records at 1 MB/s: 10 s minus the initial burst (0.1 s).
        let mut sent = 0u64;
        while sent < 10_000_000 {
            l.acquire(143);
            sent += 143;
        }
        let t = clock.0.get().as_secs_f64();
        let expect = sent as f64 / rate as f64 - 0.1;
        assert!((t - expect).abs() < 0.01, "took {t} s, expected {expect} s");
        assert_eq!(l.slept(), clock.0.get());
    }

    #[test]
    fn no_sleep_within_the_burst_or_for_small_debts() {
        let clock = FakeClock::default();
        let mut l = RateLimiter::with_clock(1_000_000, &clock).unwrap();
        l.acquire(100_000); // the whole burst
        assert_eq!(clock.0.get(), Duration::ZERO);
        l.acquire(4_000); // 4 ms of debt: below MIN_SLEEP, carried
        assert_eq!(clock.0.get(), Duration::ZERO);
        l.acquire(2_000); // 6 ms of debt: slept off
        assert_eq!(clock.0.get(), Duration::from_millis(6));
    }

    #[test]
    fn an_idle_spell_refills_at_most_the_burst() {
        let clock = FakeClock::default();
        let mut l = RateLimiter::with_clock(1_000_000, &clock).unwrap();
        l.acquire(100_000);
        clock.0.set(Duration::from_secs(60)); // a minute without reading
        l.acquire(100_000); // one burst is free again
        assert_eq!(clock.0.get(), Duration::from_secs(60));
        l.acquire(50_000); // but not more
        assert_eq!(clock.0.get(), Duration::from_millis(60_050));
    }

    #[test]
    fn the_real_clock_sleeps_at_least_n_over_r() {
        // 200 KB at 1 MB/s: at least 0.2 s minus the 0.1 s burst. Only a lower bound: a
        // loaded machine may sleep longer.
        let start = Instant::now();
        let mut l = RateLimiter::new(1_000_000).unwrap();
        for _ in 0..200 {
            l.acquire(1_000);
        }
        assert!(
            start.elapsed() >= Duration::from_millis(95),
            "{:?}",
            start.elapsed()
        );
    }
}
