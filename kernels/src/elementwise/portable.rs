//! The element-wise bodies in plain Rust, inlined into each instruction set's build.

use crate::attention::fast_exp_any;

#[inline(always)]
pub(super) fn gelu_body(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf(x) branch-free: sign · (1 − poly(t)·exp(−x²)), t = 1/(1 + p·|x|).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152_1, 1.061_405_4];
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * fast_exp_any(-ax * ax);
    y.copysign(x)
}

#[inline(always)]
pub(super) fn rms_norm_body(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    // Sixteen partial sums, so that the sum of squares vectorises (a single f32 sum cannot be reordered).
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..16 {
            acc[l] += c[l] * c[l];
        }
    }
    let ss = acc.iter().sum::<f32>() + rest.iter().map(|v| v * v).sum::<f32>();
    let inv = 1.0 / (ss / w.len() as f32 + eps).sqrt();
    for ((o, v), g) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
}
