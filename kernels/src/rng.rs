//! SplitMix64 (Steele, Lea and Flood 2014): the one small, version-stable pseudo-random generator of the
//! workspace.
//!
//! Generated data that is committed or compared across runs (the synthetic corpus, task pairs, test inputs,
//! benchmark inputs) must not change with a dependency upgrade, which `rand`'s `StdRng` does not promise. It lives
//! in the kernels crate, the bottom floor, so that the kernels' own tests and examples use it as well as the main
//! crate.

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (Stafford's "Mix13"): a bijective 64-bit mixer.
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One SplitMix64 step from state `z`: the first output of `SplitMix64::new(z)`, usable as a 64-bit hash.
#[inline]
pub const fn splitmix64(z: u64) -> u64 {
    mix64(z.wrapping_add(GOLDEN_GAMMA))
}

/// The generator: one 64-bit state advanced by [`GOLDEN_GAMMA`] per draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting at `state` (any value is fine, zero included).
    pub const fn new(state: u64) -> Self {
        SplitMix64 { state }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..n` by a 128-bit multiply (Lemire's method without the rejection step; the bias is below
    /// 2⁻⁶⁴·n). `n` must be positive.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)` as f32 (for test and benchmark inputs).
    #[inline]
    pub fn uniform_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference implementation's outputs for seed 1234567 (the sequence SplitMix64 ports are usually
    /// checked against).
    #[test]
    fn matches_reference_stream() {
        let mut r = SplitMix64::new(1234567);
        let want = [
            6457827717110365317u64,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
        assert_eq!(splitmix64(1234567), want[0]);
    }

    #[test]
    fn draws_stay_in_range() {
        let mut r = SplitMix64::new(7);
        for n in [1usize, 2, 3, 10, 1000] {
            for _ in 0..200 {
                assert!(r.below(n) < n);
            }
        }
        for _ in 0..1000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
            let x = r.uniform_f32(-1.0, 1.0);
            assert!((-1.0..1.0).contains(&x));
        }
    }
}
