//! The element-wise bodies compiled for AVX2 and FMA.

use super::portable::gelu_body;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gelu_chunk_avx2(x: &mut [f32]) {
    gelu_body(x)
}
