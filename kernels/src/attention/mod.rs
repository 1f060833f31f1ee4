//! Fused causal multi-head attention with optional per-head sinks, for inference.
//!
//! The candle composition (transpose to heads, QKᵀ, mask, cat the sink, softmax, narrow, PV, transpose back)
//! spends most of its time copying strided tensors. This kernel reads q, k, v once in (t, A) layout and exploits
//! AbsTopK sparsity: a query only multiplies the key channels where it is nonzero.
//!
//! This file holds the public entry points, their shape checks and the choice of instruction set; the per-head
//! code is in `portable` (generic over fused multiply-add), `avx2` and `avx512` (those bodies compiled for wider
//! registers, and the d_head = 16 kernel written in AVX-512 intrinsics).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use self::avx2::{head_attention_avx2, head_backward_avx2};
#[cfg(target_arch = "x86_64")]
use self::avx512::{head16, head_attention_avx512, Scratch16, SharedOut};
pub(crate) use self::portable::fast_exp_any;
use self::portable::{head_attention, head_backward};
use crate::fma::Unfused;
use crate::isa::{has_avx2_fma, has_avx512};
use crate::CsrError;

/// The paper's head size, which gets a specialised inner loop.
const HEAD16: usize = 16;

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Sequence length T.
    pub t: usize,
    /// Number of heads H; q, k and v hold `H * d_head` channels per position.
    pub n_head: usize,
    /// Channels per head D (16 in the paper's models, which gets a specialised loop).
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
    let a = shape.n_head * shape.d_head;
    for (what, len) in [("q", q.len()), ("k", k.len()), ("v", v.len())] {
        expect(len == shape.t * a, what, shape.t * a, len)?;
    }
    causal_attention_strided(q, k, v, a, shape, scale, sink, y)
}

/// Ok when `ok`, else the shape error for `what` (expected vs got).
fn expect(ok: bool, what: &'static str, expected: usize, got: usize) -> Result<(), CsrError> {
    if ok {
        Ok(())
    } else {
        Err(CsrError::ShapeMismatch { what, expected, got })
    }
}

/// [`causal_attention`] on q, k, v that are column ranges of wider rows: row i of q is
/// `q[i·stride .. i·stride + n_head·d_head]`, and likewise for k and v, so that the three can be read in
/// place from one fused (T, 3A) projection (q = &qkv[..], k = &qkv[A..], v = &qkv[2A..], stride 3A).
/// `y` is (T, n_head·d_head).
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_strided(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    stride: usize,
    shape: AttentionShape,
    scale: f32,
    sink: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), CsrError> {
    let AttentionShape { t, n_head, d_head } = shape;
    let a = n_head * d_head;
    expect(t == 0 || stride >= a, "stride (at least n_head * d_head)", a, stride)?;
    let need = if t == 0 { 0 } else { (t - 1) * stride + a };
    for (what, len) in [("q", q.len()), ("k", k.len()), ("v", v.len())] {
        expect(len >= need, what, need, len)?;
    }
    expect(y.len() == t * a, "y", t * a, y.len())?;
    if let Some(s) = sink {
        expect(s.len() == n_head, "sink", n_head, s.len())?;
    }
    if t == 0 || a == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if d_head == HEAD16 && has_avx512() {
        let out = SharedOut(y.as_mut_ptr());
        let run = |s: &mut Scratch16, h: usize| {
            // SAFETY: AVX-512F is present (checked just above); the lengths were checked at the top (q, k, v hold
            // (T - 1)·stride + A floats, y T·A), 16·n_head = A, and each head writes only its own columns of y,
            // which `y`'s exclusive borrow keeps to this call.
            unsafe { head16(q, k, v, t, stride, a, h, scale, sink.map(|s| s[h]), out, s) }
        };
        if n_head > 1 && t * t * d_head * n_head >= 1 << 16 {
            (0..n_head).into_par_iter().for_each_init(Scratch16::default, run);
        } else {
            let mut s = Scratch16::default();
            (0..n_head).for_each(|h| run(&mut s, h));
        }
        return Ok(());
    }
    let mut heads = vec![0f32; n_head * t * d_head]; // (H, T, dh)
    let avx2 = has_avx2_fma();
    let avx512 = has_avx512();
    let run = |(h, out): (usize, &mut [f32])| {
        let sink = sink.map(|s| s[h]);
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked at run time just above).
            unsafe { head_attention_avx512(q, k, v, t, stride, h, d_head, scale, sink, out) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
            unsafe { head_attention_avx2(q, k, v, t, stride, h, d_head, scale, sink, out) };
            return;
        }
        let _ = (avx2, avx512);
        head_attention::<Unfused>(q, k, v, t, stride, h, d_head, scale, sink, out);
    };
    if n_head > 1 && t * t * d_head * n_head >= 1 << 16 {
        heads.par_chunks_mut(t * d_head).enumerate().for_each(run);
    } else {
        heads.chunks_mut(t * d_head).enumerate().for_each(run);
    }
    let gather = |(i, yrow): (usize, &mut [f32])| {
        for (h, dst) in yrow.chunks_exact_mut(d_head).enumerate() {
            let src = &heads[(h * t + i) * d_head..][..d_head];
            if d_head == HEAD16 {
                // A fixed-size copy compiles to vector moves rather than a memcpy call.
                let dst: &mut [f32; HEAD16] = dst.try_into().unwrap();
                *dst = src.try_into().unwrap();
            } else {
                dst.copy_from_slice(src);
            }
        }
    };
    if t * a >= 1 << 16 {
        y.par_chunks_mut(a).enumerate().for_each(gather);
    } else {
        y.chunks_mut(a).enumerate().for_each(gather);
    }
    Ok(())
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
        expect(len == t * a, what, t * a, len)?;
    }
    let sinks_ok = sink.is_none_or(|s| s.len() == n_head) && dsink.len() == n_head;
    expect(sinks_ok, "sink", n_head, dsink.len())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Sparse rows like AbsTopK's: about a quarter of the entries nonzero.
    fn sparse_values(seed: u64, n: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                if u < 0.75 {
                    0.0
                } else {
                    (u - 0.875) * 16.0
                }
            })
            .collect()
    }

    /// The d_head = 16 code paths all agree: the portable one, its AVX2 build and the AVX-512 `head16` (which
    /// the public function picks where it can, so the others are only reached on older CPUs).
    #[test]
    fn head16_paths_agree() {
        let (t, nh, dh) = (37, 3, HEAD16);
        let a = nh * dh;
        // q, k, v as the column ranges of one (T, 3A) buffer, as the forward passes them: rows 3A apart.
        let stride = 3 * a;
        let qkv = sparse_values(1, t * stride);
        let (q, k, v) = (&qkv[..], &qkv[a..], &qkv[2 * a..]);
        for sink in [None, Some(0.7f32)] {
            let mut portable = vec![0f32; t * a];
            for h in 0..nh {
                let mut out = vec![0f32; t * dh];
                head_attention::<Unfused>(q, k, v, t, stride, h, dh, 0.25, sink, &mut out);
                for i in 0..t {
                    portable[i * a + h * dh..][..dh].copy_from_slice(&out[i * dh..][..dh]);
                }
            }
            let close = |x: &[f32], what: &str| {
                for (i, (g, w)) in x.iter().zip(&portable).enumerate() {
                    assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{what}, entry {i}: {g} vs {w}");
                }
            };
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                let mut y = vec![0f32; t * a];
                for h in 0..nh {
                    let mut out = vec![0f32; t * dh];
                    // SAFETY: AVX2 and FMA are present (checked just above).
                    unsafe { head_attention_avx2(q, k, v, t, stride, h, dh, 0.25, sink, &mut out) };
                    for i in 0..t {
                        y[i * a + h * dh..][..dh].copy_from_slice(&out[i * dh..][..dh]);
                    }
                }
                close(&y, "avx2");
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx512() {
                let mut y = vec![f32::NAN; t * a];
                let mut s = Scratch16::default();
                for h in 0..nh {
                    // SAFETY: AVX-512F is present (checked just above); y holds T·A floats and only this
                    // thread writes it.
                    unsafe { head16(q, k, v, t, stride, a, h, 0.25, sink, SharedOut(y.as_mut_ptr()), &mut s) };
                }
                close(&y, "avx512");
            }
        }
    }
}
