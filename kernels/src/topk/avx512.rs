//! AbsTopK with AVX-512: the row entry points and the threshold search that drives these passes, and the passes
//! themselves. One pass over a row counts the entries above a bracket around the predicted threshold and
//! compresses the ones inside it into a short candidate list; the list is narrowed by vectorised counts until a
//! selection over a few dozen entries finishes; a last pass zeroes the rest.
//!
//! Compression goes through a register (`vpcompressd` to memory is microcoded and slow on AMD's cores).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::portable::{clear_surplus_ties, kth_by_histogram, select_kth, write_topk};
use super::{magnitude_bits, Scratch, MAX_WIDTH, MIN_WIDTH};
#[cfg(target_arch = "x86_64")]
use crate::avx512::{tail_mask, W};

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma,popcnt")]
pub(super) unsafe fn topk_row_avx512(row: &[f32], out: &mut [f32], k: usize, mask: bool, s: &mut Scratch) {
    let found = kth_largest_magnitude_avx512(row, k, s);
    write_topk(row, out, k, mask, found)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma,popcnt")]
pub(super) unsafe fn topk_row_inplace_avx512(row: &mut [f32], k: usize, s: &mut Scratch) {
    let (threshold, above, equal) = kth_largest_magnitude_avx512(row, k, s);
    if threshold == 0 {
        // At most k entries are nonzero: every one is kept and the rest are zeros already.
        return;
    }
    zero_below(row, threshold);
    clear_surplus_ties(row, threshold, k - above, equal);
}

/// [`kth_largest_magnitude`] by the AVX-512 passes of `topk512`: one pass over the row with a bracket of
/// adaptive width around the predicted threshold, instead of two passes of nine and seven counts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma,popcnt")]
pub(super) unsafe fn kth_largest_magnitude_avx512(row: &[f32], k: usize, s: &mut Scratch) -> (u32, usize, usize) {
    let stats = row_stats(row);
    let nonzeros = stats.nonzeros;
    if nonzeros < k {
        // The k-th largest magnitude is zero. Such rows (sparse products of sparse inputs) say nothing about
        // the next row's threshold, so the prediction is left as it was.
        return (0, nonzeros, row.len() - nonzeros);
    }
    // The whole range of nonzero magnitudes brackets the threshold without any prediction.
    let full_range = |s: &mut Scratch| {
        kth_in_bracket(row, k, stats.min_nonzero, stats.max.saturating_add(1), s)
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
        kth_in_bracket(row, k, lo, hi, s)
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

const ABS: i32 = 0x7fff_ffff;

/// Candidates at or below which the selection runs directly instead of another counting round.
const FEW: usize = 32;

/// What one pass over a row tells the threshold search.
pub(super) struct RowStats {
    /// Σ|x| / len.
    pub(super) mean_abs: f32,
    pub(super) nonzeros: usize,
    /// The smallest nonzero and the largest magnitude, as magnitude bits (u32::MAX and 0 for an all-zero row).
    pub(super) min_nonzero: u32,
    pub(super) max: u32,
}

/// [`RowStats`] of a row, in one pass.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
pub(super) unsafe fn row_stats(row: &[f32]) -> RowStats {
    let abs = _mm512_set1_epi32(ABS);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut lo = _mm512_set1_epi32(-1); // u32::MAX
    let mut hi = zero;
    let mut nonzeros = 0usize;
    let mut step = |b: __m512i, acc: &mut __m512| {
        *acc = _mm512_add_ps(*acc, _mm512_castsi512_ps(b));
        let nz = _mm512_cmpneq_epi32_mask(b, zero);
        nonzeros += nz.count_ones() as usize;
        lo = _mm512_mask_min_epu32(lo, nz, lo, b);
        hi = _mm512_max_epu32(hi, b);
    };
    let mut chunks = row.chunks_exact(4 * W);
    for c in &mut chunks {
        for (l, acc) in acc.iter_mut().enumerate() {
            let b = _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(c.as_ptr().add(l * W))), abs);
            step(b, acc);
        }
    }
    for c in chunks.remainder().chunks(W) {
        // Padding lanes load as zero, which counts for none of the statistics.
        let x = _mm512_castps_si512(_mm512_maskz_loadu_ps(tail_mask(c.len()), c.as_ptr()));
        step(_mm512_and_si512(x, abs), &mut acc[0]);
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    RowStats {
        mean_abs: _mm512_reduce_add_ps(sum) / row.len() as f32,
        nonzeros,
        min_nonzero: _mm512_reduce_min_epu32(lo),
        max: _mm512_reduce_max_epu32(hi),
    }
}

/// The k-th largest magnitude, if it lies in [lo, hi) (magnitude bits): (threshold, entries above, entries
/// equal), as `topk::kth_largest_magnitude` returns it. `s.candidates` is the working list.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
pub(super) unsafe fn kth_in_bracket(
    row: &[f32],
    k: usize,
    lo: u32,
    hi: u32,
    s: &mut Scratch,
) -> Option<(u32, usize, usize)> {
    s.grow_candidates(row.len() + W);
    let cand = s.candidates.as_mut_ptr();
    let abs = _mm512_set1_epi32(ABS);
    let (lo_v, hi_v) = (_mm512_set1_epi32(lo as i32), _mm512_set1_epi32(hi as i32));
    let one = _mm512_set1_epi32(1);
    let mut above_v = _mm512_setzero_si512();
    let mut n = 0usize;
    let mut step = |b: __m512i| {
        let m_hi = _mm512_cmpge_epu32_mask(b, hi_v);
        above_v = _mm512_mask_add_epi32(above_v, m_hi, above_v, one);
        let m_in = _mm512_mask_cmpge_epu32_mask(!m_hi, b, lo_v);
        _mm512_storeu_si512(cand.add(n).cast(), _mm512_maskz_compress_epi32(m_in, b));
        n += m_in.count_ones() as usize;
    };
    let mut chunks = row.chunks_exact(W);
    for c in &mut chunks {
        step(_mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(c.as_ptr())), abs));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Padding lanes load as zero, below any positive `lo`.
        let x = _mm512_castps_si512(_mm512_maskz_loadu_ps(tail_mask(rest.len()), rest.as_ptr()));
        step(_mm512_and_si512(x, abs));
    }
    let above = _mm512_reduce_add_epi32(above_v) as usize;
    if above >= k || above + n < k {
        return None;
    }
    Some(narrow(&mut s.candidates[..n + W], n, k - above, above, lo, hi))
}

/// The `need`-th largest of the `n` candidates (all in [lo, hi), `above` entries known to be larger; `cands`
/// has W slots of slack past n): rounds of sixteen-way vectorised counting shrink the list to a few entries
/// around the answer before the final selection.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn narrow(
    cands: &mut [u32],
    mut n: usize,
    mut need: usize,
    mut above: usize,
    mut lo: u32,
    mut hi: u32,
) -> (u32, usize, usize) {
    let p = cands.as_mut_ptr();
    while n > FEW && hi - lo >= W as u32 {
        let step = (hi - lo) / W as u32;
        // cuts[j] = lo + (j + 1)·step for j < 15; counts[j] = #(b ≥ cuts[j]).
        let cuts: [u32; W - 1] = std::array::from_fn(|j| lo + step * (j as u32 + 1));
        let mut counts_v = [_mm512_setzero_si512(); W - 1];
        let one = _mm512_set1_epi32(1);
        for c0 in (0..n).step_by(W) {
            let m = tail_mask((n - c0).min(W));
            let b = _mm512_maskz_loadu_epi32(m, p.add(c0).cast());
            for (acc, &cut) in counts_v.iter_mut().zip(&cuts) {
                let ge = _mm512_mask_cmpge_epu32_mask(m, b, _mm512_set1_epi32(cut as i32));
                *acc = _mm512_mask_add_epi32(*acc, ge, *acc, one);
            }
        }
        let counts: [usize; W - 1] = std::array::from_fn(|j| _mm512_reduce_add_epi32(counts_v[j]) as usize);
        // The answer lies in [new_lo, new_hi): the highest cut with at least `need` entries at or above it.
        let j = (0..W - 1).rev().find(|&j| counts[j] >= need);
        let (new_lo, new_hi, at_hi) = match j {
            Some(j) => (
                cuts[j],
                if j + 1 < W - 1 { cuts[j + 1] } else { hi },
                if j + 1 < W - 1 { counts[j + 1] } else { 0 },
            ),
            None => (lo, cuts[0], counts[0]),
        };
        // Keep the candidates inside the new bracket, compacted in place (writes never pass the reads).
        let (lo_v, hi_v) = (_mm512_set1_epi32(new_lo as i32), _mm512_set1_epi32(new_hi as i32));
        let mut kept = 0;
        for c0 in (0..n).step_by(W) {
            let m = tail_mask((n - c0).min(W));
            let b = _mm512_maskz_loadu_epi32(m, p.add(c0).cast());
            let inside = _mm512_mask_cmplt_epu32_mask(_mm512_mask_cmpge_epu32_mask(m, b, lo_v), b, hi_v);
            _mm512_storeu_si512(p.add(kept).cast(), _mm512_maskz_compress_epi32(inside, b));
            kept += inside.count_ones() as usize;
        }
        above += at_hi;
        need -= at_hi;
        n = kept;
        lo = new_lo;
        hi = new_hi;
    }
    select_kth(&mut cands[..n], need, above)
}

/// row[i] ← 0 where |row[i]| < threshold (magnitude bits); entries at or above it are left as they are.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
pub(super) unsafe fn zero_below(row: &mut [f32], threshold: u32) {
    let abs = _mm512_set1_epi32(ABS);
    let th = _mm512_set1_epi32(threshold as i32);
    let mut chunks = row.chunks_exact_mut(W);
    for c in &mut chunks {
        let x = _mm512_loadu_ps(c.as_ptr());
        let keep = _mm512_cmpge_epu32_mask(_mm512_and_si512(_mm512_castps_si512(x), abs), th);
        _mm512_storeu_ps(c.as_mut_ptr(), _mm512_maskz_mov_ps(keep, x));
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let m = tail_mask(rest.len());
        let x = _mm512_maskz_loadu_ps(m, rest.as_ptr());
        let keep = _mm512_cmpge_epu32_mask(_mm512_and_si512(_mm512_castps_si512(x), abs), th);
        _mm512_mask_storeu_ps(rest.as_mut_ptr(), m, _mm512_maskz_mov_ps(keep, x));
    }
}
