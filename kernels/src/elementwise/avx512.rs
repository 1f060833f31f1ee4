//! The element-wise bodies compiled for AVX-512.

use super::portable::{gelu_body, rms_norm_body};

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn gelu_chunk_avx512(x: &mut [f32]) {
    gelu_body(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn rms_norm_row_avx512(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    rms_norm_body(x, w, eps, out)
}
