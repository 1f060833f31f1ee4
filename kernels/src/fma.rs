//! Multiply-add, fused or not, chosen at compile time per kernel instantiation.

/// `a * b + c`, fused or not. `f32::mul_add` is a single instruction only where FMA is
/// enabled; elsewhere it is a slow libm call, so the portable build uses separate ops.
pub(crate) trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

pub(crate) struct Fused;
pub(crate) struct Unfused;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Unfused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}
