//! Exponential reconnection back-off with jitter, from a small seeded PRNG (no `rand`).

use crate::config::BackoffConfig;
use std::time::Duration;

/// Delays between reconnection attempts: `initial * 2^n`, capped at `max`, of which the
/// upper half is random ("equal jitter"), so peers that failed together spread out.
#[derive(Debug)]
pub(crate) struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
    /// xorshift64* state. Invariant: never 0.
    state: u64,
}

impl Backoff {
    /// A back-off whose jitter sequence is decided by `seed`.
    pub(crate) fn new(cfg: BackoffConfig, seed: u64) -> Self {
        Self {
            cfg,
            attempt: 0,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// Forgets past failures (after a successful connection).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let cap = self.cfg.initial.saturating_mul(factor).min(self.cfg.max);
        let half = cap / 2;
        let nanos = half.as_nanos() as u64;
        let jitter = if nanos == 0 {
            0
        } else {
            self.next_random() % (nanos + 1)
        };
        half + Duration::from_nanos(jitter)
    }
}

/// A seed that differs between peers and between runs.
pub(crate) fn seed_for(peer: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now ^ peer.rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let cfg = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut b = Backoff::new(cfg, 7);
        let expected_caps = [100, 200, 400, 800, 1000, 1000];
        for cap in expected_caps {
            let d = b.next_delay();
            let cap = Duration::from_millis(cap);
            assert!(
                d >= cap / 2 && d <= cap,
                "{d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let cfg = BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
        };
        let a: Vec<_> = (0..4)
            .map({
                let mut b = Backoff::new(cfg, 1);
                move |_| b.next_delay()
            })
            .collect();
        let c: Vec<_> = (0..4)
            .map({
                let mut b = Backoff::new(cfg, 2);
                move |_| b.next_delay()
            })
            .collect();
        assert_ne!(a, c);
    }
}
