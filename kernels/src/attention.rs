//! Fused causal multi-head attention with optional per-head sinks, for inference.
//!
//! The candle composition (transpose to heads, QKᵀ, mask, cat the sink, softmax, narrow, PV, transpose back)
//! spends most of its time copying strided tensors. This kernel reads q, k, v once in (t, A) layout and exploits
//! AbsTopK sparsity: a query only multiplies the key channels where it is nonzero.

use rayon::prelude::*;

use crate::CsrError;

/// The paper's head size, which gets a specialised inner loop.
const HEAD16: usize = 16;

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Sequence length T.
    pub t: usize,
    pub n_head: usize,
    pub d_head: usize,
}

/// y = softmax(q·kᵀ·scale + causal mask [+ sink slot]) · v, per head.
///
/// `q`, `k`, `v`, `y`: (T, n_head·d_head) row-major; head h owns columns [h·d_head, (h+1)·d_head).
/// `sink`: per-head logit of an extra key with a zero value that every query sees (None: no sink).
pub fn causal_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: AttentionShape,
    scale: f32,
    sink: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), CsrError> {
    let AttentionShape { t, n_head, d_head } = shape;
    let a = n_head * d_head;
    for (what, len) in [("q", q.len()), ("k", k.len()), ("v", v.len()), ("y", y.len())] {
        if len != t * a {
            return Err(CsrError::ShapeMismatch {
                what,
                expected: t * a,
                got: len,
            });
        }
    }
    if let Some(s) = sink {
        if s.len() != n_head {
            return Err(CsrError::ShapeMismatch {
                what: "sink",
                expected: n_head,
                got: s.len(),
            });
        }
    }
    if t == 0 || a == 0 {
        return Ok(());
    }
    let mut heads = vec![0f32; n_head * t * d_head]; // (H, T, dh)
    let avx2 = has_avx2_fma();
    let run = |(h, out): (usize, &mut [f32])| {
        let sink = sink.map(|s| s[h]);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
            unsafe { head_attention_avx2(q, k, v, t, a, h, d_head, scale, sink, out) };
            return;
        }
        let _ = avx2;
        head_attention(q, k, v, t, a, h, d_head, scale, sink, out);
    };
    if n_head > 1 && t * t * d_head * n_head >= 1 << 16 {
        heads.par_chunks_mut(t * d_head).enumerate().for_each(run);
    } else {
        heads.chunks_mut(t * d_head).enumerate().for_each(run);
    }
    for (h, head) in heads.chunks(t * d_head).enumerate() {
        for (i, row) in head.chunks(d_head).enumerate() {
            y[i * a + h * d_head..i * a + (h + 1) * d_head].copy_from_slice(row);
        }
    }
    Ok(())
}

pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The same code as `head_attention`, compiled for AVX2 so that its loops run 8 lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn head_attention_avx2(
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
    head_attention(q, k, v, t, a, h, dh, scale, sink, out)
}

/// One head; `out`: (T, dh).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn head_attention(
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
    // Channel-major copies so that the inner loops run over keys, contiguous and vectorisable.
    let mut kt = vec![0f32; dh * t];
    let mut vt = vec![0f32; dh * t];
    for j in 0..t {
        for c in 0..dh {
            kt[c * t + j] = k[j * a + h * dh + c];
            vt[c * t + j] = v[j * a + h * dh + c];
        }
    }
    // Row-major copy of this head's values, for the d_head = 16 path.
    let vr: Vec<f32> = if dh == HEAD16 {
        (0..t)
            .flat_map(|j| v[j * a + h * dh..j * a + (h + 1) * dh].iter().copied())
            .collect()
    } else {
        Vec::new()
    };
    let v_live: Vec<bool> = (0..dh)
        .map(|c| vt[c * t..(c + 1) * t].iter().any(|&x| x != 0.0))
        .collect();
    let mut scores = vec![0f32; t];
    let mut nz: Vec<(usize, f32)> = Vec::with_capacity(dh);
    for i in 0..t {
        let n = i + 1;
        let s = &mut scores[..n];
        s.fill(0.0);
        nz.clear();
        nz.extend((0..dh).filter_map(|c| {
            let x = q[i * a + h * dh + c];
            (x != 0.0).then_some((c, x * scale))
        }));
        for &(c, qc) in &nz {
            axpy(qc, &kt[c * t..c * t + n], s);
        }
        let mut m = max(s);
        if let Some(sl) = sink {
            m = m.max(sl);
        }
        let mut denom = exp_sub_sum(s, m);
        if let Some(sl) = sink {
            denom += (sl - m).exp();
        }
        let inv = 1.0 / denom;
        let row = &mut out[i * dh..(i + 1) * dh];
        if dh == HEAD16 {
            // One 16-lane multiply-add per key beats 16 dot products over the keys.
            let mut acc = [0f32; HEAD16];
            for (p, vj) in s.iter().zip(vr.chunks_exact(HEAD16)) {
                for c in 0..HEAD16 {
                    acc[c] += p * vj[c];
                }
            }
            for (r, a) in row.iter_mut().zip(acc) {
                *r = a * inv;
            }
        } else {
            for c in 0..dh {
                row[c] = if v_live[c] {
                    dot(s, &vt[c * t..c * t + n]) * inv
                } else {
                    0.0
                };
            }
        }
    }
}

/// y += a·x
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Σ x·y with eight partial sums, so that the compiler may vectorise without reassociating floats itself.
#[inline(always)]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in xr.iter().zip(yr) {
        s += a * b;
    }
    s
}

/// The largest entry (NaN-free input), with eight running maxima so that it vectorises.
#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for v in acc.iter().chain(rest) {
        m = if *v > m { *v } else { m };
    }
    m
}

/// s[j] = exp(s[j] - m); returns Σ s[j].
#[inline(always)]
fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = s.chunks_exact_mut(8);
    for c in &mut chunks {
        for l in 0..8 {
            c[l] = fast_exp(c[l] - m);
            acc[l] += c[l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for x in chunks.into_remainder() {
        *x = fast_exp(*x - m);
        sum += *x;
    }
    sum
}

/// exp(x) for x ≤ 0, for other modules' vectorised loops.
#[inline(always)]
pub(crate) fn fast_exp_any(x: f32) -> f32 {
    fast_exp(x)
}

/// exp(x) for x ≤ 0 (softmax arguments), within about 2 ulp, written branch-free so that it vectorises:
/// 2^n · p(r) with n = round(x·log2 e) and a degree-6 polynomial on r ∈ [-ln2/2, ln2/2].
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // A plain comparison, not f32::max: max's NaN rule and `as i32`'s saturation compile to scalar code.
    let x = if x < -87.0 { -87.0 } else { x };
    // Round to nearest by the 1.5·2^23 trick: the integer lands in the low mantissa bits of `shifted`.
    const MAGIC: f32 = 12_582_912.0;
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let n_int = (shifted.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.666_666_7e-1 + r * (4.166_666_6e-2 + r * (8.333_452e-3 + r * 1.390_238_4e-3)))));
    let bits = (n_int.wrapping_add(127) as u32) << 23;
    p * f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (a, b) = (fast_exp(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-6, "exp({x}): {a} vs {b}");
            x += 0.0137;
        }
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
    }
}

/// Gradients of [`causal_attention`]: given dy (T, A), accumulates nothing and overwrites `dq`, `dk`, `dv`
/// (each (T, A)) and `dsink` (n_head; left untouched when `sink` is None). Probabilities are recomputed, as a
/// flash-attention backward does, so the forward keeps no T×T state.
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: AttentionShape,
    scale: f32,
    sink: Option<&[f32]>,
    dy: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dsink: &mut [f32],
) -> Result<(), CsrError> {
    let AttentionShape { t, n_head, d_head } = shape;
    let a = n_head * d_head;
    for (what, len) in [
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
        ("dy", dy.len()),
        ("dq", dq.len()),
        ("dk", dk.len()),
        ("dv", dv.len()),
    ] {
        if len != t * a {
            return Err(CsrError::ShapeMismatch {
                what,
                expected: t * a,
                got: len,
            });
        }
    }
    if sink.is_some_and(|s| s.len() != n_head) || dsink.len() != n_head {
        return Err(CsrError::ShapeMismatch {
            what: "sink",
            expected: n_head,
            got: dsink.len(),
        });
    }
    if t == 0 || a == 0 {
        return Ok(());
    }
    // Per head: (dq, dk, dv) as (3, dh, T) channel-major, and dsink.
    let per_head = 3 * d_head * t;
    let mut grads = vec![0f32; n_head * per_head];
    let mut dsinks = vec![0f32; n_head];
    let avx2 = has_avx2_fma();
    let run = |(h, (g, ds)): (usize, (&mut [f32], &mut f32))| {
        let sink = sink.map(|s| s[h]);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
            unsafe { head_backward_avx2(q, k, v, dy, t, a, h, d_head, scale, sink, g, ds) };
            return;
        }
        let _ = avx2;
        head_backward(q, k, v, dy, t, a, h, d_head, scale, sink, g, ds);
    };
    if n_head > 1 && t * t * d_head * n_head >= 1 << 16 {
        grads
            .par_chunks_mut(per_head)
            .zip(dsinks.par_iter_mut())
            .enumerate()
            .for_each(run);
    } else {
        grads
            .chunks_mut(per_head)
            .zip(dsinks.iter_mut())
            .enumerate()
            .for_each(run);
    }
    for (h, g) in grads.chunks(per_head).enumerate() {
        for (which, out) in [&mut *dq, &mut *dk, &mut *dv].into_iter().enumerate() {
            let gt = &g[which * d_head * t..(which + 1) * d_head * t];
            for i in 0..t {
                for c in 0..d_head {
                    out[i * a + h * d_head + c] = gt[c * t + i];
                }
            }
        }
    }
    if sink.is_some() {
        dsink.copy_from_slice(&dsinks);
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn head_backward_avx2(
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

/// One head's backward; `grads`: (dq, dk, dv) each (dh, T) channel-major.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn head_backward(
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
    let col = |m: &[f32], j: usize, c: usize| m[j * a + h * dh + c];
    let mut kt = vec![0f32; dh * t];
    let mut vt = vec![0f32; dh * t];
    for j in 0..t {
        for c in 0..dh {
            kt[c * t + j] = col(k, j, c);
            vt[c * t + j] = col(v, j, c);
        }
    }
    let (dqt, rest) = grads.split_at_mut(dh * t);
    let (dkt, dvt) = rest.split_at_mut(dh * t);
    let mut p = vec![0f32; t];
    let mut dp = vec![0f32; t];
    let mut sink_grad = 0f32;
    for i in 0..t {
        let n = i + 1;
        // Recompute this query's probabilities.
        let s = &mut p[..n];
        s.fill(0.0);
        for c in 0..dh {
            let qc = col(q, i, c) * scale;
            if qc != 0.0 {
                axpy(qc, &kt[c * t..c * t + n], s);
            }
        }
        let mut m = max(s);
        if let Some(sl) = sink {
            m = if sl > m { sl } else { m };
        }
        let mut denom = exp_sub_sum(s, m);
        let p_sink = sink.map(|sl| (sl - m).exp());
        if let Some(ps) = p_sink {
            denom += ps;
        }
        let inv = 1.0 / denom;
        s.iter_mut().for_each(|x| *x *= inv);
        // dP_j = dy_i · v_j; δ = Σ_j p_j dP_j (the sink's value is zero, so its dP is zero).
        let d = &mut dp[..n];
        d.fill(0.0);
        for c in 0..dh {
            let g = col(dy, i, c);
            if g != 0.0 {
                axpy(g, &vt[c * t..c * t + n], d);
                // dV_j += p_j dy_i
                axpy(g, s, &mut dvt[c * t..c * t + n]);
            }
        }
        let delta = dot(s, d);
        if let Some(ps) = p_sink {
            sink_grad -= ps * inv * delta;
        }
        // dS_j = p_j (dP_j − δ), in place of dP.
        for (dj, pj) in d.iter_mut().zip(s.iter()) {
            *dj = pj * (*dj - delta);
        }
        for c in 0..dh {
            // dQ_i = scale Σ_j dS_j k_j ; dK_j += scale dS_j q_i
            dqt[c * t + i] = scale * dot(d, &kt[c * t..c * t + n]);
            let qc = col(q, i, c) * scale;
            if qc != 0.0 {
                axpy(qc, d, &mut dkt[c * t..c * t + n]);
            }
        }
    }
    *dsink = sink_grad;
}
