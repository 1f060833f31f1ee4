//! AbsTopK over rows: keep the k entries of largest |x| in each row (signs kept), zero the rest.
//!
//! The k-th largest magnitude is found exactly, usually by vectorised counting around a threshold predicted
//! from the previous row, else by a radix pass over the exponent and top mantissa bits of |x| that finds the
//! bucket holding it, with a selection within that bucket only. Passes are branch-free where which entries are
//! kept is data-dependent, because such branches mispredict.

use rayon::prelude::*;

#[cfg(test)]
use crate::isa::has_avx512;
use crate::isa::Isa;
#[cfg(target_arch = "x86_64")]
use crate::topk512;

const BUCKET_SHIFT: u32 = 21;
const BUCKETS: usize = 1 << (31 - BUCKET_SHIFT);
const PAR_MIN: usize = 1 << 15;

/// dst ← src with all but the top-k |values| of each `dim`-wide row zeroed; with `mask`, 1.0 at the kept places
/// instead of the values. Ties at the boundary keep the lowest index.
pub fn abs_topk_rows(src: &[f32], dst: &mut [f32], dim: usize, k: usize, mask: bool) {
    assert_eq!(src.len(), dst.len(), "abs_topk_rows: src and dst differ in length");
    if dim == 0 {
        return;
    }
    let run = |src: &[f32], dst: &mut [f32]| {
        let mut topk = RowTopK::new();
        for (row, out) in src.chunks(dim).zip(dst.chunks_mut(dim)) {
            topk.apply_into(row, out, k, mask);
        }
    };
    if src.len() >= PAR_MIN {
        // Contiguous runs of rows per task, so that each row's threshold is predicted from the one before.
        let span = dim * rows_per_task(src.len() / dim);
        src.par_chunks(span)
            .zip(dst.par_chunks_mut(span))
            .for_each(|(src, dst)| run(src, dst));
    } else {
        run(src, dst);
    }
}

/// In place: all but the top-k |values| of each `dim`-wide row of `x` set to zero (signs kept), with the same
/// tie rule as [`abs_topk_rows`]. Needs no output buffer, so the forward allocates and clears nothing per call.
pub fn abs_topk_rows_inplace(x: &mut [f32], dim: usize, k: usize) {
    prepare_rows_topk(x, dim, Some(k), |_, _| {});
}

/// For every `dim`-wide row i of `x`: `prepare(i, row)`, then with `k` AbsTopK in place as in
/// [`abs_topk_rows_inplace`]. One parallel pass does both, so the row is still in L1 cache for the second step
/// and the forward pays one fork-join instead of two; `prepare` is where the forward writes a row (a norm, a
/// bias, an activation, a residual add).
pub fn prepare_rows_topk<F>(x: &mut [f32], dim: usize, k: Option<usize>, prepare: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    // Through a trait object, so that the loop is compiled here and not again for each caller's closure type.
    prepare_rows_topk_dyn(x, dim, k, &prepare)
}

fn prepare_rows_topk_dyn(x: &mut [f32], dim: usize, k: Option<usize>, prepare: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    if dim == 0 {
        return;
    }
    let run = |topk: &mut RowTopK, i: usize, row: &mut [f32]| {
        prepare(i, row);
        if let Some(k) = k {
            topk.apply(row, k);
        }
    };
    if x.len() >= PAR_MIN {
        // Contiguous runs of rows per task, so that each row's threshold is predicted from the one before.
        let per_task = rows_per_task(x.len() / dim);
        x.par_chunks_mut(dim * per_task).enumerate().for_each(|(task, rows)| {
            let mut topk = RowTopK::new();
            for (j, row) in rows.chunks_mut(dim).enumerate() {
                run(&mut topk, task * per_task + j, row);
            }
        });
    } else {
        let mut topk = RowTopK::new();
        for (i, row) in x.chunks_mut(dim).enumerate() {
            run(&mut topk, i, row);
        }
    }
}

/// AbsTopK one row at a time, for callers that produce rows themselves (a fused product, a per-row pipeline).
/// It remembers each row's threshold to predict the next one's, so one `RowTopK` should serve a run of rows
/// of the same activation.
pub struct RowTopK {
    scratch: Scratch,
    isa: Isa,
}

impl Default for RowTopK {
    fn default() -> Self {
        Self::new()
    }
}

impl RowTopK {
    pub fn new() -> Self {
        RowTopK {
            scratch: Scratch::default(),
            isa: Isa::detect(),
        }
    }

    /// row ← row with all but its k largest |values| zeroed (signs kept; ties keep the lowest index).
    pub fn apply(&mut self, row: &mut [f32], k: usize) {
        if k >= row.len() {
            return;
        }
        if k == 0 {
            row.fill(0.0);
            return;
        }
        let s = &mut self.scratch;
        match self.isa {
            // SAFETY: `Isa::detect` found the instruction set each variant is compiled for.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { topk_row_inplace_avx512(row, k, s) },
            // The portable code compiled for AVX2, not AVX-512: LLVM compiles its counting loops for AVX-512 into
            // per-chunk reductions that run several times slower (measured); `topk512` is written by hand instead.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { topk_row_inplace_avx2(row, k, s) },
            Isa::Portable => topk_row_inplace(row, k, s),
        }
    }

    /// out ← row with all but its k largest |values| zeroed, or with `mask` 1.0 at the kept places and 0.0
    /// elsewhere (same tie rule as [`RowTopK::apply`]).
    pub fn apply_into(&mut self, row: &[f32], out: &mut [f32], k: usize, mask: bool) {
        if k == 0 {
            out.fill(0.0);
            return;
        }
        if k >= row.len() {
            for (o, v) in out.iter_mut().zip(row) {
                *o = if mask { 1.0 } else { *v };
            }
            return;
        }
        let s = &mut self.scratch;
        match self.isa {
            // SAFETY: as in `apply`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { topk_row_avx512(row, out, k, mask, s) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { topk_row_avx2(row, out, k, mask, s) },
            Isa::Portable => topk_row(row, out, k, mask, s),
        }
    }
}

/// Rows per parallel task: a few tasks per thread for balance, but long enough runs that the first row of
/// each (which has no prediction) is rare.
fn rows_per_task(rows: usize) -> usize {
    let tasks = 4 * rayon::current_num_threads();
    rows.div_ceil(tasks).max(16)
}

pub(crate) struct Scratch {
    hist: Vec<u32>,
    pub(crate) candidates: Vec<u32>,
    /// The last row's threshold over its mean |x|, which predicts the next row's threshold.
    ratio: Option<f32>,
    /// Relative half-width of the AVX-512 path's bracket around the prediction, following recent errors.
    width: f32,
    /// Consecutive rows whose threshold fell outside the bracket the prediction gave (AVX-512 path).
    misses: u8,
}

impl Scratch {
    /// Room for `len` candidates. Every slot up to the match count is written before it is read, so the
    /// buffer is only grown, never cleared.
    pub(crate) fn grow_candidates(&mut self, len: usize) {
        if self.candidates.len() < len {
            self.candidates.resize(len, 0);
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            hist: Vec::new(),
            candidates: Vec::new(),
            ratio: None,
            width: MAX_WIDTH,
            misses: 0,
        }
    }
}

/// |x| as bits: for non-negative floats the integer order is the float order, and integers select faster.
#[inline(always)]
fn magnitude_bits(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn topk_row_avx2(row: &[f32], out: &mut [f32], k: usize, mask: bool, s: &mut Scratch) {
    topk_row(row, out, k, mask, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn topk_row_inplace_avx2(row: &mut [f32], k: usize, s: &mut Scratch) {
    topk_row_inplace(row, k, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma,popcnt")]
unsafe fn topk_row_avx512(row: &[f32], out: &mut [f32], k: usize, mask: bool, s: &mut Scratch) {
    let found = kth_largest_magnitude_avx512(row, k, s);
    write_topk(row, out, k, mask, found)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma,popcnt")]
unsafe fn topk_row_inplace_avx512(row: &mut [f32], k: usize, s: &mut Scratch) {
    let (threshold, above, equal) = kth_largest_magnitude_avx512(row, k, s);
    if threshold == 0 {
        // At most k entries are nonzero: every one is kept and the rest are zeros already.
        return;
    }
    topk512::zero_below(row, threshold);
    clear_surplus_ties(row, threshold, k - above, equal);
}

/// The smallest and largest relative half-widths of the AVX-512 bracket.
const MIN_WIDTH: f32 = 0.01;
const MAX_WIDTH: f32 = 0.5;

/// [`kth_largest_magnitude`] by the AVX-512 passes of `topk512`: one pass over the row with a bracket of
/// adaptive width around the predicted threshold, instead of two passes of nine and seven counts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma,popcnt")]
unsafe fn kth_largest_magnitude_avx512(row: &[f32], k: usize, s: &mut Scratch) -> (u32, usize, usize) {
    let stats = topk512::row_stats(row);
    let nonzeros = stats.nonzeros;
    if nonzeros < k {
        // The k-th largest magnitude is zero. Such rows (sparse products of sparse inputs) say nothing about
        // the next row's threshold, so the prediction is left as it was.
        return (0, nonzeros, row.len() - nonzeros);
    }
    // The whole range of nonzero magnitudes brackets the threshold without any prediction.
    let full_range = |s: &mut Scratch| {
        topk512::kth_in_bracket(row, k, stats.min_nonzero, stats.max.saturating_add(1), s)
            .unwrap_or_else(|| kth_by_histogram(row, k, s))
    };
    if nonzeros <= 2 * k {
        // Barely more nonzeros than kept ones: the threshold sits among the smallest nonzeros, where no ratio
        // predicts it (rows of one activation differ in how many they have). Such rows leave the prediction to
        // the denser ones.
        return full_range(s);
    }
    let scale = stats.mean_abs;
    let guess = s.ratio.map(|r| r * scale).filter(|g| *g > 0.0 && g.is_finite());
    // After two rows in a row that the bracket would have missed (rows of two kinds interleaved, say), the
    // bracket pass is skipped until a prediction would have hit again.
    let bracketed = guess.filter(|_| s.misses < 2).and_then(|g| {
        let lo = magnitude_bits(g * (1.0 - s.width)).max(1);
        let hi = magnitude_bits(g * (1.0 + s.width));
        topk512::kth_in_bracket(row, k, lo, hi, s)
    });
    let found = match bracketed {
        Some(found) => found,
        None => full_range(s),
    };
    let threshold = f32::from_bits(found.0);
    if let Some(g) = guess {
        let err = (threshold / g - 1.0).abs();
        s.misses = if err < s.width { 0 } else { s.misses.saturating_add(1) };
        s.width = (s.width * 0.9).max(2.0 * err).clamp(MIN_WIDTH, MAX_WIDTH);
    }
    s.ratio = (scale > 0.0 && threshold > 0.0 && threshold.is_finite()).then(|| threshold / scale);
    found
}

#[inline(always)]
fn topk_row_inplace(row: &mut [f32], k: usize, s: &mut Scratch) {
    let (threshold, above, equal) = kth_largest_magnitude(row, k, s);
    // Entries equal to the threshold survive the first pass; the rare surplus of ties is cleared after it.
    for v in row.iter_mut() {
        let kept = magnitude_bits(*v) >= threshold;
        *v = if kept { *v } else { 0.0 };
    }
    clear_surplus_ties(row, threshold, k - above, equal);
}

/// After a pass that kept every entry equal to the threshold, zeroes those past the first `ties_wanted`.
#[inline(always)]
fn clear_surplus_ties(row: &mut [f32], threshold: u32, ties_wanted: usize, equal: usize) {
    if ties_wanted != equal {
        let mut left = ties_wanted;
        for v in row.iter_mut() {
            if magnitude_bits(*v) == threshold {
                if left == 0 {
                    *v = 0.0;
                } else {
                    left -= 1;
                }
            }
        }
    }
}

#[inline(always)]
fn topk_row(row: &[f32], out: &mut [f32], k: usize, mask: bool, s: &mut Scratch) {
    let found = kth_largest_magnitude(row, k, s);
    write_topk(row, out, k, mask, found)
}

/// out ← the entries of `row` kept under the threshold search's result `(threshold, above, equal)`.
#[inline(always)]
fn write_topk(row: &[f32], out: &mut [f32], k: usize, mask: bool, (threshold, above, equal): (u32, usize, usize)) {
    let ties_wanted = k - above;
    // Usually every entry equal to the threshold is kept (typically there is one): a single `>=` pass.
    let cut = if ties_wanted == equal { threshold } else { threshold + 1 };
    for (v, o) in row.iter().zip(out.iter_mut()) {
        let kept = magnitude_bits(*v) >= cut;
        let value = if mask { 1.0 } else { *v };
        *o = if kept { value } else { 0.0 };
    }
    if ties_wanted != equal {
        let mut left = ties_wanted;
        for (v, o) in row.iter().zip(out.iter_mut()) {
            if left == 0 {
                break;
            }
            if magnitude_bits(*v) == threshold {
                *o = if mask { 1.0 } else { *v };
                left -= 1;
            }
        }
    }
}

/// The magnitude bits of the k-th largest |x| (1 ≤ k < len), how many entries lie strictly above it, and how
/// many equal it.
///
/// Rows of one activation have thresholds in nearly the same proportion to their mean |x|, so the previous
/// row's proportion predicts this row's threshold; vectorised counts against a few thresholds around the
/// prediction then narrow it to a handful of candidates. The counts are exact, so a poor prediction only costs
/// time: when the threshold falls outside the bracket, the radix histogram finds it.
#[inline(always)]
fn kth_largest_magnitude(row: &[f32], k: usize, s: &mut Scratch) -> (u32, usize, usize) {
    let scale = mean_abs(row);
    let predicted = s.ratio.and_then(|ratio| kth_predicted(row, k, ratio * scale, s));
    let found = match predicted {
        Some(found) => found,
        None => kth_by_histogram(row, k, s),
    };
    let threshold = f32::from_bits(found.0);
    s.ratio = (scale > 0.0 && threshold > 0.0 && threshold.is_finite()).then(|| threshold / scale);
    found
}

/// Σ|x| / len, in sixteen lanes so that it vectorises (only a prediction depends on its rounding).
#[inline(always)]
fn mean_abs(row: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l].abs();
        }
    }
    (acc.iter().sum::<f32>() + rest.iter().map(|v| v.abs()).sum::<f32>()) / row.len() as f32
}

const LANES: usize = 16;

/// Relative offsets of the first pass's thresholds around the predicted one, ascending.
const BRACKET: [f32; 9] = [0.80, 0.90, 0.95, 0.98, 1.0, 1.02, 1.05, 1.10, 1.25];

/// Candidates below which the second counting pass is skipped.
const FEW: usize = 24;

/// Finds the k-th largest magnitude near `guess` (see [`kth_largest_magnitude`]); None when it lies outside
/// the bracket around the guess.
#[inline(always)]
fn kth_predicted(row: &[f32], k: usize, guess: f32, s: &mut Scratch) -> Option<(u32, usize, usize)> {
    if !(guess > 0.0 && guess.is_finite()) {
        return None;
    }
    let th: [u32; 9] = BRACKET.map(|f| magnitude_bits(guess * f));
    let counts = count_at_least(row, &th);
    // counts[i] = #(bits ≥ th[i]) falls as i rises; the threshold lies in [th[i], th[i + 1]) when
    // counts[i] ≥ k > counts[i + 1].
    let i = (0..th.len() - 1).find(|&i| counts[i] >= k && counts[i + 1] < k)?;
    let (mut lo, mut hi) = (th[i], th[i + 1]);
    let (mut at_lo, mut at_hi) = (counts[i], counts[i + 1]);
    if at_lo - at_hi > FEW && hi - lo >= 8 {
        let step = (hi - lo) / 8;
        let sub: [u32; 7] = std::array::from_fn(|j| lo + step * (j as u32 + 1));
        let sub_counts = count_at_least(row, &sub);
        for j in 0..7 {
            if sub_counts[j] >= k {
                lo = sub[j];
                at_lo = sub_counts[j];
            } else {
                hi = sub[j];
                at_hi = sub_counts[j];
                break;
            }
        }
    }
    // Gather the magnitudes in [lo, hi); most 16-wide chunks hold none and are skipped.
    s.grow_candidates(row.len());
    let mut n = 0;
    for c in row.chunks(LANES) {
        let mut any = false;
        for v in c {
            let b = magnitude_bits(*v);
            any |= (b >= lo) & (b < hi);
        }
        if any {
            for v in c {
                let b = magnitude_bits(*v);
                s.candidates[n] = b;
                n += ((b >= lo) & (b < hi)) as usize;
            }
        }
    }
    debug_assert_eq!(n, at_lo - at_hi);
    Some(select_kth(&mut s.candidates[..n], k - at_hi, at_hi))
}

/// #(magnitude bits ≥ th[i]) for each threshold, sixteen lanes at a time.
#[inline(always)]
fn count_at_least<const N: usize>(row: &[f32], th: &[u32; N]) -> [usize; N] {
    let mut acc = [[0u32; LANES]; N];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        let b: [u32; LANES] = std::array::from_fn(|l| magnitude_bits(c[l]));
        for (a, &t) in acc.iter_mut().zip(th) {
            for l in 0..LANES {
                a[l] += (b[l] >= t) as u32;
            }
        }
    }
    std::array::from_fn(|i| {
        let tail = rest.iter().filter(|v| magnitude_bits(**v) >= th[i]).count();
        acc[i].iter().map(|&x| x as usize).sum::<usize>() + tail
    })
}

/// The `need`-th largest of `candidates` (1 ≤ need ≤ len), with `above` entries known to lie above all of them:
/// (threshold, entries strictly above it, entries equal to it).
#[inline(always)]
pub(crate) fn select_kth(candidates: &mut [u32], need: usize, above: usize) -> (u32, usize, usize) {
    let n = candidates.len();
    let (_, &mut threshold, larger) = candidates.select_nth_unstable(n - need);
    let larger_strict = larger.iter().filter(|&&b| b > threshold).count();
    let equal = candidates.iter().filter(|&&b| b == threshold).count();
    (threshold, above + larger_strict, equal)
}

/// The radix-histogram search: a pass over the exponent and top mantissa bits of |x| finds the bucket that
/// holds the k-th largest magnitude, and a selection runs within that bucket only.
#[inline(always)]
fn kth_by_histogram(row: &[f32], k: usize, s: &mut Scratch) -> (u32, usize, usize) {
    // Two interleaved histograms: neighbouring values often share a bucket, and alternating between two
    // counters keeps each increment from waiting on the previous one. The histograms are all zero between calls,
    // and only the buckets between the row's smallest and largest are scanned and cleared again: a row spans a
    // few dozen of the 1,024, and clearing or scanning all of them cost more than a short row's whole search.
    if s.hist.is_empty() {
        s.hist = vec![0; 2 * BUCKETS];
    }
    let (h0, h1) = s.hist.split_at_mut(BUCKETS);
    let (mut lo, mut hi) = (BUCKETS - 1, 0);
    let mut pairs = row.chunks_exact(2);
    for p in &mut pairs {
        let (b0, b1) = (
            (magnitude_bits(p[0]) >> BUCKET_SHIFT) as usize,
            (magnitude_bits(p[1]) >> BUCKET_SHIFT) as usize,
        );
        h0[b0] += 1;
        h1[b1] += 1;
        lo = lo.min(b0).min(b1);
        hi = hi.max(b0).max(b1);
    }
    for v in pairs.remainder() {
        let b = (magnitude_bits(*v) >> BUCKET_SHIFT) as usize;
        h0[b] += 1;
        lo = lo.min(b);
        hi = hi.max(b);
    }
    let count = |b: usize| (h0[b] + h1[b]) as usize;
    let mut above = 0usize;
    let mut bucket = hi;
    while above + count(bucket) < k {
        above += count(bucket);
        bucket -= 1;
    }
    h0[lo..=hi].fill(0);
    h1[lo..=hi].fill(0);
    // Branch-free gather of the bucket's members: always write, advance only on a match.
    s.grow_candidates(row.len());
    let mut n = 0;
    for v in row {
        let b = magnitude_bits(*v);
        s.candidates[n] = b;
        n += ((b >> BUCKET_SHIFT) as usize == bucket) as usize;
    }
    select_kth(&mut s.candidates[..n], k - above, above)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(row: &[f32], k: usize) -> Vec<f32> {
        let mut idx: Vec<usize> = (0..row.len()).collect();
        idx.sort_by(|&a, &b| row[b].abs().total_cmp(&row[a].abs()).then(a.cmp(&b)));
        let mut out = vec![0.0; row.len()];
        for &i in idx.iter().take(k) {
            out[i] = row[i];
        }
        out
    }

    #[test]
    fn matches_sorting_with_ties_and_zeros() {
        let rows: Vec<Vec<f32>> = vec![
            vec![1., -5., 3., 0.5],
            vec![2., 2., 2., -1.],
            vec![0., 0., 0., 1.],
            (0..3000).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect(),
            (0..2048)
                .map(|i| if i % 3 == 0 { 0.0 } else { (i as f32).sin() })
                .collect(),
        ];
        for row in rows {
            for k in [1, 2, row.len() / 4, row.len() / 2, row.len() - 1] {
                if k == 0 {
                    continue;
                }
                let mut out = vec![f32::NAN; row.len()];
                abs_topk_rows(&row, &mut out, row.len(), k, false);
                assert_eq!(out, naive(&row, k), "k={k}");
                let mut inplace = row.clone();
                abs_topk_rows_inplace(&mut inplace, row.len(), k);
                assert_eq!(inplace, naive(&row, k), "in place, k={k}");
                let mut m = vec![f32::NAN; row.len()];
                abs_topk_rows(&row, &mut m, row.len(), k, true);
                assert_eq!(m.iter().filter(|v| **v == 1.0).count(), k);
            }
        }
    }

    /// Rows of one activation: similar distributions at varying scales, quantised rows with ties at the
    /// threshold, rows mostly zero, and an outlier row whose threshold the prediction misses.
    fn activation_rows(dim: usize) -> Vec<f32> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut rows = Vec::new();
        for r in 0..120 {
            let scale = 1.0 + (r % 7) as f32 * 0.37;
            for _ in 0..dim {
                let u = next();
                let v = scale * u * u * u.signum() * 3.0;
                rows.push(match r % 10 {
                    3 => (v * 2.0).round() / 2.0,
                    5 if u.abs() < 0.8 => 0.0,
                    9 => v * if u > 0.9 { 100.0 } else { 1.0 },
                    _ => v,
                });
            }
        }
        rows
    }

    #[test]
    fn many_rows_match_sorting_in_both_paths() {
        for (dim, k) in [(512, 128), (2048, 512), (300, 7), (64, 63)] {
            let src = activation_rows(dim);
            let want: Vec<f32> = src.chunks(dim).flat_map(|row| naive(row, k)).collect();
            let mut inplace = src.clone();
            abs_topk_rows_inplace(&mut inplace, dim, k);
            assert_eq!(inplace, want, "in place, dim={dim} k={k}");
            let mut out = vec![f32::NAN; src.len()];
            abs_topk_rows(&src, &mut out, dim, k, false);
            assert_eq!(out, want, "dim={dim} k={k}");
        }
    }

    /// Each row path on its own, whichever the public functions pick on this CPU: the portable code and, where
    /// the CPU has it, the AVX-512 search (bracket hits, misses that fall back, and ties).
    #[test]
    fn every_row_path_matches_sorting() {
        for (dim, k) in [(2048, 512), (300, 7), (64, 63), (8192, 2048)] {
            let src = activation_rows(dim);
            let mut s = Scratch::default();
            for row in src.chunks(dim) {
                let want = naive(row, k);
                let mut portable = row.to_vec();
                topk_row_inplace(&mut portable, k, &mut s);
                assert_eq!(portable, want, "portable, dim={dim} k={k}");
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx512() {
                let mut s = Scratch::default();
                for row in src.chunks(dim) {
                    let want = naive(row, k);
                    let exact = kth_by_histogram(row, k, &mut Scratch::default());
                    let mut fast = row.to_vec();
                    // SAFETY: AVX-512F is present (checked just above).
                    let found = unsafe { kth_largest_magnitude_avx512(row, k, &mut s) };
                    assert_eq!(found, exact, "avx512 search, dim={dim} k={k}");
                    // SAFETY: as above.
                    unsafe { topk_row_inplace_avx512(&mut fast, k, &mut s) };
                    assert_eq!(fast, want, "avx512 in place, dim={dim} k={k}");
                    let mut out = vec![f32::NAN; dim];
                    // SAFETY: as above.
                    unsafe { topk_row_avx512(row, &mut out, k, false, &mut s) };
                    assert_eq!(out, want, "avx512, dim={dim} k={k}");
                }
            }
        }
    }

    /// Rows of two kinds interleaved (their threshold-to-mean ratios differ several-fold, so every prediction
    /// misses and the bracket pass is skipped), and rows with between k and 2k nonzeros.
    #[test]
    fn interleaved_and_barely_dense_rows_match_sorting() {
        let (dim, k) = (128, 32);
        let base = activation_rows(dim);
        let mut rows = Vec::new();
        for (r, row) in base.chunks(dim).enumerate() {
            rows.extend(row.iter().enumerate().map(|(i, &v)| match r % 3 {
                // A few large entries over a floor of tiny ones: the threshold is far below the mean.
                0 => {
                    if i % 9 == 0 {
                        v * 50.0
                    } else {
                        v * 0.01
                    }
                }
                // k + 1 .. 2k nonzeros.
                1 => {
                    if i % 3 == 0 || i < 4 {
                        v
                    } else {
                        0.0
                    }
                }
                _ => v,
            }));
        }
        let want: Vec<f32> = rows.chunks(dim).flat_map(|row| naive(row, k)).collect();
        let mut got = rows.clone();
        abs_topk_rows_inplace(&mut got, dim, k);
        assert_eq!(got, want);
        let mut s = Scratch::default();
        for row in rows.chunks(dim) {
            let mut portable = row.to_vec();
            topk_row_inplace(&mut portable, k, &mut s);
            assert_eq!(portable, naive(row, k));
        }
    }

    #[test]
    fn prediction_finds_the_histogram_threshold() {
        let dim = 2048;
        let k = dim / 4;
        let rows = activation_rows(dim);
        let mut s = Scratch::default();
        let mut predicted = 0;
        for row in rows.chunks(dim) {
            let exact = kth_by_histogram(row, k, &mut Scratch::default());
            if let Some(ratio) = s.ratio {
                if let Some(found) = kth_predicted(row, k, ratio * mean_abs(row), &mut s) {
                    assert_eq!(found, exact);
                    predicted += 1;
                }
            }
            assert_eq!(kth_largest_magnitude(row, k, &mut s), exact);
        }
        // Most rows resemble the one before; the odd scale jump or outlier row falls back.
        assert!(
            predicted >= 60,
            "only {predicted} of 120 rows were found from the prediction"
        );
    }
}
