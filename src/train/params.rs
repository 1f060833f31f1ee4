//! The trainable parameters of a GPT: named candle variables with the checkpoint's names, their init, and which of
//! them are weight-sparse (spec A.5 `is_sparse_param`: every matrix and Linear bias, embeddings included; never
//! norms, the bigram table or sink logits).

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::model::sparse_linear::CsrWeight;
use crate::model::weight_names::{self as wn, BlockLinear, BlockNorm};
use crate::model::{Checkpoint, Config, Gpt, LoadOptions, Stored};

/// The trainable parameters of a model, as candle variables.
pub struct Params {
    /// By checkpoint name, in a stable order.
    pub vars: BTreeMap<String, Var>,
}

/// Whether the trainer keeps this tensor weight-sparse.
pub fn is_sparse_param(name: &str) -> bool {
    let matrix = name.ends_with(".weight")
        && (name.contains(".c_attn.")
            || name.contains(".c_proj.")
            || name.contains(".c_fc.")
            || name.contains("wte.")
            || name.contains("wpe.")
            || name == wn::LM_HEAD);
    let bias =
        name.ends_with(".bias") && (name.contains(".c_attn.") || name.contains(".c_proj.") || name.contains(".c_fc."));
    matrix || bias
}

impl Params {
    /// GPT-2-style init: N(0, 0.02) matrices, output projections scaled by 1/sqrt(2·n_layer), zero biases, unit
    /// norms, zero sink logits and bigram table.
    pub fn init(cfg: &Config, seed: u64) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (v, d, din, a, f) = (
            cfg.vocab_size,
            cfg.d_model,
            cfg.d_model_in(),
            cfg.attn_width(),
            cfg.d_mlp,
        );
        let mut vars = BTreeMap::new();
        let mut normal = |name: String, shape: &[usize], std: f64| -> Result<()> {
            let dist = Normal::new(0.0f32, std as f32).expect("valid std");
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|_| dist.sample(&mut rng)).collect();
            vars.insert(name, Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu)?)?);
            Ok(())
        };
        let proj_std = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
        normal(wn::WTE.into(), &[v, d], 0.02)?;
        normal(wn::WPE.into(), &[cfg.block_size, cfg.d_pos_emb.unwrap_or(d)], 0.01)?;
        if !cfg.tied_unembed {
            normal(wn::LM_HEAD.into(), &[v, d], 0.02)?;
        }
        // The draw order (and so every initial weight) follows BlockLinear::ALL.
        let shape = |which: BlockLinear| match which {
            BlockLinear::AttnQkv => [3 * a, din],
            BlockLinear::AttnOut => [d, a],
            BlockLinear::MlpIn => [f, din],
            BlockLinear::MlpOut => [d, f],
        };
        for l in 0..cfg.n_layer {
            for which in BlockLinear::ALL {
                let std = if which.writes_residual() { proj_std } else { 0.02 };
                normal(wn::linear_weight(l, which), &shape(which), std)?;
            }
        }
        let mut constant = |name: String, n: usize, value: f64| -> Result<()> {
            let t = (Tensor::ones(n, DType::F32, &Device::Cpu)? * value)?;
            vars.insert(name, Var::from_tensor(&t)?);
            Ok(())
        };
        for l in 0..cfg.n_layer {
            if cfg.bias {
                for which in BlockLinear::ALL {
                    constant(wn::linear_bias(l, which), shape(which)[0], 0.0)?;
                }
            }
            for ln in [BlockNorm::Ln1, BlockNorm::Ln2] {
                let p = wn::norm(l, ln);
                constant(format!("{p}.weight"), d, 1.0)?;
                if !cfg.rms_norm && cfg.ln_bias {
                    constant(format!("{p}.bias"), d, 0.0)?;
                }
            }
            if let Some(dp) = cfg.d_pos_emb {
                for ln in [BlockNorm::LnP1, BlockNorm::LnP2] {
                    let p = wn::norm(l, ln);
                    constant(format!("{p}.weight"), dp, 1.0)?;
                    if !cfg.rms_norm && cfg.ln_bias {
                        constant(format!("{p}.bias"), dp, 0.0)?;
                    }
                }
            }
            if cfg.sink {
                constant(wn::sink_logit(l), cfg.n_head, 0.0)?;
            }
        }
        constant(format!("{}.weight", wn::LN_F), d, 1.0)?;
        if !cfg.rms_norm && cfg.ln_bias {
            constant(format!("{}.bias", wn::LN_F), d, 0.0)?;
        }
        if cfg.enable_bigram_table {
            vars.insert(
                wn::BIGRAM_TABLE.into(),
                Var::from_tensor(&Tensor::zeros((v, v), DType::F32, &Device::Cpu)?)?,
            );
        }
        Ok(Params { vars })
    }

    /// The checkpoint view of the current values (sharing storage with the variables).
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            path: "<training>".into(),
            tensors: self
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), Stored::Dense(v.as_tensor().clone())))
                .collect(),
        }
    }

    /// A model whose weights are these variables, so that its graph-mode forward is differentiable in them.
    pub fn model(&self, cfg: &Config) -> crate::model::Result<Gpt> {
        Gpt::from_checkpoint(cfg.clone(), &self.checkpoint(), LoadOptions::ALL_DENSE)
    }

    /// Tensors to save as a model: sparse parameters as CSR (they are sparse after every step), the rest dense.
    pub fn to_stored(&self) -> Result<BTreeMap<String, Stored>> {
        let mut out = BTreeMap::new();
        for (name, var) in &self.vars {
            let t = var.as_tensor().detach();
            let stored = if is_sparse_param(name) && t.rank() == 2 {
                Stored::Csr(Arc::new(CsrWeight::from_dense(&t)?))
            } else {
                Stored::Dense(t.copy()?)
            };
            out.insert(name.clone(), stored);
        }
        Ok(out)
    }

    /// Overwrites the variables from a checkpoint (for --resume); every variable must be there with its shape.
    pub fn load(&self, ckpt: &Checkpoint) -> crate::model::Result<()> {
        for (name, var) in &self.vars {
            let t = ckpt.require_dense(name, var.dims())?;
            var.set(&t)?;
        }
        Ok(())
    }

    /// Fraction of nonzero entries over all sparse parameters.
    pub fn sparse_density(&self) -> Result<f64> {
        let (mut nz, mut n) = (0usize, 0usize);
        for (name, var) in &self.vars {
            if is_sparse_param(name) {
                let v: Vec<f32> = var.flatten_all()?.to_vec1()?;
                nz += v.iter().filter(|x| **x != 0.0).count();
                n += v.len();
            }
        }
        Ok(nz as f64 / n.max(1) as f64)
    }
}
