//! The attention bodies compiled for AVX2 and FMA, so that their loops run 8 lanes wide.

use super::portable::{head_attention, head_backward};
use crate::fma::Fused;

/// The same code as `head_attention`, compiled for AVX2 so that its loops run 8 lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn head_attention_avx2(
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn head_backward_avx2(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dy: &[f32],
    t: usize,
    a: usize,
    h: usize,
    dh: usize,
    scale: f32,
    sink: Option<f32>,
    grads: &mut [f32],
    dsink: &mut f32,
) {
    head_backward(q, k, v, dy, t, a, h, dh, scale, sink, grads, dsink)
}
