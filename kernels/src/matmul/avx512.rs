//! AVX-512 versions of the blocked forward's two loops for blocks of 16 (or 32) tokens: token packing and the
//! per-row products both move 16 x 16 tiles through registers with one in-register transpose, where the
//! portable code moves one float at a time. Also the portable loops compiled for AVX-512 (other block widths,
//! and the gradient).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::portable::{grad_rows, xwt_rows};
use super::{Csr, PtrInt};
#[cfg(target_arch = "x86_64")]
use crate::avx512::{tail_mask, transpose16, W};
#[cfg(target_arch = "x86_64")]
use crate::fma::Fused;

/// [`super::portable::pack_tokens`] for B = 16 or 32: tokens `x[0..nb]` (rows of `cols`) into `dst` as `(cols, B)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_tokens<const B: usize>(x: &[f32], cols: usize, dst: &mut [f32]) {
    debug_assert!(B.is_multiple_of(W) && dst.len() >= cols * B);
    let nb = x.len() / cols;
    for half in 0..B / W {
        let tokens = nb.saturating_sub(half * W).min(W);
        for c0 in (0..cols).step_by(W) {
            let cn = W.min(cols - c0);
            let mut tile = [_mm512_setzero_ps(); W];
            for (b, row) in tile.iter_mut().enumerate().take(tokens) {
                let src = &x[(half * W + b) * cols + c0..][..cn];
                *row = _mm512_maskz_loadu_ps(tail_mask(cn), src.as_ptr());
            }
            transpose16(&mut tile);
            for (c, col) in tile.iter().enumerate().take(cn) {
                let d = &mut dst[(c0 + c) * B + half * W..][..W];
                _mm512_storeu_ps(d.as_mut_ptr(), *col);
            }
        }
    }
}

/// [`super::portable::xwt_rows`] for B = 16: each row's sixteen token sums are one register, and sixteen rows' registers
/// are transposed into sixteen per-token runs of output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn xwt_rows16<P: PtrInt>(w: &Csr<P>, xt: &[f32], r0: usize, outs: &mut [&mut [f32]]) {
    let n = outs.first().map_or(0, |o| o.len());
    // Column indices are clamped rather than checked: CsrView::new validated them, and a clamp keeps a
    // violated invariant (new_trusted) from reading out of bounds without a branch per nonzero.
    let last = (xt.len() / W).saturating_sub(1);
    if xt.len() < W {
        return;
    }
    let xp = xt.as_ptr();
    for g0 in (0..n).step_by(W) {
        let gn = W.min(n - g0);
        let mut acc = [_mm512_setzero_ps(); W];
        for (i, a) in acc.iter_mut().enumerate().take(gn) {
            let (vals, cols) = w.row(r0 + g0 + i);
            // Two sums, so that a row's multiply-adds form two dependency chains of half the length.
            let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            let mut pairs = vals.chunks_exact(2).zip(cols.chunks_exact(2));
            for (v, c) in &mut pairs {
                let (c0, c1) = ((c[0] as usize).min(last), (c[1] as usize).min(last));
                s0 = _mm512_fmadd_ps(_mm512_set1_ps(v[0]), _mm512_loadu_ps(xp.add(c0 * W)), s0);
                s1 = _mm512_fmadd_ps(_mm512_set1_ps(v[1]), _mm512_loadu_ps(xp.add(c1 * W)), s1);
            }
            if vals.len() % 2 == 1 {
                let c = (cols[vals.len() - 1] as usize).min(last);
                s0 = _mm512_fmadd_ps(_mm512_set1_ps(vals[vals.len() - 1]), _mm512_loadu_ps(xp.add(c * W)), s0);
            }
            *a = _mm512_add_ps(s0, s1);
        }
        transpose16(&mut acc);
        let m = tail_mask(gn);
        for (o, a) in outs.iter_mut().zip(&acc) {
            let o = &mut o[g0..g0 + gn];
            _mm512_mask_storeu_ps(o.as_mut_ptr(), m, *a);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn xwt_rows_avx512<P: PtrInt, const B: usize>(w: &Csr<P>, xt: &[f32], r0: usize, outs: &mut [&mut [f32]]) {
    xwt_rows::<P, Fused, B>(w, xt, r0, outs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn grad_rows_avx512<P: PtrInt, const B: usize>(w: &Csr<P>, gyt: &[f32], gxt: &mut [f32]) {
    grad_rows::<P, Fused, B>(w, gyt, gxt)
}
