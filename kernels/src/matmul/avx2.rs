//! The blocked products' loops compiled for AVX2 and FMA.

use super::portable::{grad_rows, xwt_rows};
use super::{Csr, PtrInt};
use crate::fma::Fused;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) fn xwt_rows_avx2<P: PtrInt, const B: usize>(w: &Csr<P>, xt: &[f32], r0: usize, outs: &mut [&mut [f32]]) {
    xwt_rows::<P, Fused, B>(w, xt, r0, outs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) fn grad_rows_avx2<P: PtrInt, const B: usize>(w: &Csr<P>, gyt: &[f32], gxt: &mut [f32]) {
    grad_rows::<P, Fused, B>(w, gyt, gxt)
}
