//! A seeded random number generator: runs that pick random moments (crash points,
//! damage, interleavings) print their seed and can be repeated with it.

use std::time::{SystemTime, UNIX_EPOCH};

/// A tiny xorshift64* generator: reproducible runs without a dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `KEYVAULT_TEST_SEED` or the clock; prints the seed so a
    /// failing run can be repeated.
    pub fn seeded(what: &str) -> Rng {
        let seed = std::env::var("KEYVAULT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0x9E37_79B9_7F4A_7C15)
            });
        println!("{what}: seed {seed} (rerun with KEYVAULT_TEST_SEED={seed})");
        Rng(seed.max(1))
    }

    /// A generator with a given seed (for one of several threads of a seeded run).
    pub fn from_seed(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
