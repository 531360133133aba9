//! A small pseudo-random generator for timing jitter: when SSDP replies
//! go out within MX and when the next NOTIFY round starts.
//!
//! Owns: [`Rng`]. Not for secrets (GENA SIDs come from
//! [`crate::core::facts::Facts::random`]); only unpredictable enough to
//! keep devices from answering in lockstep. Pure: seeded by the caller.

/// xorshift32 (Marsaglia 2003).
#[derive(Debug, Clone)]
pub struct Rng(u32);

impl Rng {
    /// A generator from `seed`; 0, which xorshift never leaves, becomes 1.
    pub fn new(seed: u32) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        u64::from(self.next_u32()) % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_stuck_at_zero_and_bounded() {
        let mut r = Rng::new(0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let v = r.below(5000);
            assert!(v < 5000);
            seen.insert(v);
        }
        assert!(seen.len() > 500);
        assert_eq!(r.below(0), 0);
    }
}
