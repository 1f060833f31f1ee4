//! Causal multi-head attention with sinks as a candle custom op: the fused CPU kernel forward and its backward
//! (probabilities recomputed), so that training and pruning differentiate through attention without
//! materialising (B, H, T, T) tensors.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use circuitscope_kernels::{causal_attention, causal_attention_backward, AttentionShape};

/// Inputs: qkv (B, T, 3A) with q, k, v side by side, and the per-head sink logits (H). Output y: (B, T, A).
pub struct CausalAttentionOp {
    /// Number of heads H.
    pub n_head: usize,
    /// Channels per head D; the attention width is `A = H * D`.
    pub d_head: usize,
    /// Multiplier of q·k before the softmax, normally `1 / sqrt(D)`.
    pub scale: f32,
    /// Without a sink the second input is ignored and gets no gradient.
    pub has_sink: bool,
}

impl CausalAttentionOp {
    fn dims(&self, l: &Layout) -> Result<(usize, usize, usize)> {
        let (b, t, w) = l.shape().dims3()?;
        let a = self.n_head * self.d_head;
        if w != 3 * a {
            candle_core::bail!("causal attention: qkv width {w}, expected 3·{a}");
        }
        Ok((b, t, a))
    }
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("causal attention: {what} must be contiguous"),
    }
}

/// Splits one sequence's (T, 3A) rows into q, k, v, each (T, A).
fn split_qkv(rows: &[f32], a: usize) -> [Vec<f32>; 3] {
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    for r in rows.chunks(3 * a) {
        for (i, o) in out.iter_mut().enumerate() {
            o.extend_from_slice(&r[i * a..(i + 1) * a]);
        }
    }
    out
}

impl CustomOp2 for CausalAttentionOp {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, t, a) = self.dims(l1)?;
        let qkv = contiguous(s1, l1, "qkv")?;
        let sink = contiguous(s2, l2, "sink")?;
        let shape = AttentionShape {
            t,
            n_head: self.n_head,
            d_head: self.d_head,
        };
        let mut y = vec![0f32; b * t * a];
        for (rows, out) in qkv.chunks(t * 3 * a).zip(y.chunks_mut(t * a)) {
            let [q, k, v] = split_qkv(rows, a);
            causal_attention(&q, &k, &v, shape, self.scale, self.has_sink.then_some(sink), out)
                .map_err(candle_core::Error::wrap)?;
        }
        Ok((CpuStorage::F32(y), Shape::from((b, t, a))))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        sink: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, w) = qkv.dims3()?;
        let a = w / 3;
        let shape = AttentionShape {
            t,
            n_head: self.n_head,
            d_head: self.d_head,
        };
        let qkv_v: Vec<f32> = qkv.flatten_all()?.to_vec1()?;
        let sink_v: Vec<f32> = sink.to_vec1()?;
        let dy: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        let mut dqkv = vec![0f32; b * t * w];
        let mut dsink = vec![0f32; self.n_head];
        let (mut dq, mut dk, mut dv, mut ds) = (
            vec![0f32; t * a],
            vec![0f32; t * a],
            vec![0f32; t * a],
            vec![0f32; self.n_head],
        );
        for s in 0..b {
            let [q, k, v] = split_qkv(&qkv_v[s * t * w..(s + 1) * t * w], a);
            causal_attention_backward(
                &q,
                &k,
                &v,
                shape,
                self.scale,
                self.has_sink.then_some(sink_v.as_slice()),
                &dy[s * t * a..(s + 1) * t * a],
                &mut dq,
                &mut dk,
                &mut dv,
                &mut ds,
            )
            .map_err(candle_core::Error::wrap)?;
            for (i, row) in dqkv[s * t * w..(s + 1) * t * w].chunks_mut(w).enumerate() {
                row[..a].copy_from_slice(&dq[i * a..(i + 1) * a]);
                row[a..2 * a].copy_from_slice(&dk[i * a..(i + 1) * a]);
                row[2 * a..].copy_from_slice(&dv[i * a..(i + 1) * a]);
            }
            for (acc, g) in dsink.iter_mut().zip(&ds) {
                *acc += g;
            }
        }
        let dqkv = Tensor::from_vec(dqkv, (b, t, w), qkv.device())?;
        let dsink = if self.has_sink {
            Some(Tensor::from_vec(dsink, self.n_head, sink.device())?)
        } else {
            None
        };
        Ok((Some(dqkv), dsink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var, D};

    /// The attention written with plain candle ops (scores, causal mask, the sink as an extra softmax slot).
    /// `softmax`, not `softmax_last_dim`: the latter has no backward in candle-nn 0.11.
    fn reference(qkv: &Tensor, sink: &Tensor, nh: usize, dh: usize, has_sink: bool) -> Result<Tensor> {
        let (b, t, w) = qkv.dims3()?;
        let a = w / 3;
        let heads = |z: Tensor| z.reshape((b, t, nh, dh))?.transpose(1, 2)?.contiguous();
        let q = heads(qkv.narrow(2, 0, a)?)?;
        let k = heads(qkv.narrow(2, a, a)?)?;
        let v = heads(qkv.narrow(2, 2 * a, a)?)?;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), qkv.device())?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (dh as f64).sqrt()))?.broadcast_add(&mask)?;
        let probs = if has_sink {
            let col = sink.reshape((1, nh, 1, 1))?.broadcast_as((b, nh, t, 1))?;
            let p = candle_nn::ops::softmax(&Tensor::cat(&[&col, &scores], D::Minus1)?, D::Minus1)?;
            p.narrow(D::Minus1, 1, t)?
        } else {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        };
        probs.contiguous()?.matmul(&v)?.transpose(1, 2)?.reshape((b, t, a))
    }

    #[test]
    fn forward_and_gradients_match_candle_composition() -> Result<()> {
        let (b, t, nh, dh) = (2, 9, 3, 4);
        let dev = Device::Cpu;
        for has_sink in [true, false] {
            let qkv = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, t, 3 * nh * dh), &dev)?)?;
            let sink = Var::from_tensor(&Tensor::randn(0f32, 1.0, nh, &dev)?)?;
            let r = Tensor::randn(0f32, 1.0, (b, t, nh * dh), &dev)?;
            let op = CausalAttentionOp {
                n_head: nh,
                d_head: dh,
                scale: 1.0 / (dh as f32).sqrt(),
                has_sink,
            };
            let ours = qkv.as_tensor().apply_op2(sink.as_tensor(), op)?;
            let want = reference(qkv.as_tensor(), sink.as_tensor(), nh, dh, has_sink)?;
            let diff = (&ours - &want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "forward differs by {diff}");
            let g_ours = (ours * &r)?.sum_all()?.backward()?;
            let g_want = (want * &r)?.sum_all()?.backward()?;
            for var in [&qkv, &sink] {
                let (a, b) = (g_ours.get(var), g_want.get(var));
                if !has_sink && var.dims() == [nh] {
                    assert!(a.is_none());
                    continue;
                }
                let d = (a.expect("grad") - b.expect("grad"))?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                assert!(
                    d < 1e-4,
                    "gradient of {:?} differs by {d} (sink {has_sink})",
                    var.dims()
                );
            }
            let _ = DType::F32;
        }
        Ok(())
    }
}
