//! Attention with AVX-512: the portable head body compiled for 16-lane registers (head sizes other than 16),
//! and the d_head = 16 kernel, where one register holds a whole head row.
//!
//! d_head = 16, per head: keys are transposed to channel-major so that a query scores sixteen keys per
//! multiply-add and only over its own nonzero channels (q is AbsTopK-sparse); the score row's maximum is taken
//! as it is written; the exponentials are 2^x by a polynomial and `vscalefps`; and sixteen queries share one
//! pass over the values, each value row loaded once into a register for all of them.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::portable::head_attention;
#[cfg(target_arch = "x86_64")]
use crate::avx512::transpose16;
/// Head rows per register, and queries per block.
use crate::avx512::W;
#[cfg(target_arch = "x86_64")]
use crate::fma::Fused;

/// The same code again for AVX-512, for head sizes other than 16 (which `head16` serves).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn head_attention_avx512(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    a: usize,
    h: usize,
    dh: usize,
    scale: f32,
    sink: Option<f32>,
    out: &mut [f32],
) {
    head_attention::<Fused>(q, k, v, t, a, h, dh, scale, sink, out)
}

/// Per-thread buffers of [`head16`], reused across heads.
#[derive(Default)]
pub(super) struct Scratch16 {
    /// Keys channel-major: (16, tp), tp = T rounded up to 16, zero-padded.
    kt: Vec<f32>,
    /// Values row-major: (tp, 16), zero-padded.
    vr: Vec<f32>,
    /// Unnormalised probabilities of one query block: (16, tp).
    p: Vec<f32>,
}

/// A raw output pointer that heads running on different threads write through, each to its own columns.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub(super) *mut f32);

// SAFETY: every user writes a disjoint set of elements (one head's columns), so no two threads touch the
// same memory.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// One head h of causal attention. `q`, `k`, `v`: rows `stride` apart, head h at columns [16h, 16h + 16) of
/// each; writes y[i, 16h..16h + 16] for every query i and nothing else of y, which is (T, A) row-major.
///
/// # Safety
/// The CPU must support AVX-512F; `y` must point to T·A writable floats that no other thread writes at head
/// h's columns during the call; `q`, `k`, `v` must hold (T - 1)·stride + A floats, and 16(h + 1) ≤ A ≤ stride.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn head16(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    stride: usize,
    a: usize,
    h: usize,
    scale: f32,
    sink: Option<f32>,
    y: SharedOut,
    s: &mut Scratch16,
) {
    let need = (t - 1) * stride + a;
    debug_assert!(q.len() >= need && k.len() >= need && v.len() >= need && (h + 1) * W <= a && a <= stride);
    let tp = t.next_multiple_of(W);
    s.kt.resize(W * tp, 0.0);
    s.vr.resize(tp * W, 0.0);
    s.p.resize(W * tp, 0.0);
    let col = h * W;
    // Keys transposed and values copied, a 16 x 16 tile at a time; rows past T are zero.
    for j0 in (0..tp).step_by(W) {
        let mut rows = [_mm512_setzero_ps(); W];
        for (l, r) in rows.iter_mut().enumerate() {
            let j = j0 + l;
            if j < t {
                *r = _mm512_loadu_ps(k.as_ptr().add(j * stride + col));
                _mm512_storeu_ps(
                    s.vr.as_mut_ptr().add(j * W),
                    _mm512_loadu_ps(v.as_ptr().add(j * stride + col)),
                );
            } else {
                _mm512_storeu_ps(s.vr.as_mut_ptr().add(j * W), _mm512_setzero_ps());
            }
        }
        transpose16(&mut rows);
        for (c, r) in rows.iter().enumerate() {
            _mm512_storeu_ps(s.kt.as_mut_ptr().add(c * tp + j0), *r);
        }
    }
    let log2e = std::f32::consts::LOG2_E;
    // Channel c's key row starts at c·tp in `kt`.
    let offsets = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(tp as i32),
    );
    let mut inv = [0f32; W];
    for i0 in (0..t).step_by(W) {
        let qn = W.min(t - i0);
        // Every query of the block sees the same key blocks: all of [0, i0) and the block [i0, i0 + 16).
        let nkb = i0 / W + 1;
        for (qi, inv) in inv.iter_mut().enumerate() {
            let prow = s.p.as_mut_ptr().add(qi * tp);
            if qi >= qn {
                for b in 0..nkb {
                    _mm512_storeu_ps(prow.add(b * W), _mm512_setzero_ps());
                }
                *inv = 0.0;
                continue;
            }
            let i = i0 + qi;
            // The query's nonzero channels (which ones survived AbsTopK is random), compressed into a list of
            // (offset of the channel's key row, scaled value).
            let qrow = _mm512_loadu_ps(q.as_ptr().add(i * stride + col));
            let live_mask = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(qrow, _mm512_setzero_ps());
            let mut nz_off = [0i32; W];
            let mut nz_val = [0f32; W];
            _mm512_storeu_si512(
                nz_off.as_mut_ptr().cast(),
                _mm512_maskz_compress_epi32(live_mask, offsets),
            );
            let scaled = _mm512_mul_ps(qrow, _mm512_set1_ps(scale));
            _mm512_storeu_ps(nz_val.as_mut_ptr(), _mm512_maskz_compress_ps(live_mask, scaled));
            let live = live_mask.count_ones() as usize;
            let nz = nz_off[..live]
                .iter()
                .map(|&o| o as usize)
                .zip(nz_val[..live].iter().copied());
            // Keys past i in the last block are masked out of the max here and of the sum below.
            let last_mask = ((1u32 << (i + 1 - (nkb - 1) * W)) - 1) as __mmask16;
            let mut mv = _mm512_set1_ps(f32::NEG_INFINITY);
            for b in 0..nkb {
                let mut acc = _mm512_setzero_ps();
                for (c, qc) in nz.clone() {
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(qc), _mm512_loadu_ps(s.kt.as_ptr().add(c + b * W)), acc);
                }
                let m = if b + 1 == nkb { last_mask } else { 0xffff };
                mv = _mm512_mask_max_ps(mv, m, mv, acc);
                _mm512_storeu_ps(prow.add(b * W), acc);
            }
            let mut m = _mm512_reduce_max_ps(mv);
            if let Some(sl) = sink {
                m = m.max(sl);
            }
            let ml = _mm512_set1_ps(m * log2e);
            let mut sum = _mm512_setzero_ps();
            for b in 0..nkb {
                let x = _mm512_loadu_ps(prow.add(b * W));
                let mut e = exp2(_mm512_fmsub_ps(x, _mm512_set1_ps(log2e), ml));
                if b + 1 == nkb {
                    e = _mm512_maskz_mov_ps(last_mask, e);
                }
                sum = _mm512_add_ps(sum, e);
                _mm512_storeu_ps(prow.add(b * W), e);
            }
            let mut denom = _mm512_reduce_add_ps(sum);
            if let Some(sl) = sink {
                denom += (sl - m).exp();
            }
            *inv = 1.0 / denom;
        }
        weighted_values(s, tp, i0, qn, &inv, a, col, y);
    }
}

/// y[i0 + qi, col..col + 16] = inv[qi] · Σ_j p[qi, j]·v[j] for the block's queries: each value row is loaded
/// once and multiplied into all sixteen accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn weighted_values(
    s: &Scratch16,
    tp: usize,
    i0: usize,
    qn: usize,
    inv: &[f32; W],
    a: usize,
    col: usize,
    y: SharedOut,
) {
    let p = s.p.as_ptr();
    let vr = s.vr.as_ptr();
    let mut acc = [_mm512_setzero_ps(); W];
    for j in 0..i0 + qn {
        let vj = _mm512_loadu_ps(vr.add(j * W));
        for (qi, acc) in acc.iter_mut().enumerate() {
            *acc = _mm512_fmadd_ps(_mm512_set1_ps(*p.add(qi * tp + j)), vj, *acc);
        }
    }
    for (qi, acc) in acc.iter().enumerate().take(qn) {
        let out = y.0.add((i0 + qi) * a + col);
        _mm512_storeu_ps(out, _mm512_mul_ps(*acc, _mm512_set1_ps(inv[qi])));
    }
}

/// 2^x lane-wise (x ≤ 0 in use, any finite x or -∞ handled): 2^round(x) · p(x - round(x)), p the degree-6
/// Taylor polynomial of 2^f on [-1/2, 1/2] (relative error about 1e-7); `vscalefps` applies the exponent and
/// flushes very negative arguments to zero.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn exp2(x: __m512) -> __m512 {
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
    let f = _mm512_sub_ps(x, n);
    let c = |v: f32| _mm512_set1_ps(v);
    let mut p = c(1.540_353e-4);
    p = _mm512_fmadd_ps(p, f, c(1.333_355_8e-3));
    p = _mm512_fmadd_ps(p, f, c(9.618_129e-3));
    p = _mm512_fmadd_ps(p, f, c(5.550_411e-2));
    p = _mm512_fmadd_ps(p, f, c(2.402_265e-1));
    p = _mm512_fmadd_ps(p, f, c(std::f32::consts::LN_2));
    p = _mm512_fmadd_ps(p, f, c(1.0));
    _mm512_scalef_ps(p, n)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn exp2_is_accurate() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let xs: Vec<f32> = (0..16 * 400).map(|i| -(i as f32) * 0.01 + 3.0).collect();
        for chunk in xs.chunks(W) {
            let mut out = [0f32; W];
            // SAFETY: AVX-512F checked above; the chunk and `out` hold 16 floats.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), exp2(_mm512_loadu_ps(chunk.as_ptr()))) };
            for (x, e) in chunk.iter().zip(out) {
                let want = (*x as f64).exp2();
                assert!(((e as f64) - want).abs() <= 3e-7 * want, "2^{x}: {e} vs {want}");
            }
        }
        let mut out = [1f32; W];
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), exp2(_mm512_set1_ps(-300.0))) };
        assert_eq!(out, [0.0; W]);
    }
}
