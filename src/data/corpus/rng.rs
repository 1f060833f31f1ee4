//! The synthetic corpus's pseudo-random draws, on the workspace's one generator
//! ([`circuitscope_kernels::rng::SplitMix64`]).
//!
//! The corpus must stay byte-identical across dependency upgrades (a model's
//! held-out split is an index range), so it does not use `rand`'s `StdRng`,
//! whose stream may change between `rand` versions. SplitMix64 is enough for
//! picking identifiers and shapes.

use circuitscope_kernels::rng::{splitmix64, SplitMix64};

/// The corpus's draws from the workspace's SplitMix64; the seeding and the draw conventions are part of the
/// committed corpora and must not change.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    inner: SplitMix64,
}

impl Rng {
    /// The generator of document `index` of corpus `seed`.
    pub(crate) fn for_document(seed: u64, index: u64) -> Self {
        Self {
            inner: SplitMix64::new(splitmix64(
                splitmix64(seed ^ 0x5EED_C0DE_0000_0001).wrapping_add(splitmix64(index)),
            )),
        }
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.inner.below(n)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo + 1) as usize) as i64
    }

    /// Uniform in `lo..=hi` as usize.
    pub(crate) fn urange(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.inner.next_f64() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    /// An index drawn with the given relative weights.
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(total as usize) as u32;
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}
