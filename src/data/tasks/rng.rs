//! The tasks' pseudo-random draws on the workspace's one generator (SplitMix64) and a stable string hash, so that a task's pairs depend only on
//! (task, seed, index) and never change with a `rand` upgrade.

use circuitscope_kernels::rng::{mix64 as mix, SplitMix64, GOLDEN_GAMMA};

/// The tasks' draws from the workspace's SplitMix64; the seeding and the draw conventions (modulo, `<=`) are part
/// of the committed task pairs and must not change.
#[derive(Debug, Clone)]
pub(crate) struct Rng(SplitMix64);

impl Rng {
    /// The stream of pair `index` of the task whose name hashes to `stream`, under `seed`.
    pub(crate) fn new(seed: u64, stream: u64, index: u64) -> Self {
        Rng(SplitMix64::new(mix(mix(seed ^ GOLDEN_GAMMA)
            ^ mix(stream).rotate_left(17)
            ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d))))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.0.next_f64() <= p
    }

    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    /// `k` distinct elements, in random order.
    pub(crate) fn pick_distinct<T: Clone>(&mut self, xs: &[T], k: usize) -> Vec<T> {
        let mut idx: Vec<usize> = (0..xs.len()).collect();
        let k = k.min(xs.len());
        for i in 0..k {
            let j = i + self.below(idx.len() - i);
            idx.swap(i, j);
        }
        idx[..k].iter().map(|&i| xs[i].clone()).collect()
    }
}

/// FNV-1a, 64 bit: a stable hash for task names and for the content-based train/test split.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
