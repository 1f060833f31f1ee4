//! AVX-512 building blocks shared by the kernels.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Lanes per register.
pub(crate) const W: usize = 16;

/// Lanes [0, n) of a 16-lane mask, n ≤ 16.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn tail_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// In-register transpose of a 16 x 16 tile: rows[r][c] ← rows[c][r].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn transpose16(rows: &mut [__m512; W]) {
    let r = *rows;
    // Pairs of rows interleaved within each 128-bit lane.
    let mut t = [_mm512_setzero_ps(); W];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + e]: rows 4g..4g + 4, element e of each 128-bit lane.
    let mut u = [_mm512_setzero_ps(); W];
    for g in 0..4 {
        let (a0, a1, b0, b1) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        let pd = _mm512_castps_pd;
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a0), pd(b0)));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a0), pd(b0)));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a1), pd(b1)));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a1), pd(b1)));
    }
    for e in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[e], u[4 + e]);
        let v1 = _mm512_shuffle_f32x4::<0xdd>(u[e], u[4 + e]);
        let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + e], u[12 + e]);
        let v3 = _mm512_shuffle_f32x4::<0xdd>(u[8 + e], u[12 + e]);
        rows[e] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
        rows[8 + e] = _mm512_shuffle_f32x4::<0xdd>(v0, v2);
        rows[4 + e] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
        rows[12 + e] = _mm512_shuffle_f32x4::<0xdd>(v1, v3);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn transpose16_transposes() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let m: Vec<f32> = (0..W * W).map(|i| i as f32).collect();
        let mut out = vec![0f32; W * W];
        // SAFETY: AVX-512F checked above; every pointer stays inside `m` or `out`.
        unsafe {
            let mut rows = [_mm512_setzero_ps(); W];
            for (r, row) in rows.iter_mut().enumerate() {
                *row = _mm512_loadu_ps(m.as_ptr().add(r * W));
            }
            transpose16(&mut rows);
            for (r, row) in rows.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(r * W), *row);
            }
        }
        for r in 0..W {
            for c in 0..W {
                assert_eq!(out[r * W + c], m[c * W + r], "({r}, {c})");
            }
        }
    }
}
