//! Element-wise inference kernels that candle runs slowly on CPU: exact-form GELU (libm's erff is scalar and
//! dominated the MLP), RMSNorm over rows, and the residual and bias additions (here rather than beside their
//! callers so that they are compiled optimised even in the dev profile, where the main crate is not: unoptimised
//! they were ~40% of a debug-build evaluation).
//!
//! The public functions and their choice of instruction set live here; the bodies are in `portable`, compiled
//! again for wider registers in `avx2` and `avx512`.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use self::avx2::gelu_chunk_avx2;
#[cfg(target_arch = "x86_64")]
use self::avx512::{gelu_chunk_avx512, rms_norm_row_avx512};
pub use self::portable::erf;
use self::portable::{gelu_body, rms_norm_body};

const PAR_MIN: usize = 1 << 15;

/// x ← 0.5·x·(1 + erf(x/√2)) in place, with erf to about 2e-7 absolute (Abramowitz & Stegun 7.1.26).
pub fn gelu_erf_inplace(x: &mut [f32]) {
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(1 << 13).for_each(gelu_chunk);
    } else {
        gelu_chunk(x);
    }
}

fn gelu_chunk(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::has_avx512() {
        // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked at run time just above).
        unsafe { gelu_chunk_avx512(x) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::isa::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        unsafe { gelu_chunk_avx2(x) };
        return;
    }
    gelu_body(x)
}

/// x += y, element by element, over multiple threads for long buffers; `y` as long as `x`.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    debug_assert_eq!(x.len(), y.len());
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(1 << 14)
            .zip(y.par_chunks(1 << 14))
            .for_each(|(a, b)| add_chunk(a, b));
    } else {
        add_chunk(x, y);
    }
}

/// x += row for every `row.len()`-wide row of x (a bias added to every position).
pub fn add_row(x: &mut [f32], row: &[f32]) {
    if row.is_empty() {
        return;
    }
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(row.len()).for_each(|r| add_chunk(r, row));
    } else {
        x.chunks_mut(row.len()).for_each(|r| add_chunk(r, row));
    }
}

fn add_chunk(a: &mut [f32], b: &[f32]) {
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
}

/// RMSNorm of each row of x (rows × dim): out = x / sqrt(mean(x²) + eps) · w.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let dim = w.len();
    if dim == 0 {
        return;
    }
    let row = |(xr, or): (&[f32], &mut [f32])| rms_norm_row(xr, w, eps, or);
    if x.len() >= PAR_MIN {
        x.par_chunks(dim).zip(out.par_chunks_mut(dim)).for_each(row);
    } else {
        x.chunks(dim).zip(out.chunks_mut(dim)).for_each(row);
    }
}

/// RMSNorm of one row: out = x / sqrt(mean(x²) + eps) · w (all three of w's length).
pub fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::has_avx512() {
        // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked at run time just above).
        unsafe { rms_norm_row_avx512(x, w, eps, out) };
        return;
    }
    rms_norm_body(x, w, eps, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf_ref(x: f64) -> f64 {
        // Series for |x| < 3, asymptotic tail beyond: enough to check 1e-6.
        if x.abs() > 5.0 {
            return x.signum();
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    #[test]
    fn erf_and_gelu_are_accurate() {
        let mut x = -6.0f32;
        while x < 6.0 {
            let e = (erf(x) as f64 - erf_ref(x as f64)).abs();
            assert!(e < 5e-7, "erf({x}) off by {e}");
            x += 0.0131;
        }
        let mut v: Vec<f32> = (-400..400).map(|i| i as f32 * 0.02).collect();
        let want: Vec<f64> = v
            .iter()
            .map(|&x| 0.5 * x as f64 * (1.0 + erf_ref(x as f64 / 2f64.sqrt())))
            .collect();
        gelu_erf_inplace(&mut v);
        for (g, w) in v.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5);
        }
    }

    #[test]
    fn rms_norm_matches_formula() {
        let x = [1.0f32, 2.0, 3.0, -4.0, 0.0, 0.0];
        let w = [1.0f32, 0.5, 2.0];
        let mut out = [0f32; 6];
        rms_norm_rows(&x, &w, 1e-6, &mut out);
        let inv = 1.0 / ((1.0f32 + 4.0 + 9.0) / 3.0 + 1e-6).sqrt();
        assert!((out[2] - 3.0 * inv * 2.0).abs() < 1e-6);
        assert_eq!(&out[3..], &[-4.0 / (16.0f32 / 3.0 + 1e-6).sqrt(), 0.0, 0.0]);
    }
}
