//! The portable AbsTopK passes compiled for AVX2 and FMA (not for AVX-512: see [`super::RowTopK::apply`]).

use super::portable::{topk_row, topk_row_inplace};
use super::Scratch;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn topk_row_avx2(row: &[f32], out: &mut [f32], k: usize, mask: bool, s: &mut Scratch) {
    topk_row(row, out, k, mask, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn topk_row_inplace_avx2(row: &mut [f32], k: usize, s: &mut Scratch) {
    topk_row_inplace(row, k, s)
}
