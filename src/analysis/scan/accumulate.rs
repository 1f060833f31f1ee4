//! Per-node accumulators of the two scan passes. Pass 1 gathers moments, min/max, density, a log-scale histogram
//! (for quantile estimates) and the top/bottom exemplars; pass 2, knowing min/max and the quantile estimates, fills
//! the display histogram and picks the exemplars at each quantile.
//!
//! Every channel is processed in token order by exactly one thread, so results do not depend on the thread count.

/// Log-scale bins that need no range in advance: sign, exponent in [2^-24, 2^16) and 6 mantissa bits, i.e. a
/// relative resolution of 1/64. Magnitudes outside that range share the end bins; exact zeros have their own bin
/// (AbsTopK makes many). Bin indices are monotone in value, so cumulative counts give ranks.
pub(super) mod logbin {
    const MANT_BITS: u32 = 6;
    const MANT_STEPS: f64 = (1u32 << MANT_BITS) as f64;
    const EXP_MIN: i32 = -24;
    const EXP_MAX: i32 = 16;
    const PER_SIGN: usize = ((EXP_MAX - EXP_MIN) as usize) << MANT_BITS;
    pub const BINS: usize = 2 * PER_SIGN + 1;
    const ZERO: usize = PER_SIGN;

    fn mag_index(bits: u32) -> usize {
        let exp = ((bits >> 23) & 0xff) as i32 - 127;
        if exp < EXP_MIN {
            return 0;
        }
        if exp >= EXP_MAX {
            return PER_SIGN - 1;
        }
        let mant = ((bits >> (23 - MANT_BITS)) & ((1 << MANT_BITS) - 1)) as usize;
        (((exp - EXP_MIN) as usize) << MANT_BITS) | mant
    }

    #[inline]
    pub fn bin(v: f32) -> usize {
        if v == 0.0 {
            return ZERO;
        }
        let bits = v.to_bits();
        let m = mag_index(bits & 0x7fff_ffff);
        if bits >> 31 == 0 {
            ZERO + 1 + m
        } else {
            ZERO - 1 - m
        }
    }

    /// The closed value range of bin `b` (the end bins reach 0 and infinity).
    pub fn range(b: usize) -> (f64, f64) {
        if b == ZERO {
            return (0.0, 0.0);
        }
        let (neg, m) = if b > ZERO {
            (false, b - ZERO - 1)
        } else {
            (true, ZERO - 1 - b)
        };
        let e = (m >> MANT_BITS) as i32 + EXP_MIN;
        let frac = (m & ((1 << MANT_BITS) - 1)) as f64;
        let scale = 2f64.powi(e);
        let lo = if m == 0 { 0.0 } else { scale * (1.0 + frac / MANT_STEPS) };
        let hi = if m == PER_SIGN - 1 {
            f64::INFINITY
        } else {
            scale * (1.0 + (frac + 1.0) / MANT_STEPS)
        };
        if neg {
            (-hi, -lo)
        } else {
            (lo, hi)
        }
    }

    /// The value at fractional rank `rank` (0 = smallest) of `n` values binned in `counts`, interpolated linearly
    /// inside its bin and kept within [min, max].
    pub fn value_at_rank(counts: &[u32], rank: f64, min: f32, max: f32) -> f32 {
        let mut cum = 0u64;
        for (b, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let next = cum + c as u64;
            if rank < next as f64 {
                let (lo, hi) = range(b);
                let lo = lo.max(min as f64);
                let hi = hi.min(max as f64).max(lo);
                let f = ((rank - cum as f64 + 0.5) / c as f64).clamp(0.0, 1.0);
                return (lo + f * (hi - lo)) as f32;
            }
            cum = next;
        }
        max
    }
}

/// Where one batch's activations of one hook live: `data` is (rows, width) row-major, rows = sequences × t,
/// row 0 being token `token_base` of the scanned stream.
pub(super) struct BatchView<'a> {
    pub data: &'a [f32],
    pub width: usize,
    pub t: usize,
    pub token_base: usize,
    pub before: usize,
    pub after: usize,
}

impl BatchView<'_> {
    /// The context window of row `row` for channel `c`: (stream offset of its first token, pivot, activations).
    fn window(&self, c: usize, row: usize) -> (u32, u16, Vec<f32>) {
        let (s, p) = (row / self.t, row % self.t);
        let ws = p.saturating_sub(self.before);
        let we = (p + self.after + 1).min(self.t);
        let acts = (ws..we).map(|q| self.data[(s * self.t + q) * self.width + c]).collect();
        ((self.token_base + s * self.t + ws) as u32, (p - ws) as u16, acts)
    }
}

/// A deterministic pseudo-random order of the tokens for breaking ties, so that among equal values (e.g. the many
/// exact zeros) exemplars come from all over the corpus rather than from its first tokens. One multiply: it runs
/// for every tied value.
#[inline(always)]
fn tie(token: usize, seed: u32) -> u32 {
    (token as u32 ^ seed).wrapping_mul(0x9E37_79B1)
}

/// A per-(node, selector) seed for [`tie`].
fn seed(node: usize, salt: u64) -> u32 {
    let z = (node as u64) ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (circuitscope_kernels::rng::splitmix64(z) >> 32) as u32
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    /// Smaller is better.
    key: f32,
    tie: u32,
    pub value: f32,
    /// Offset of the window's first token in the scanned stream.
    pub start: u32,
    pub pivot: u16,
    /// The node's activations over the window.
    pub acts: Vec<f32>,
}

/// Keeps the `k` candidates of smallest (key, tie).
pub(super) struct Selector {
    k: usize,
    items: Vec<Candidate>,
    worst: usize,
    /// The worst kept (key, tie) once full, else (+inf, u32::MAX): most values are rejected by one comparison.
    threshold: f32,
    worst_tie: u32,
    seed: u32,
}

impl Selector {
    /// `salt` tells the selectors of one node apart.
    pub fn new(k: usize, node: usize, salt: u64) -> Self {
        Selector {
            k,
            items: Vec::with_capacity(k),
            worst: 0,
            // NaN rejects everything when nothing is to be kept.
            threshold: if k == 0 { f32::NAN } else { f32::INFINITY },
            worst_tie: u32::MAX,
            seed: seed(node, salt),
        }
    }

    /// The hot path: called for every value, so only comparisons here.
    /// Whether the candidate was kept.
    #[inline(always)]
    fn offer(&mut self, key: f32, value: f32, c: usize, row: usize, view: &BatchView) -> bool {
        if key < self.threshold {
            let t = tie(view.token_base + row, self.seed);
            self.insert(key, t, value, c, row, view);
            true
        } else if key == self.threshold {
            let t = tie(view.token_base + row, self.seed);
            let keep = t < self.worst_tie;
            if keep {
                self.insert(key, t, value, c, row, view);
            }
            keep
        } else {
            false
        }
    }

    #[cold]
    #[inline(never)]
    fn insert(&mut self, key: f32, tie: u32, value: f32, c: usize, row: usize, view: &BatchView) {
        let (start, pivot, acts) = view.window(c, row);
        let cand = Candidate {
            key,
            tie,
            value,
            start,
            pivot,
            acts,
        };
        if self.items.len() < self.k {
            self.items.push(cand);
        } else {
            self.items[self.worst] = cand;
        }
        if self.items.len() == self.k {
            let (i, w) = self
                .items
                .iter()
                .enumerate()
                .max_by(|a, b| {
                    (a.1.key, a.1.tie)
                        .partial_cmp(&(b.1.key, b.1.tie))
                        .expect("keys are not NaN")
                })
                .expect("k > 0");
            self.worst = i;
            self.threshold = w.key;
            self.worst_tie = w.tie;
        }
    }

    /// Best first.
    pub fn into_sorted(mut self) -> Vec<Candidate> {
        self.items
            .sort_by(|a, b| (a.key, a.tie).partial_cmp(&(b.key, b.tie)).expect("keys are not NaN"));
        self.items
    }
}

pub(super) struct Pass1 {
    pub sum: f64,
    pub sumsq: f64,
    pub nnz: u64,
    pub min: f32,
    pub max: f32,
    pub loghist: Vec<u32>,
    pub top: Selector,
    pub bottom: Selector,
}

impl Pass1 {
    pub(super) fn new(node: usize, top_k: usize, bottom_k: usize) -> Self {
        Pass1 {
            sum: 0.0,
            sumsq: 0.0,
            nnz: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            loghist: vec![0; logbin::BINS],
            top: Selector::new(top_k, node, 1),
            bottom: Selector::new(bottom_k, node, 2),
        }
    }
}

impl Accumulator for Pass1 {
    #[inline]
    fn push(&mut self, v: f32, c: usize, row: usize, view: &BatchView) {
        let x = v as f64;
        self.sum += x;
        self.sumsq += x * x;
        self.nnz += (v != 0.0) as u64;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.loghist[logbin::bin(v)] += 1;
        self.top.offer(-v, v, c, row, view);
        self.bottom.offer(v, v, c, row, view);
    }
}

/// Pass 2 of one node: the display histogram over [lo, hi] and the quantile samples. `selectors[i]` keeps the
/// values nearest to `targets[i]`, the estimated quantile value, preferring the tail's side (at or below for a
/// bottom-side target, at or above for a top-side one): a value on the other side counts as `margin` farther.
/// The margin is about one log bin, the estimate's resolution; a hard side restriction would skip a cluster of
/// equal values that the estimate, interpolated inside its bin, happens to overshoot.
pub(super) struct Pass2 {
    pub lo: f32,
    pub scale: f32,
    pub hist: Vec<u32>,
    /// (value, top side, margin)
    pub targets: [(f32, bool, f32); SELECTORS],
    pub selectors: Vec<Selector>,
    /// A value outside [gate_lo[i], gate_hi[i]] cannot enter selector i: one vectorisable test per value instead
    /// of a key per selector.
    gate_lo: [f32; SELECTORS],
    gate_hi: [f32; SELECTORS],
}

/// Quantile selectors per node: each quantile from both ends.
pub(super) const SELECTORS: usize = 2 * super::index::QUANTILES.len();

impl Pass2 {
    pub fn new(
        lo: f32,
        hi: f32,
        bins: usize,
        targets: [(f32, bool, f32); SELECTORS],
        selectors: Vec<Selector>,
    ) -> Self {
        let mut p = Pass2 {
            lo,
            scale: hist_scale(lo, hi, bins),
            hist: vec![0; bins],
            targets,
            selectors,
            gate_lo: [0.0; SELECTORS],
            gate_hi: [0.0; SELECTORS],
        };
        for i in 0..SELECTORS {
            p.update_gate(i);
        }
        p
    }

    /// The values whose key can reach selector i's threshold, widened a little against rounding.
    fn update_gate(&mut self, i: usize) {
        let (t, top, margin) = self.targets[i];
        let thr = self.selectors[i].threshold;
        if thr.is_nan() {
            (self.gate_lo[i], self.gate_hi[i]) = (f32::INFINITY, f32::NEG_INFINITY);
            return;
        }
        let (tail, other) = (thr, (thr - margin).max(0.0));
        let (below, above) = if top { (other, tail) } else { (tail, other) };
        let slack = (t.abs() + thr.min(f32::MAX)) * 1e-6 + f32::MIN_POSITIVE;
        self.gate_lo[i] = t - below - slack;
        self.gate_hi[i] = t + above + slack;
    }

    /// Hot for sparse nodes: their many exact zeros tie with quantile values of 0.
    #[inline(never)]
    fn offer_all(&mut self, v: f32, c: usize, row: usize, view: &BatchView) {
        for i in 0..SELECTORS {
            if v >= self.gate_lo[i] && v <= self.gate_hi[i] {
                let (t, top, margin) = self.targets[i];
                let d = if top { v - t } else { t - v };
                let key = if d >= 0.0 { d } else { margin - d };
                if self.selectors[i].offer(key, v, c, row, view) {
                    self.update_gate(i);
                }
            }
        }
    }
}

impl Accumulator for Pass2 {
    #[inline]
    fn push(&mut self, v: f32, c: usize, row: usize, view: &BatchView) {
        let bins = self.hist.len();
        // Saturating float→int casts send anything below lo (and NaN) to bin 0.
        let b = (((v - self.lo) * self.scale) as usize).min(bins - 1);
        self.hist[b] += 1;
        let mut hit = false;
        for i in 0..SELECTORS {
            hit |= (v >= self.gate_lo[i]) & (v <= self.gate_hi[i]);
        }
        if hit {
            self.offer_all(v, c, row, view);
        }
    }
}

/// The histogram bin of `v` for `bins` bins over [lo, hi]: floor((v − lo) · bins / (hi − lo)) in f32, the top edge
/// in the last bin; everything in bin 0 when hi = lo.
pub fn hist_bin(v: f32, lo: f32, hi: f32, bins: usize) -> usize {
    let scale = hist_scale(lo, hi, bins);
    (((v - lo) * scale) as usize).min(bins.saturating_sub(1))
}

pub(super) fn hist_scale(lo: f32, hi: f32, bins: usize) -> f32 {
    if hi > lo {
        bins as f32 / (hi - lo)
    } else {
        0.0
    }
}

/// One of the two passes' per-node state.
pub(super) trait Accumulator: Send {
    fn push(&mut self, v: f32, c: usize, row: usize, view: &BatchView);
}

/// Channels per parallel task: one 64-byte cache line of a row, so that each task reads its rows contiguously.
const GROUP: usize = 16;

/// Feeds one hook's batch to its nodes' accumulators (`accs[c]` is channel c), channel groups in parallel.
pub(super) fn feed<A: Accumulator>(accs: &mut [A], view: &BatchView) {
    use rayon::prelude::*;
    let rows = view.data.len() / view.width;
    accs.par_chunks_mut(GROUP).enumerate().for_each(|(g, chunk)| {
        let c0 = g * GROUP;
        for row in 0..rows {
            let line = &view.data[row * view.width + c0..row * view.width + c0 + chunk.len()];
            for (i, (acc, &v)) in chunk.iter_mut().zip(line).enumerate() {
                acc.push(v, c0 + i, row, view);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::logbin;

    #[test]
    fn log_bins_are_monotone_and_cover_their_values() {
        let mut vals: Vec<f32> = vec![
            -1e9, -70000.0, -3.5, -1.0, -1e-30, 0.0, -0.0, 1e-30, 1e-7, 0.5, 1.0, 2.75, 1e9,
        ];
        vals.sort_by(|a, b| a.partial_cmp(b).unwrap());
        for w in vals.windows(2) {
            assert!(logbin::bin(w[0]) <= logbin::bin(w[1]), "{w:?}");
        }
        for v in vals {
            let (lo, hi) = logbin::range(logbin::bin(v));
            assert!(lo <= v as f64 && v as f64 <= hi, "{v} not in [{lo}, {hi}]");
        }
    }

    #[test]
    fn rank_estimate_is_close() {
        let vals: Vec<f32> = (0..1000).map(|i| (i as f32 - 300.0) * 0.01).collect();
        let mut counts = vec![0u32; logbin::BINS];
        for &v in &vals {
            counts[logbin::bin(v)] += 1;
        }
        for r in [0.0, 1.0, 10.0, 100.0, 500.0, 900.0, 999.0] {
            let est = logbin::value_at_rank(&counts, r, vals[0], vals[999]);
            assert!(
                (est - vals[r as usize]).abs() <= 0.03 * vals[r as usize].abs() + 0.02,
                "rank {r}: {est}"
            );
        }
    }
}
