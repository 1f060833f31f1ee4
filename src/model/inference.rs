//! The inference forward: the same computation as `Gpt::forward`'s graph path, on plain buffers with fused
//! kernels, for when no gradient is needed. Candle tensors are built only at hook points that are recorded or
//! intervened on, so hooks behave exactly as on the graph path (the parity tests run both).

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::config::{Activation, Loctype, ResidualActivation};
use super::error::Result;
use super::gpt::{Block, Gpt};
use super::hooks::Hooks;
use super::linear::{Linear, Weight};
use super::norm::{Norm, LAYER_NORM_EPS, RMS_EPS};
use super::topk::abs_topk_vec;

/// Activations of `rows` = B·T positions, each `width` wide, row-major.
struct Acts {
    data: Vec<f32>,
    width: usize,
}

impl Gpt {
    /// ids: B·T token ids (rows of T) → logits (B, T, V).
    pub(super) fn forward_inference(&self, ids: &[u32], b: usize, t: usize, hooks: &mut Hooks) -> Result<Tensor> {
        let cfg = &self.config;
        let rows = b * t;
        let ids_t = Tensor::from_slice(ids, rows, &Device::Cpu)?;
        let mut x: Vec<f32> = self.wte.index_select(&ids_t, 0)?.flatten_all()?.to_vec1()?; // (B·T, D)
        let pos: Vec<f32> = self.wpe.narrow(0, 0, t)?.flatten_all()?.to_vec1()?; // (T, D or d_pos_emb)
        if cfg.d_pos_emb.is_none() {
            for (row, p) in x.chunks_mut(cfg.d_model).zip(pos.chunks(cfg.d_model).cycle()) {
                add_assign(row, p);
            }
        }
        let mut ctx = Ctx { gpt: self, hooks, b, t };
        for (l, block) in self.blocks.iter().enumerate() {
            x = ctx.block(l, block, x, &pos)?;
        }
        let x = ctx.hook(
            "final_resid",
            Acts {
                data: x,
                width: cfg.d_model,
            },
        )?;
        let normed = norm_rows(&self.ln_f, &x.data, cfg.d_model)?;
        let mut logits = linear(&self.lm_head, &normed, rows)?; // (B·T, V)
        let v = cfg.vocab_size;
        let flb: Vec<f32> = self.final_logits_bias.to_vec1()?;
        add_row(&mut logits, &flb);
        if let Some(table) = &self.bigram_table {
            let bigram: Vec<f32> = table.index_select(&ids_t, 0)?.flatten_all()?.to_vec1()?;
            add_assign(&mut logits, &bigram);
        }
        Ok(Tensor::from_vec(logits, (b, t, v), &Device::Cpu)?)
    }
}

struct Ctx<'a> {
    gpt: &'a Gpt,
    hooks: &'a mut Hooks,
    b: usize,
    t: usize,
}

impl Ctx<'_> {
    /// Passes activations through a hook point; tensors are only built where the hook is used.
    fn hook(&mut self, name: &str, x: Acts) -> Result<Acts> {
        if !self.hooks.wants(name) {
            return Ok(x);
        }
        let width = x.width;
        let tensor = Tensor::from_vec(x.data, (self.b, self.t, width), &Device::Cpu)?;
        let out = self.hooks.apply(name, tensor)?;
        Ok(Acts {
            data: out.flatten_all()?.to_vec1()?,
            width,
        })
    }

    fn topk(&self, loc: Loctype, mut x: Acts) -> Acts {
        if let Some(k) = self.gpt.config.topk_at(loc, x.width) {
            abs_topk_vec(&mut x.data, x.width, k);
        }
        x
    }

    fn hooked_topk(&mut self, name: String, loc: Loctype, x: Acts) -> Result<Acts> {
        let x = self.topk(loc, x);
        self.hook(&name, x)
    }

    /// x: (B·T, D) → (B·T, D).
    fn block(&mut self, l: usize, block: &Block, x: Vec<f32>, pos: &[f32]) -> Result<Vec<f32>> {
        let cfg = &self.gpt.config;
        let (d, a, rows) = (cfg.d_model, cfg.attn_width(), self.b * self.t);
        let x = self.hook(&format!("{l}.resid_in"), Acts { data: x, width: d })?.data;

        // Attention sublayer.
        let read = self.read(&block.ln_1, block.ln_p.as_ref().map(|p| &p.0), &x, pos)?;
        let read = self.hooked_topk(format!("{l}.attn.act_in"), Loctype::AttnIn, read)?;
        let qkv = linear(&block.attn.c_attn, &read.data, rows)?; // (B·T, 3A)
        let [q, k, v] = split_qkv(&qkv, a);
        let k = self.hooked_topk(format!("{l}.attn.k"), Loctype::AttnK, Acts { data: k, width: a })?;
        let q = self.hooked_topk(format!("{l}.attn.q"), Loctype::AttnQ, Acts { data: q, width: a })?;
        let v = self.hooked_topk(format!("{l}.attn.v"), Loctype::AttnV, Acts { data: v, width: a })?;
        let sink: Option<Vec<f32>> = match &block.attn.sink_logit {
            Some(s) => Some(s.to_vec1()?),
            None => None,
        };
        let shape = circuitscope_kernels::AttentionShape {
            t: self.t,
            n_head: cfg.n_head,
            d_head: cfg.d_head,
        };
        let scale = 1.0 / (cfg.d_head as f32).sqrt();
        let mut y = vec![0f32; rows * a];
        let seq = self.t * a;
        for i in 0..self.b {
            let r = i * seq..(i + 1) * seq;
            circuitscope_kernels::causal_attention(
                &q.data[r.clone()],
                &k.data[r.clone()],
                &v.data[r.clone()],
                shape,
                scale,
                sink.as_deref(),
                &mut y[r],
            )?;
        }
        let y = self.hook(&format!("{l}.attn.y"), Acts { data: y, width: a })?;
        let o = Acts {
            data: linear(&block.attn.c_proj, &y.data, rows)?,
            width: d,
        };
        let o = self.hooked_topk(format!("{l}.attn.resid_delta"), Loctype::AttnOut, o)?;
        let x = self.residual(Loctype::ResidPostAttn, x, &o.data);
        let x = self.hook(&format!("{l}.resid_mid"), Acts { data: x, width: d })?.data;

        // MLP sublayer.
        let read = self.read(&block.ln_2, block.ln_p.as_ref().map(|p| &p.1), &x, pos)?;
        let read = self.hooked_topk(format!("{l}.mlp.act_in"), Loctype::MlpIn, read)?;
        let mut h = linear(&block.mlp.c_fc, &read.data, rows)?; // (B·T, F)
        match cfg.activation_type {
            Activation::Gelu => circuitscope_kernels::gelu_erf_inplace(&mut h),
            Activation::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
        }
        let h = self.hooked_topk(
            format!("{l}.mlp.post_act"),
            Loctype::MlpNeuron,
            Acts {
                data: h,
                width: cfg.d_mlp,
            },
        )?;
        let o = Acts {
            data: linear(&block.mlp.c_proj, &h.data, rows)?,
            width: d,
        };
        let o = self.hooked_topk(format!("{l}.mlp.resid_delta"), Loctype::MlpOut, o)?;
        Ok(self.residual(Loctype::ResidPostMlp, x, &o.data))
    }

    /// x + delta, then the optional residual ReLU and AbsTopK.
    fn residual(&self, loc: Loctype, mut x: Vec<f32>, delta: &[f32]) -> Vec<f32> {
        add_assign(&mut x, delta);
        if self.gpt.config.residual_activation_type == ResidualActivation::Relu {
            x.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        self.topk(
            loc,
            Acts {
                data: x,
                width: self.gpt.config.d_model,
            },
        )
        .data
    }

    /// A sublayer's input: the normed residual, with the normed positional channels appended in the
    /// cat-pos-emb variant. (B·T, D) → (B·T, Din).
    fn read(&self, norm: &Norm, ln_p: Option<&Norm>, x: &[f32], pos: &[f32]) -> Result<Acts> {
        let d = self.gpt.config.d_model;
        let normed = norm_rows(norm, x, d)?;
        Ok(match (ln_p, self.gpt.config.d_pos_emb) {
            (Some(ln_p), Some(dp)) => {
                let p = norm_rows(ln_p, pos, dp)?; // (T, dp)
                let mut out = Vec::with_capacity(normed.len() / d * (d + dp));
                for (row, p_row) in normed.chunks(d).zip(p.chunks(dp).cycle()) {
                    out.extend_from_slice(row);
                    out.extend_from_slice(p_row);
                }
                Acts {
                    data: out,
                    width: d + dp,
                }
            }
            _ => Acts { data: normed, width: d },
        })
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    if x.len() >= PAR_MIN {
        // Memory-bound, but a serial pass over megabytes is a visible share of a multi-threaded forward.
        x.par_chunks_mut(PAR_CHUNK)
            .zip(y.par_chunks(PAR_CHUNK))
            .for_each(|(a, b)| add_assign(a, b));
        return;
    }
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// x += row, for every `row.len()`-wide row of x.
fn add_row(x: &mut [f32], row: &[f32]) {
    let add = |r: &mut [f32]| {
        for (a, b) in r.iter_mut().zip(row) {
            *a += b;
        }
    };
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(row.len()).for_each(add);
    } else {
        x.chunks_mut(row.len()).for_each(add);
    }
}

/// Buffers at least this long are added, biased and split by several threads.
const PAR_MIN: usize = 1 << 16;
const PAR_CHUNK: usize = 1 << 14;

/// (B·T, 3A) → q, k, v, each (B·T, A).
fn split_qkv(qkv: &[f32], a: usize) -> [Vec<f32>; 3] {
    let rows = qkv.len() / (3 * a).max(1);
    let mut out = [vec![0f32; rows * a], vec![0f32; rows * a], vec![0f32; rows * a]];
    for (i, part) in out.iter_mut().enumerate() {
        let copy = |(dst, src): (&mut [f32], &[f32])| dst.copy_from_slice(&src[i * a..(i + 1) * a]);
        if qkv.len() >= PAR_MIN {
            part.par_chunks_mut(a).zip(qkv.par_chunks(3 * a)).for_each(copy);
        } else {
            part.chunks_mut(a).zip(qkv.chunks(3 * a)).for_each(copy);
        }
    }
    out
}

/// x (rows, in) → x·Wᵀ + b (rows, out).
fn linear(lin: &Linear, x: &[f32], rows: usize) -> Result<Vec<f32>> {
    let (out_dim, in_dim) = lin.weight.dims();
    let mut y = match &lin.weight {
        Weight::Csr(w) => {
            let mut y = vec![0f32; rows * out_dim];
            circuitscope_kernels::csr_matmul_xwt(x, rows, &w.view(), &mut y)?;
            y
        }
        Weight::Dense(w) => {
            let xt = Tensor::from_slice(x, (rows, in_dim), &Device::Cpu)?;
            xt.matmul(&w.t()?)?.flatten_all()?.to_vec1()?
        }
    };
    if let Some(bias) = &lin.bias {
        let bias: Vec<f32> = bias.to_vec1()?;
        add_row(&mut y, &bias);
    }
    Ok(y)
}

/// Norm over rows of `dim`, as `Norm::forward` computes it.
fn norm_rows(norm: &Norm, x: &[f32], dim: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; x.len()];
    match norm {
        Norm::Rms { weight } => {
            let w: Vec<f32> = weight.to_vec1()?;
            circuitscope_kernels::rms_norm_rows(x, &w, RMS_EPS as f32, &mut out);
        }
        Norm::Layer { weight, bias } => {
            let w: Vec<f32> = weight.to_vec1()?;
            let bias: Option<Vec<f32>> = match bias {
                Some(b) => Some(b.to_vec1()?),
                None => None,
            };
            for (xr, or) in x.chunks(dim).zip(out.chunks_mut(dim)) {
                let mean = xr.iter().sum::<f32>() / dim as f32;
                let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
                let inv = 1.0 / (var + LAYER_NORM_EPS as f32).sqrt();
                for (i, (o, v)) in or.iter_mut().zip(xr).enumerate() {
                    *o = (v - mean) * inv * w[i] + bias.as_ref().map_or(0.0, |b| b[i]);
                }
            }
        }
    }
    Ok(out)
}
