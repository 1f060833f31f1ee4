//! The attention bodies in plain Rust, generic over fused multiply-add ([`MulAdd`]) so that the AVX2 and
//! AVX-512 builds in the sibling files compile the same code with FMA; also the scalar helpers (dot, max,
//! exponentials) they share.

use super::HEAD16;
use crate::fma::MulAdd;

/// Queries whose probability-weighted value sums share one pass over the values (d_head = 16 path).
const QUERY_BLOCK: usize = 4;

/// Keys per register block when scoring.
const KEY_BLOCK: usize = 16;

/// One head; `q`, `k`, `v` have rows `a` apart (the full width, or a wider stride); `out`: (T, dh). `M` fuses
/// the multiply-adds where the instantiation has FMA.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn head_attention<M: MulAdd>(
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
    let kt = channel_major(k, t, a, h, dh);
    let vt = channel_major(v, t, a, h, dh);
    // Row-major copy of this head's values, for the d_head = 16 path.
    let mut vr: Vec<f32> = Vec::new();
    if dh == HEAD16 {
        vr.reserve(t * dh);
        for j in 0..t {
            vr.extend_from_slice(&v[j * a + h * dh..j * a + (h + 1) * dh]);
        }
    }
    let v_live: Vec<bool> = (0..dh)
        .map(|c| vt[c * t..(c + 1) * t].iter().any(|&x| x != 0.0))
        .collect();
    // Unnormalised probabilities of QUERY_BLOCK queries, each row padded with zeros up to the block's last key.
    let mut scores = vec![0f32; QUERY_BLOCK * t];
    let mut inv = [0f32; QUERY_BLOCK];
    let mut nz: Vec<(usize, f32)> = vec![(0, 0.0); dh];
    for i0 in (0..t).step_by(QUERY_BLOCK) {
        let qn = QUERY_BLOCK.min(t - i0);
        let n_block = i0 + qn;
        for (qi, (s, inv)) in scores.chunks_exact_mut(t).zip(inv.iter_mut()).take(qn).enumerate() {
            let i = i0 + qi;
            let n = i + 1;
            // Branch-free: which channels survived AbsTopK is random, and a branch per channel mispredicts.
            let mut live = 0;
            for (c, &x) in q[i * a + h * dh..i * a + (h + 1) * dh].iter().enumerate() {
                nz[live] = (c, x * scale);
                live += (x != 0.0) as usize;
            }
            let s = &mut s[..n_block];
            scores_into::<M>(&nz[..live], &kt, t, &mut s[..n]);
            s[n..].fill(0.0);
            let s = &mut s[..n];
            let mut m = max(s);
            if let Some(sl) = sink {
                m = m.max(sl);
            }
            let mut denom = exp_sub_sum(s, m);
            if let Some(sl) = sink {
                denom += (sl - m).exp();
            }
            *inv = 1.0 / denom;
        }
        if dh == HEAD16 {
            weighted_values16::<M>(&scores, t, &vr, n_block, &inv[..qn], &mut out[i0 * dh..n_block * dh]);
        } else {
            for (qi, (s, inv)) in scores.chunks_exact(t).zip(inv).take(qn).enumerate() {
                let i = i0 + qi;
                let n = i + 1;
                let row = &mut out[i * dh..(i + 1) * dh];
                for c in 0..dh {
                    row[c] = if v_live[c] {
                        dot(&s[..n], &vt[c * t..c * t + n]) * inv
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// Head h's columns of `m` ((T, A) row-major) as (dh, T). Tiles of TILE keys are gathered first so that each
/// channel's row is written as a contiguous run instead of one scattered store per key.
#[inline(always)]
fn channel_major(m: &[f32], t: usize, a: usize, h: usize, dh: usize) -> Vec<f32> {
    const TILE: usize = 16;
    let mut out = vec![0f32; dh * t];
    let mut tile = [0f32; TILE];
    for j0 in (0..t).step_by(TILE) {
        let tn = TILE.min(t - j0);
        for c in 0..dh {
            for (jj, x) in tile.iter_mut().take(tn).enumerate() {
                *x = m[(j0 + jj) * a + h * dh + c];
            }
            out[c * t + j0..c * t + j0 + tn].copy_from_slice(&tile[..tn]);
        }
    }
    out
}

/// s[j] = Σ_c q_c·kt[c, j] over the query's nonzero channels `nz` (q already scaled), in channel order: the same
/// sums as one pass over the keys per channel, but each block of keys stays in registers across the channels.
#[inline(always)]
fn scores_into<M: MulAdd>(nz: &[(usize, f32)], kt: &[f32], t: usize, s: &mut [f32]) {
    let n = s.len();
    let full = n - n % KEY_BLOCK;
    for j0 in (0..full).step_by(KEY_BLOCK) {
        let mut acc = [0f32; KEY_BLOCK];
        for &(c, qc) in nz {
            let kk: &[f32; KEY_BLOCK] = kt[c * t + j0..][..KEY_BLOCK].try_into().unwrap();
            for l in 0..KEY_BLOCK {
                acc[l] = M::mul_add(qc, kk[l], acc[l]);
            }
        }
        s[j0..j0 + KEY_BLOCK].copy_from_slice(&acc);
    }
    for (j, x) in s.iter_mut().enumerate().skip(full) {
        let mut acc = 0f32;
        for &(c, qc) in nz {
            acc = M::mul_add(qc, kt[c * t + j], acc);
        }
        *x = acc;
    }
}

/// out[qi] = inv[qi] · Σ_j s[qi, j]·v[j] for d_head = 16 and the block's queries: each value row is loaded once
/// for all of them. `scores`: (QUERY_BLOCK, t) with zeros past each query's own keys; `vr`: (t, 16).
#[inline(always)]
fn weighted_values16<M: MulAdd>(scores: &[f32], t: usize, vr: &[f32], n_block: usize, inv: &[f32], out: &mut [f32]) {
    let mut acc = [[0f32; HEAD16]; QUERY_BLOCK];
    for (j, vj) in vr.chunks_exact(HEAD16).take(n_block).enumerate() {
        let vj: &[f32; HEAD16] = vj.try_into().unwrap();
        for (qi, acc) in acc.iter_mut().enumerate() {
            let p = scores[qi * t + j];
            for c in 0..HEAD16 {
                acc[c] = M::mul_add(p, vj[c], acc[c]);
            }
        }
    }
    for ((row, acc), inv) in out.chunks_exact_mut(HEAD16).zip(acc).zip(inv) {
        for (r, a) in row.iter_mut().zip(acc) {
            *r = a * inv;
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

/// The largest entry (NaN-free input), with sixteen running maxima so that it vectorises.
#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..16 {
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
///
/// Exponentials are taken sixteen at a time (one AVX-512 register), but summed into eight lanes in the order
/// of an eight-wide loop, so the result does not depend on the vector width.
#[inline(always)]
fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut wide = s.chunks_exact_mut(16);
    for c in &mut wide {
        for x in c.iter_mut() {
            *x = fast_exp(*x - m);
        }
        for l in 0..8 {
            acc[l] += c[l];
        }
        for l in 0..8 {
            acc[l] += c[8 + l];
        }
    }
    let mut chunks = wide.into_remainder().chunks_exact_mut(8);
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

/// One head's backward; `grads`: (dq, dk, dv) each (dh, T) channel-major.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn head_backward(
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
