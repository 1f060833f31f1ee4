//! AbsTopK over rows: keep the k entries of largest |x| in each row (signs kept), zero the rest.
//!
//! A radix pass over the exponent and top mantissa bits of |x| finds the bucket that holds the k-th largest
//! magnitude, and a selection runs within that bucket only; every pass is branch-free, because which entries
//! are kept is data-dependent and mispredicts.

use rayon::prelude::*;

use crate::attention::has_avx2_fma;

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
    if k == 0 {
        dst.fill(0.0);
        return;
    }
    if k >= dim {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = if mask { 1.0 } else { *s };
        }
        return;
    }
    let avx2 = has_avx2_fma();
    let fill = |scratch: &mut Scratch, (row, out): (&[f32], &mut [f32])| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time above).
            unsafe { topk_row_avx2(row, out, k, mask, scratch) };
            return;
        }
        let _ = avx2;
        topk_row(row, out, k, mask, scratch);
    };
    if src.len() >= PAR_MIN {
        src.par_chunks(dim)
            .zip(dst.par_chunks_mut(dim))
            .for_each_init(Scratch::default, fill);
    } else {
        let mut scratch = Scratch::default();
        src.chunks(dim)
            .zip(dst.chunks_mut(dim))
            .for_each(|p| fill(&mut scratch, p));
    }
}

struct Scratch {
    hist: Vec<u32>,
    candidates: Vec<u32>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            hist: vec![0; 2 * BUCKETS],
            candidates: Vec::new(),
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

#[inline(always)]
fn topk_row(row: &[f32], out: &mut [f32], k: usize, mask: bool, s: &mut Scratch) {
    let (threshold, above, equal) = kth_largest_magnitude(row, k, s);
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
#[inline(always)]
fn kth_largest_magnitude(row: &[f32], k: usize, s: &mut Scratch) -> (u32, usize, usize) {
    // Two interleaved histograms: neighbouring values often share a bucket, and alternating between two
    // counters keeps each increment from waiting on the previous one.
    s.hist.fill(0);
    let (h0, h1) = s.hist.split_at_mut(BUCKETS);
    let mut pairs = row.chunks_exact(2);
    for p in &mut pairs {
        h0[(magnitude_bits(p[0]) >> BUCKET_SHIFT) as usize] += 1;
        h1[(magnitude_bits(p[1]) >> BUCKET_SHIFT) as usize] += 1;
    }
    for v in pairs.remainder() {
        h0[(magnitude_bits(*v) >> BUCKET_SHIFT) as usize] += 1;
    }
    let count = |b: usize| (h0[b] + h1[b]) as usize;
    let mut above = 0usize;
    let mut bucket = BUCKETS - 1;
    while above + count(bucket) < k {
        above += count(bucket);
        bucket -= 1;
    }
    // Branch-free gather of the bucket's members: always write, advance only on a match.
    s.candidates.clear();
    s.candidates.resize(row.len(), 0);
    let mut n = 0;
    for v in row {
        let b = magnitude_bits(*v);
        s.candidates[n] = b;
        n += ((b >> BUCKET_SHIFT) as usize == bucket) as usize;
    }
    let candidates = &mut s.candidates[..n];
    let need = k - above;
    let (_, &mut threshold, larger) = candidates.select_nth_unstable(n - need);
    let larger_strict = larger.iter().filter(|&&b| b > threshold).count();
    let equal = candidates.iter().filter(|&&b| b == threshold).count();
    (threshold, above + larger_strict, equal)
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
                let mut m = vec![f32::NAN; row.len()];
                abs_topk_rows(&row, &mut m, row.len(), k, true);
                assert_eq!(m.iter().filter(|v| **v == 1.0).count(), k);
            }
        }
    }
}
