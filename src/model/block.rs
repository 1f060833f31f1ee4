//! The layers of the reference's weight-sparse GPT (spec A.3), each with its own `load` and a `forward` of a few
//! lines, as candle-transformers' model files have them: [`Attention`], [`Mlp`] and the [`Block`] that joins them
//! through the residual stream.
//!
//! Each layer has two forwards with the same hook points and the same numbers: `forward`, the tensor path
//! (autograd-capable: training, pruning masks, patches), and `forward_inference`, which runs the same weights on
//! plain (B·T, width) row buffers through the fused row kernels of `inference.rs` ([`InferCtx`]). Another model
//! family is one more file of layers with this API.

use candle_core::{DType, Device, Tensor, D};
use circuitscope_kernels::RowTopK;

use super::attention_op::CausalAttentionOp;
use super::checkpoint::Checkpoint;
use super::config::{Activation, Config, Loctype, ResidualActivation};
use super::error::Result;
use super::gpt::LoadOptions;
use super::hook_name::{HookName, HookSite};
use super::hooks::Hooks;
use super::inference::{add_assign, bias_of, Acts, InferCtx};
use super::linear::{Linear, Weight};
use super::norm::Norm;
use super::pattern::{attention_pattern, QkLayout};
use super::topk::abs_topk;
use super::weight_names::{self as wn, BlockLinear, BlockNorm};

/// Reads a model's tensors from a checkpoint, checking each one's shape, in the layout its config asks for.
pub(super) struct Loader<'a> {
    pub(super) ck: &'a Checkpoint,
    pub(super) cfg: &'a Config,
    pub(super) opts: LoadOptions,
}

impl Loader<'_> {
    /// A dense tensor of exactly `shape`.
    pub(super) fn dense(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.ck.require_dense(name, shape)
    }

    /// A weight matrix, kept as CSR when sparse enough.
    pub(super) fn matrix(&self, name: &str, shape: &[usize]) -> Result<Weight> {
        Weight::from_stored(self.ck.require(name, shape)?, self.opts.sparse_below)
    }

    /// The linear layer at `prefix` (`<prefix>.weight`, and `<prefix>.bias` in models with biases): (out, inp).
    pub(super) fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.matrix(&format!("{prefix}.weight"), &[out, inp])?,
            bias: if self.cfg.bias {
                Some(self.dense(&format!("{prefix}.bias"), &[out])?)
            } else {
                None
            },
        })
    }

    /// The norm at `prefix` over `dim` channels: RMSNorm or LayerNorm as the config says.
    pub(super) fn norm(&self, prefix: &str, dim: usize) -> Result<Norm> {
        let weight = self.dense(&format!("{prefix}.weight"), &[dim])?;
        Ok(if self.cfg.rms_norm {
            Norm::Rms { weight }
        } else {
            Norm::Layer {
                weight,
                bias: if self.cfg.ln_bias {
                    Some(self.dense(&format!("{prefix}.bias"), &[dim])?)
                } else {
                    None
                },
            }
        })
    }
}

/// Causal multi-head attention with an optional learned sink slot per head.
pub(super) struct Attention {
    /// q, k and v stacked: (3A, Din).
    pub(super) c_attn: Linear,
    /// (D, A).
    pub(super) c_proj: Linear,
    /// (n_head) learned logit of the per-head sink slot.
    pub(super) sink_logit: Option<Tensor>,
}

impl Attention {
    /// Block `layer`'s attention weights.
    pub(super) fn load(w: &Loader, layer: usize) -> Result<Self> {
        let cfg = w.cfg;
        let (d, din, a) = (cfg.d_model, cfg.d_model_in(), cfg.attn_width());
        Ok(Attention {
            c_attn: w.linear(&wn::linear(layer, BlockLinear::AttnQkv), 3 * a, din)?,
            c_proj: w.linear(&wn::linear(layer, BlockLinear::AttnOut), d, a)?,
            sink_logit: if cfg.sink {
                Some(w.dense(&wn::sink_logit(layer), &[cfg.n_head])?)
            } else {
                None
            },
        })
    }

    /// read (B, T, Din) → the sublayer's residual delta (B, T, D), through hooks k, q, v (the reference's order),
    /// y and resid_delta of block `layer`.
    pub(super) fn forward(&self, cfg: &Config, layer: usize, read: &Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        let a = cfg.attn_width();
        let at = |site: HookSite| HookName::block(layer, site).to_string();
        let qkv = self.c_attn.forward(read)?; // (B, T, 3A)
        let k = topk(cfg, Loctype::AttnK, qkv.narrow(2, a, a)?.contiguous()?)?;
        let k = hooks.apply(&at(HookSite::AttnK), k)?;
        let q = topk(cfg, Loctype::AttnQ, qkv.narrow(2, 0, a)?.contiguous()?)?;
        let q = hooks.apply(&at(HookSite::AttnQ), q)?;
        let v = topk(cfg, Loctype::AttnV, qkv.narrow(2, 2 * a, a)?.contiguous()?)?;
        let v = hooks.apply(&at(HookSite::AttnV), v)?;
        let pattern = at(HookSite::AttnPattern);
        if hooks.wants_pattern(&pattern) {
            let p = self.pattern(cfg, layer, &q, &k)?;
            hooks.record_pattern(pattern, p);
        }
        let y = if hooks.differentiable || q.track_op() || k.track_op() || v.track_op() {
            self.attend_graph(cfg, layer, &q, &k, &v)?
        } else {
            self.attend_fused(cfg, layer, &q, &k, &v)?
        };
        let y = hooks.apply(&at(HookSite::AttnY), y)?;
        let o = topk(cfg, Loctype::AttnOut, self.c_proj.forward(&y)?)?;
        hooks.apply(&at(HookSite::AttnResidDelta), o)
    }

    /// read (B·T, Din) → the sublayer's residual delta (B·T, D) on the inference path, through the same hooks
    /// as [`Attention::forward`]. q, k and v stay in the fused (B·T, 3A) product, each biased and sparsified in
    /// place as the product's rows are finished, and attention reads them there.
    pub(super) fn forward_inference(&self, ctx: &mut InferCtx, layer: usize, read: Acts) -> Result<Acts> {
        let cfg = ctx.cfg;
        let (a, rows, t) = (cfg.attn_width(), ctx.b * ctx.t, ctx.t);
        let at = |site: HookSite| HookName::block(layer, site).to_string();
        let bias = bias_of(&self.c_attn)?;
        let ks = [Loctype::AttnQ, Loctype::AttnK, Loctype::AttnV].map(|loc| cfg.topk_at(loc, a));
        let init = || [RowTopK::new(), RowTopK::new(), RowTopK::new()];
        let mut qkv = ctx.product_then(&self.c_attn, &read.data, init, |topk, _, row| {
            for (part, (seg, topk)) in row.chunks_exact_mut(a).zip(topk.iter_mut()).enumerate() {
                if let Some(b) = &bias {
                    add_assign(seg, &b[part * a..(part + 1) * a]);
                }
                if let Some(k) = ks[part] {
                    topk.apply(seg, k);
                }
            }
        })?; // (B·T, 3A)
        ctx.recycle(read.data);
        // The reference's hook order: k, q, v. A hooked part is copied out and, after the hook, back.
        for (site, part) in [(HookSite::AttnK, 1), (HookSite::AttnQ, 0), (HookSite::AttnV, 2)] {
            let name = at(site);
            if ctx.hooks.wants(&name) {
                let mut seg = Vec::with_capacity(rows * a);
                for row in qkv.data.chunks_exact(3 * a) {
                    seg.extend_from_slice(&row[part * a..(part + 1) * a]);
                }
                let seg = ctx.hook(&name, Acts { data: seg, width: a })?;
                for (row, src) in qkv.data.chunks_exact_mut(3 * a).zip(seg.data.chunks_exact(a)) {
                    row[part * a..(part + 1) * a].copy_from_slice(src);
                }
            }
        }
        let sink: Option<Vec<f32>> = match &self.sink_logit {
            Some(s) => Some(s.to_vec1()?),
            None => None,
        };
        let pattern = at(HookSite::AttnPattern);
        if ctx.hooks.wants_pattern(&pattern) {
            let lay = QkLayout {
                b: ctx.b,
                t,
                n_head: cfg.n_head,
                d_head: cfg.d_head,
                stride: 3 * a,
                scale: cfg.attn_scale(layer),
            };
            let p = attention_pattern(&qkv.data, &qkv.data[a..], lay, sink.as_deref());
            let p = Tensor::from_vec(p, (ctx.b, cfg.n_head, t, t), &Device::Cpu)?;
            ctx.hooks.record_pattern(pattern, p);
        }
        let shape = circuitscope_kernels::AttentionShape {
            t,
            n_head: cfg.n_head,
            d_head: cfg.d_head,
        };
        let scale = cfg.attn_scale(layer);
        let mut y = ctx.take(rows * a);
        let seq = t * 3 * a;
        for (i, y) in y.chunks_exact_mut(t * a).enumerate() {
            let qkv = &qkv.data[i * seq..(i + 1) * seq];
            let (q, k, v) = (qkv, &qkv[a..], &qkv[2 * a..]);
            circuitscope_kernels::causal_attention_strided(q, k, v, 3 * a, shape, scale, sink.as_deref(), y)?;
        }
        ctx.recycle(qkv.data);
        let y = ctx.hook(&at(HookSite::AttnY), Acts { data: y, width: a })?; // (B·T, A)
        let name = at(HookSite::AttnResidDelta);
        let o = ctx.sublayer_product(name, Loctype::AttnOut, &self.c_proj, &y.data, |_| {})?;
        ctx.recycle(y.data);
        Ok(o)
    }

    /// The attention weights (B, n_head, T, T) of q, k: (B, T, A), detached from any graph.
    fn pattern(&self, cfg: &Config, layer: usize, q: &Tensor, k: &Tensor) -> Result<Tensor> {
        let (b, t, a) = q.dims3()?;
        let sink: Option<Vec<f32>> = match &self.sink_logit {
            Some(s) => Some(s.to_vec1()?),
            None => None,
        };
        let lay = QkLayout {
            b,
            t,
            n_head: cfg.n_head,
            d_head: cfg.d_head,
            stride: a,
            scale: cfg.attn_scale(layer),
        };
        let (qv, kv): (Vec<f32>, Vec<f32>) = (q.flatten_all()?.to_vec1()?, k.flatten_all()?.to_vec1()?);
        let p = attention_pattern(&qv, &kv, lay, sink.as_deref());
        Ok(Tensor::from_vec(p, (b, cfg.n_head, t, t), q.device())?)
    }

    /// Attention as a differentiable custom op (fused kernel forward and backward). q, k, v: (B, T, A) → (B, T, A).
    fn attend_graph(&self, cfg: &Config, layer: usize, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let qkv = Tensor::cat(&[q, k, v], D::Minus1)?.contiguous()?; // (B, T, 3A)
        let op = CausalAttentionOp {
            n_head: cfg.n_head,
            d_head: cfg.d_head,
            scale: cfg.attn_scale(layer),
            has_sink: self.sink_logit.is_some(),
        };
        let sink = match &self.sink_logit {
            Some(s) => s.clone(),
            None => Tensor::zeros(cfg.n_head, DType::F32, q.device())?,
        };
        Ok(qkv.apply_op2(&sink, op)?)
    }

    /// Attention through the fused CPU kernel (no gradients). q, k, v: (B, T, A) → y: (B, T, A).
    fn attend_fused(&self, cfg: &Config, layer: usize, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (b, t, a) = q.dims3()?;
        let shape = circuitscope_kernels::AttentionShape {
            t,
            n_head: cfg.n_head,
            d_head: cfg.d_head,
        };
        let sink: Option<Vec<f32>> = match &self.sink_logit {
            Some(s) => Some(s.to_vec1()?),
            None => None,
        };
        let (qv, kv, vv): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            q.flatten_all()?.to_vec1()?,
            k.flatten_all()?.to_vec1()?,
            v.flatten_all()?.to_vec1()?,
        );
        let mut y = vec![0f32; b * t * a];
        let scale = cfg.attn_scale(layer);
        for i in 0..b {
            let r = i * t * a..(i + 1) * t * a;
            circuitscope_kernels::causal_attention(
                &qv[r.clone()],
                &kv[r.clone()],
                &vv[r.clone()],
                shape,
                scale,
                sink.as_deref(),
                &mut y[r],
            )?;
        }
        Ok(Tensor::from_vec(y, (b, t, a), q.device())?)
    }
}

/// The two-layer MLP.
pub(super) struct Mlp {
    /// (F, Din).
    pub(super) c_fc: Linear,
    /// (D, F).
    pub(super) c_proj: Linear,
}

impl Mlp {
    /// Block `layer`'s MLP weights.
    pub(super) fn load(w: &Loader, layer: usize) -> Result<Self> {
        let cfg = w.cfg;
        let (d, din, f) = (cfg.d_model, cfg.d_model_in(), cfg.d_mlp);
        Ok(Mlp {
            c_fc: w.linear(&wn::linear(layer, BlockLinear::MlpIn), f, din)?,
            c_proj: w.linear(&wn::linear(layer, BlockLinear::MlpOut), d, f)?,
        })
    }

    /// read (B, T, Din) → the sublayer's residual delta (B, T, D), through hooks post_act and resid_delta of
    /// block `layer`.
    pub(super) fn forward(&self, cfg: &Config, layer: usize, read: &Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        let at = |site: HookSite| HookName::block(layer, site).to_string();
        let h = self.c_fc.forward(read)?; // (B, T, F)
        let h = match cfg.activation_type {
            Activation::Gelu if !h.track_op() => {
                let mut v: Vec<f32> = h.flatten_all()?.to_vec1()?;
                circuitscope_kernels::gelu_erf_inplace(&mut v);
                Tensor::from_vec(v, h.shape(), h.device())?
            }
            Activation::Gelu => h.gelu_erf()?,
            Activation::GeluNew if !h.track_op() => {
                let mut v: Vec<f32> = h.flatten_all()?.to_vec1()?;
                gelu_tanh_inplace(&mut v);
                Tensor::from_vec(v, h.shape(), h.device())?
            }
            Activation::GeluNew => h.gelu()?,
            Activation::Relu => h.relu()?,
        };
        let h = hooks.apply(&at(HookSite::MlpPostAct), topk(cfg, Loctype::MlpNeuron, h)?)?;
        let o = topk(cfg, Loctype::MlpOut, self.c_proj.forward(&h)?)?;
        hooks.apply(&at(HookSite::MlpResidDelta), o)
    }
    /// read (B·T, Din) → the sublayer's residual delta (B·T, D) on the inference path, through the same hooks
    /// as [`Mlp::forward`]; the bias, activation and AbsTopK run inside the product's row pass.
    pub(super) fn forward_inference(&self, ctx: &mut InferCtx, layer: usize, read: Acts) -> Result<Acts> {
        let at = |site: HookSite| HookName::block(layer, site).to_string();
        let activation = ctx.cfg.activation_type;
        let h = ctx.sublayer_product(
            at(HookSite::MlpPostAct),
            Loctype::MlpNeuron,
            &self.c_fc,
            &read.data,
            |row| match activation {
                Activation::Gelu => circuitscope_kernels::gelu_erf_inplace(row),
                Activation::GeluNew => gelu_tanh_inplace(row),
                Activation::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            },
        )?; // (B·T, F)
        ctx.recycle(read.data);
        let o = ctx.sublayer_product(
            at(HookSite::MlpResidDelta),
            Loctype::MlpOut,
            &self.c_proj,
            &h.data,
            |_| {},
        )?;
        ctx.recycle(h.data);
        Ok(o)
    }
}

/// A transformer block: norm → attention → residual, norm → MLP → residual.
pub(super) struct Block {
    pub(super) ln_1: Norm,
    pub(super) ln_2: Norm,
    /// Norms of the positional channels in the cat-pos-emb variant.
    pub(super) ln_p: Option<(Norm, Norm)>,
    pub(super) attn: Attention,
    pub(super) mlp: Mlp,
}

impl Block {
    /// Block `layer`'s weights.
    pub(super) fn load(w: &Loader, layer: usize) -> Result<Self> {
        let d = w.cfg.d_model;
        Ok(Block {
            ln_1: w.norm(&wn::norm(layer, BlockNorm::Ln1), d)?,
            ln_2: w.norm(&wn::norm(layer, BlockNorm::Ln2), d)?,
            ln_p: match w.cfg.d_pos_emb {
                Some(dp) => Some((
                    w.norm(&wn::norm(layer, BlockNorm::LnP1), dp)?,
                    w.norm(&wn::norm(layer, BlockNorm::LnP2), dp)?,
                )),
                None => None,
            },
            attn: Attention::load(w, layer)?,
            mlp: Mlp::load(w, layer)?,
        })
    }

    /// x: (B, T, D) → (B, T, D), through every hook of block `layer`. `pos`: (T, D or d_pos_emb).
    pub(super) fn forward(
        &self,
        cfg: &Config,
        layer: usize,
        x: Tensor,
        pos: &Tensor,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        let x = self.forward_attn_half(cfg, layer, x, pos, hooks)?;
        self.forward_mlp_half(cfg, layer, x, pos, hooks)
    }

    /// The attention half: x (B, T, D) entering the block → the residual stream after the `resid_mid` hook.
    pub(super) fn forward_attn_half(
        &self,
        cfg: &Config,
        layer: usize,
        x: Tensor,
        pos: &Tensor,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        let at = |site: HookSite| HookName::block(layer, site).to_string();
        let x = hooks.apply(&at(HookSite::ResidIn), x)?;
        let read = with_pos(self.ln_1.forward(&x)?, self.ln_p.as_ref().map(|p| &p.0), pos)?;
        let read = hooks.apply(&at(HookSite::AttnActIn), topk(cfg, Loctype::AttnIn, read)?)?; // (B, T, Din)
        let o = self.attn.forward(cfg, layer, &read, hooks)?;
        let x = residual(cfg, Loctype::ResidPostAttn, (x + o)?)?;
        hooks.apply(&at(HookSite::ResidMid), x)
    }

    /// The MLP half: the residual stream after `resid_mid` (B, T, D) → the block's output (B, T, D).
    pub(super) fn forward_mlp_half(
        &self,
        cfg: &Config,
        layer: usize,
        x: Tensor,
        pos: &Tensor,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        let at = |site: HookSite| HookName::block(layer, site).to_string();
        let read = with_pos(self.ln_2.forward(&x)?, self.ln_p.as_ref().map(|p| &p.1), pos)?;
        let read = hooks.apply(&at(HookSite::MlpActIn), topk(cfg, Loctype::MlpIn, read)?)?;
        let o = self.mlp.forward(cfg, layer, &read, hooks)?;
        residual(cfg, Loctype::ResidPostMlp, (x + o)?)
    }
    /// x: (B·T, D) → (B·T, D) on the inference path, through the same hooks as [`Block::forward`].
    /// `pos`: (T, D or d_pos_emb) row-major.
    pub(super) fn forward_inference(
        &self,
        ctx: &mut InferCtx,
        layer: usize,
        x: Vec<f32>,
        pos: &[f32],
    ) -> Result<Vec<f32>> {
        let at = |site: HookSite| HookName::block(layer, site).to_string();
        let d = ctx.cfg.d_model;
        let x = ctx.hook(&at(HookSite::ResidIn), Acts { data: x, width: d })?;
        let ln_p = self.ln_p.as_ref();
        let read = ctx.read(
            at(HookSite::AttnActIn),
            Loctype::AttnIn,
            &self.ln_1,
            ln_p.map(|p| &p.0),
            &x.data,
            pos,
        )?;
        let o = self.attn.forward_inference(ctx, layer, read)?;
        let x = ctx.residual(Some(at(HookSite::ResidMid)), Loctype::ResidPostAttn, x, &o.data)?;
        ctx.recycle(o.data);

        let read = ctx.read(
            at(HookSite::MlpActIn),
            Loctype::MlpIn,
            &self.ln_2,
            ln_p.map(|p| &p.1),
            &x.data,
            pos,
        )?;
        let o = self.mlp.forward_inference(ctx, layer, read)?;
        let x = ctx.residual(None, Loctype::ResidPostMlp, x, &o.data)?;
        ctx.recycle(o.data);
        Ok(x.data)
    }
}

/// x ← GPT-2's `gelu_new`, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in place; the formula candle's `gelu`
/// uses on the tensor path, so both paths agree.
fn gelu_tanh_inplace(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x {
        let u = SQRT_2_OVER_PI * (*v + 0.044_715 * *v * *v * *v);
        *v = 0.5 * *v * (1.0 + u.tanh());
    }
}

/// AbsTopK over the last dimension where the config sparsifies `loc`; x unchanged elsewhere.
fn topk(cfg: &Config, loc: Loctype, x: Tensor) -> Result<Tensor> {
    let dim = *x.dims().last().expect("rank >= 1");
    Ok(match cfg.topk_at(loc, dim) {
        Some(k) => abs_topk(&x, k)?,
        None => x,
    })
}

/// The residual stream's optional activation, then its AbsTopK.
fn residual(cfg: &Config, loc: Loctype, x: Tensor) -> Result<Tensor> {
    let x = match cfg.residual_activation_type {
        ResidualActivation::Relu => x.relu()?,
        ResidualActivation::Identity => x,
    };
    topk(cfg, loc, x)
}

/// In the cat-pos-emb variant, appends the normalised positional channels to a sublayer's input.
/// read: (B, T, D) → (B, T, Din).
fn with_pos(read: Tensor, ln_p: Option<&Norm>, pos: &Tensor) -> Result<Tensor> {
    Ok(match ln_p {
        Some(norm) => {
            let (b, t, _) = read.dims3()?;
            let p = norm.forward(pos)?.unsqueeze(0)?.broadcast_as((b, t, pos.dims()[1]))?;
            Tensor::cat(&[&read, &p], D::Minus1)?
        }
        None => read,
    })
}
