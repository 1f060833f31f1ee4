//! AbsTopK over rows: keep the k entries of largest |x| in each row (signs kept), zero the rest.
//!
//! The k-th largest magnitude is found exactly, usually by vectorised counting around a threshold predicted
//! from the previous row, else by a radix pass over the exponent and top mantissa bits of |x| that finds the
//! bucket holding it, with a selection within that bucket only. Passes are branch-free where which entries are
//! kept is data-dependent, because such branches mispredict.
//!
//! This file holds the public functions, [`RowTopK`] and its per-row choice of instruction set; the search and
//! write passes are in `portable`, compiled again for AVX2 in `avx2`; `avx512` has hand-written passes.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use self::avx2::{topk_row_avx2, topk_row_inplace_avx2};
#[cfg(target_arch = "x86_64")]
use self::avx512::{topk_row_avx512, topk_row_inplace_avx512};
use self::portable::{topk_row, topk_row_inplace};
#[cfg(test)]
use crate::isa::has_avx512;
use crate::isa::Isa;

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
    /// A fresh selector with empty scratch buffers, using the best instruction set this CPU has.
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

struct Scratch {
    hist: Vec<u32>,
    candidates: Vec<u32>,
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
    fn grow_candidates(&mut self, len: usize) {
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

/// The smallest and largest relative half-widths of the AVX-512 bracket.
const MIN_WIDTH: f32 = 0.01;
const MAX_WIDTH: f32 = 0.5;

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    use super::avx512::kth_largest_magnitude_avx512;
    use super::portable::{kth_by_histogram, kth_largest_magnitude, kth_predicted, mean_abs};
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
