//! The inference forward: the same computation as `Gpt::forward`'s graph path, on plain buffers with fused
//! kernels, for when no gradient is needed. Candle tensors are built only at hook points that are recorded or
//! intervened on, so hooks behave exactly as on the graph path (the parity tests run both).
//!
//! This file holds the machinery every layer shares ([`InferCtx`]: hooks on plain buffers, fused products with
//! a per-row finish, norms, residual adds, a buffer pool); the layers themselves (`block.rs`) run their weights
//! through it in their own `forward_inference`, beside their tensor `forward`.

use candle_core::{Device, Tensor};

use super::config::{Config, Loctype, ResidualActivation};
use super::error::Result;
use super::gpt::Gpt;
use super::hook_name::HookName;
use super::hooks::Hooks;
use super::linear::{Linear, Weight};
use super::norm::{Norm, LAYER_NORM_EPS, RMS_EPS};
// The residual and bias adds live in the kernels crate so that they are optimised in every profile.
use circuitscope_kernels::RowTopK;
pub(super) use circuitscope_kernels::{add_assign, add_row};

/// Activations of `rows` = B·T positions, each `width` wide, row-major.
pub(super) struct Acts {
    pub(super) data: Vec<f32>,
    pub(super) width: usize,
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
        let mut ctx = InferCtx {
            cfg,
            hooks,
            b,
            t,
            pool: Pool::default(),
        };
        for (l, block) in self.blocks.iter().enumerate() {
            x = block.forward_inference(&mut ctx, l, x, &pos)?;
        }
        let x = ctx.hook(
            &HookName::FinalResid.to_string(),
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

/// One inference forward's state: the config, the hooks, the batch's shape and the buffers to reuse.
pub(super) struct InferCtx<'a> {
    pub(super) cfg: &'a Config,
    pub(super) hooks: &'a mut Hooks,
    /// Sequences in the batch.
    pub(super) b: usize,
    /// Tokens per sequence.
    pub(super) t: usize,
    pool: Pool,
}

/// Activation buffers handed back after use, so that later layers neither allocate nor zero their outputs
/// (every user overwrites a buffer whole).
#[derive(Default)]
struct Pool(Vec<Vec<f32>>);

impl Pool {
    /// `len` floats with unspecified contents.
    fn take(&mut self, len: usize) -> Vec<f32> {
        match self.0.iter().position(|v| v.len() == len) {
            Some(i) => self.0.swap_remove(i),
            None => vec![0.0; len],
        }
    }

    fn give(&mut self, v: Vec<f32>) {
        // A forward has at most a handful of buffers alive; more would only be kept memory.
        if self.0.len() < 8 {
            self.0.push(v);
        }
    }
}

impl InferCtx<'_> {
    /// `len` floats with unspecified contents, from the pool when it has a buffer of that length.
    pub(super) fn take(&mut self, len: usize) -> Vec<f32> {
        self.pool.take(len)
    }

    /// Hands a buffer that is no longer read back to the pool.
    pub(super) fn recycle(&mut self, v: Vec<f32>) {
        self.pool.give(v);
    }

    /// Passes activations through a hook point; tensors are only built where a hook records or runs a patch or
    /// a custom function.
    pub(super) fn hook(&mut self, name: &str, x: Acts) -> Result<Acts> {
        if !self.hooks.wants(name) {
            return Ok(x);
        }
        let width = x.width;
        let data = self.hooks.apply_plain(name, x.data, self.b, self.t, width)?;
        Ok(Acts { data, width })
    }

    /// Writes every row of `x` with `prepare(row_index, row)`, applies the AbsTopK configured at `loc`, and
    /// passes the result through hook `name`: one parallel pass over the rows.
    fn rows<F>(&mut self, name: Option<String>, loc: Loctype, mut x: Acts, prepare: F) -> Result<Acts>
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        let k = self.cfg.topk_at(loc, x.width);
        circuitscope_kernels::prepare_rows_topk(&mut x.data, x.width, k, prepare);
        match name {
            Some(name) => self.hook(&name, x),
            None => Ok(x),
        }
    }

    /// `lin`'s product x·Wᵀ (without the bias) in a pooled buffer, then `finish(&mut state, row_index, row)`
    /// on every output row, with `state = init()` per run of rows: (B·T, in) → (B·T, out). For a CSR weight
    /// the row pass runs inside the product's tasks, while each block of rows is still in cache.
    pub(super) fn product_then<S, I, F>(&mut self, lin: &Linear, x: &[f32], init: I, finish: F) -> Result<Acts>
    where
        I: Fn() -> S + Sync,
        F: Fn(&mut S, usize, &mut [f32]) + Sync,
    {
        let rows = self.b * self.t;
        let (out_dim, in_dim) = lin.weight.dims();
        let data = match &lin.weight {
            Weight::Csr(w) => {
                let mut y = self.pool.take(rows * out_dim);
                circuitscope_kernels::csr_matmul_xwt_then(x, rows, &w.view(), &mut y, init, finish)?;
                y
            }
            Weight::Dense(w) => {
                let xt = Tensor::from_slice(x, (rows, in_dim), &Device::Cpu)?;
                let mut y: Vec<f32> = xt.matmul(&w.t()?)?.flatten_all()?.to_vec1()?;
                circuitscope_kernels::rows_then(&mut y, out_dim, init, finish);
                y
            }
        };
        Ok(Acts { data, width: out_dim })
    }

    /// `lin`'s product with, on every row, the bias, then `activation`, then the AbsTopK configured at `loc`;
    /// then hook `name`.
    pub(super) fn sublayer_product<A>(
        &mut self,
        name: String,
        loc: Loctype,
        lin: &Linear,
        x: &[f32],
        activation: A,
    ) -> Result<Acts>
    where
        A: Fn(&mut [f32]) + Sync,
    {
        let bias = bias_of(lin)?;
        let k = self.cfg.topk_at(loc, lin.weight.dims().0);
        let out = self.product_then(lin, x, RowTopK::new, |topk, _, row| {
            if let Some(b) = &bias {
                add_assign(row, b);
            }
            activation(row);
            if let Some(k) = k {
                topk.apply(row, k);
            }
        })?;
        self.hook(&name, out)
    }

    /// x + delta, then the optional residual ReLU and AbsTopK, then hook `name`.
    pub(super) fn residual(&mut self, name: Option<String>, loc: Loctype, x: Acts, delta: &[f32]) -> Result<Acts> {
        let relu = self.cfg.residual_activation_type == ResidualActivation::Relu;
        let d = x.width;
        self.rows(name, loc, x, |r, row| {
            add_assign(row, &delta[r * d..(r + 1) * d]);
            if relu {
                row.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        })
    }

    /// A sublayer's input: the normed residual, with the normed positional channels appended in the
    /// cat-pos-emb variant, then AbsTopK at `loc` and hook `name`. (B·T, D) → (B·T, Din).
    pub(super) fn read(
        &mut self,
        name: String,
        loc: Loctype,
        norm: &Norm,
        ln_p: Option<&Norm>,
        x: &[f32],
        pos: &[f32],
    ) -> Result<Acts> {
        let d = self.cfg.d_model;
        let rows = self.b * self.t;
        let t = self.t;
        let weights = NormWeights::of(norm)?;
        let (p, dp) = match (ln_p, self.cfg.d_pos_emb) {
            (Some(ln_p), Some(dp)) => (Some(norm_rows(ln_p, pos, dp)?), dp), // (T, dp)
            _ => (None, 0),
        };
        let width = d + dp;
        let acts = Acts {
            data: self.pool.take(rows * width),
            width,
        };
        self.rows(Some(name), loc, acts, |r, row| {
            let (head, tail) = row.split_at_mut(d);
            weights.apply(&x[r * d..(r + 1) * d], head);
            if let Some(p) = &p {
                tail.copy_from_slice(&p[(r % t) * dp..(r % t + 1) * dp]);
            }
        })
    }
}

/// A linear layer's bias as a plain vector (None without one).
pub(super) fn bias_of(lin: &Linear) -> Result<Option<Vec<f32>>> {
    Ok(match &lin.bias {
        Some(b) => Some(b.to_vec1()?),
        None => None,
    })
}

/// A norm's parameters as plain vectors, applied one row at a time.
enum NormWeights {
    Rms(Vec<f32>),
    Layer { weight: Vec<f32>, bias: Option<Vec<f32>> },
}

impl NormWeights {
    fn of(norm: &Norm) -> Result<Self> {
        Ok(match norm {
            Norm::Rms { weight } => NormWeights::Rms(weight.to_vec1()?),
            Norm::Layer { weight, bias } => NormWeights::Layer {
                weight: weight.to_vec1()?,
                bias: match bias {
                    Some(b) => Some(b.to_vec1()?),
                    None => None,
                },
            },
        })
    }

    /// out ← the norm of one row, as `Norm::forward` computes it.
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        match self {
            NormWeights::Rms(w) => circuitscope_kernels::rms_norm_row(x, w, RMS_EPS as f32, out),
            NormWeights::Layer { weight, bias } => {
                let dim = x.len();
                let mean = x.iter().sum::<f32>() / dim as f32;
                let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
                let inv = 1.0 / (var + LAYER_NORM_EPS as f32).sqrt();
                for (i, (o, v)) in out.iter_mut().zip(x).enumerate() {
                    *o = (v - mean) * inv * weight[i] + bias.as_ref().map_or(0.0, |b| b[i]);
                }
            }
        }
    }
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
    let weights = NormWeights::of(norm)?;
    let mut out = vec![0f32; x.len()];
    for (xr, or) in x.chunks(dim).zip(out.chunks_mut(dim)) {
        weights.apply(xr, or);
    }
    Ok(out)
}
