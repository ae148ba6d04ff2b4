//! A tiny deterministic random number generator (SplitMix64) for election timeouts.
//!
//! The core never reads an OS entropy source: the caller injects a seed, so a run is
//! reproducible from its inputs.

/// SplitMix64: a 64-bit state advanced by a constant and scrambled on output.
///
/// Statistically good enough for jittering timeouts and not meant for anything
/// cryptographic.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole future output is decided by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value uniformly drawn from `[lo, hi)`; `lo` when the range is empty.
    pub fn gen_range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        // Multiply-shift maps 64 random bits onto the span with negligible bias.
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_range_respected() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            let x = a.gen_range(10, 15);
            assert_eq!(x, b.gen_range(10, 15));
            assert!((10..15).contains(&x));
        }
        assert_eq!(a.gen_range(3, 3), 3);
    }

    #[test]
    fn range_is_covered() {
        let mut r = SplitMix64::new(1);
        let mut seen = [false; 5];
        for _ in 0..200 {
            seen[r.gen_range(0, 5) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
