//! The weight-sparse GPT of the reference (spec A.2-A.4), with hooks at every point the reference names.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};

use super::attention_op::CausalAttentionOp;
use super::checkpoint::Checkpoint;
use super::config::{Activation, Config, Loctype, ResidualActivation};
use super::error::{ModelError, Result};
use super::hooks::Hooks;
use super::linear::{Linear, Weight};
use super::norm::Norm;
use super::topk::abs_topk;

/// How to lay out weights at load time.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Matrices with a density below this run through the CSR kernel; the rest through dense matmul.
    /// 0 forces every matrix dense; anything above 1 forces every matrix sparse.
    pub sparse_below: f64,
    /// Tensors the config does not read are warnings instead of an error.
    pub allow_extra: bool,
    /// NaN or infinite weights are warnings instead of an error (for research on broken checkpoints).
    pub allow_nonfinite: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        // Measured crossover of our CSR kernel against gemm on 2 cores lies well above this (see README bench).
        LoadOptions {
            sparse_below: 0.25,
            ..Self::ALL_DENSE
        }
    }
}

impl LoadOptions {
    pub const ALL_DENSE: LoadOptions = LoadOptions {
        sparse_below: 0.0,
        allow_extra: false,
        allow_nonfinite: false,
    };
    pub const ALL_SPARSE: LoadOptions = LoadOptions {
        sparse_below: 2.0,
        ..Self::ALL_DENSE
    };

    /// These options with the checks' opt-outs of `other`.
    pub fn with_checks_of(self, other: LoadOptions) -> LoadOptions {
        LoadOptions {
            allow_extra: other.allow_extra,
            allow_nonfinite: other.allow_nonfinite,
            ..self
        }
    }
}

pub(super) struct Attention {
    pub(super) c_attn: Linear,
    pub(super) c_proj: Linear,
    /// (n_head) learned logit of the per-head sink slot.
    pub(super) sink_logit: Option<Tensor>,
}

pub(super) struct Mlp {
    pub(super) c_fc: Linear,
    pub(super) c_proj: Linear,
}

pub(super) struct Block {
    pub(super) ln_1: Norm,
    pub(super) ln_2: Norm,
    /// Norms of the positional channels in the cat-pos-emb variant.
    pub(super) ln_p: Option<(Norm, Norm)>,
    pub(super) attn: Attention,
    pub(super) mlp: Mlp,
}

pub struct Gpt {
    pub config: Config,
    /// (V, D)
    pub(super) wte: Tensor,
    /// (block_size, D) or (block_size, d_pos_emb)
    pub(super) wpe: Tensor,
    pub(super) blocks: Vec<Block>,
    pub(super) ln_f: Norm,
    pub(super) lm_head: Linear,
    /// (V)
    pub(super) final_logits_bias: Tensor,
    /// (V, V)
    pub(super) bigram_table: Option<Tensor>,
}

/// The names of every hook point, in recording order, with their widths.
pub fn hook_points(cfg: &Config) -> Vec<(String, usize)> {
    let (d, din, a, f) = (cfg.d_model, cfg.d_model_in(), cfg.attn_width(), cfg.d_mlp);
    let mut out = Vec::new();
    for l in 0..cfg.n_layer {
        for (site, w) in [
            ("resid_in", d),
            ("attn.act_in", din),
            ("attn.k", a),
            ("attn.q", a),
            ("attn.v", a),
            ("attn.y", a),
            ("attn.resid_delta", d),
            ("resid_mid", d),
            ("mlp.act_in", din),
            ("mlp.post_act", f),
            ("mlp.resid_delta", d),
        ] {
            out.push((format!("{l}.{site}"), w));
        }
    }
    out.push(("final_resid".to_string(), d));
    out
}

impl Gpt {
    /// Loads a model directory (or a checkpoint file with its config beside it).
    pub fn load(path: &Path, opts: LoadOptions) -> Result<(Self, Vec<String>)> {
        let files = ModelFiles::locate(path)?;
        let loaded = Config::load(&files.config)?;
        let ckpt = Checkpoint::open(&files.weights)?;
        // Built first: a missing or misshapen tensor is the clearer message when a file is also unusual.
        let model = Self::from_checkpoint(loaded.config, &ckpt, opts)?;
        let mut warnings = loaded.warnings;
        warnings.extend(ckpt.audit(&model.config, &opts)?);
        Ok((model, warnings))
    }

    /// Builds the model from a checkpoint, checking that every required tensor is present with the right shape.
    pub fn from_checkpoint(cfg: Config, ck: &Checkpoint, opts: LoadOptions) -> Result<Self> {
        let (v, d, din, a, f) = (
            cfg.vocab_size,
            cfg.d_model,
            cfg.d_model_in(),
            cfg.attn_width(),
            cfg.d_mlp,
        );
        let dense = |name: &str, shape: &[usize]| ck.require_dense(name, shape);
        let matrix = |name: &str, shape: &[usize]| -> Result<Weight> {
            Weight::from_stored(ck.require(name, shape)?, opts.sparse_below)
        };
        let linear = |prefix: &str, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear {
                weight: matrix(&format!("{prefix}.weight"), &[out, inp])?,
                bias: if cfg.bias {
                    Some(dense(&format!("{prefix}.bias"), &[out])?)
                } else {
                    None
                },
            })
        };
        let norm = |prefix: &str, dim: usize| -> Result<Norm> {
            let weight = dense(&format!("{prefix}.weight"), &[dim])?;
            Ok(if cfg.rms_norm {
                Norm::Rms { weight }
            } else {
                Norm::Layer {
                    weight,
                    bias: if cfg.ln_bias {
                        Some(dense(&format!("{prefix}.bias"), &[dim])?)
                    } else {
                        None
                    },
                }
            })
        };
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = format!("transformer.h.{l}");
            blocks.push(Block {
                ln_1: norm(&format!("{p}.ln_1"), d)?,
                ln_2: norm(&format!("{p}.ln_2"), d)?,
                ln_p: match cfg.d_pos_emb {
                    Some(dp) => Some((norm(&format!("{p}.ln_p1"), dp)?, norm(&format!("{p}.ln_p2"), dp)?)),
                    None => None,
                },
                attn: Attention {
                    c_attn: linear(&format!("{p}.attn.c_attn"), 3 * a, din)?,
                    c_proj: linear(&format!("{p}.attn.c_proj"), d, a)?,
                    sink_logit: if cfg.sink {
                        Some(dense(&format!("{p}.attn.attn_imp.sink_logit"), &[cfg.n_head])?)
                    } else {
                        None
                    },
                },
                mlp: Mlp {
                    c_fc: linear(&format!("{p}.mlp.c_fc"), f, din)?,
                    c_proj: linear(&format!("{p}.mlp.c_proj"), d, f)?,
                },
            });
        }
        // Tied: the reference copies lm_head.weight last, so it wins over wte when both exist.
        let unembed_name = if cfg.tied_unembed && ck.get("lm_head.weight").is_none() {
            "transformer.wte.weight"
        } else {
            "lm_head.weight"
        };
        let lm_head_stored = ck.require(unembed_name, &[v, d])?;
        let wte = if cfg.tied_unembed {
            lm_head_stored.to_dense()?
        } else {
            dense("transformer.wte.weight", &[v, d])?
        };
        let wpe = dense("transformer.wpe.weight", &[cfg.block_size, cfg.d_pos_emb.unwrap_or(d)])?;
        let final_logits_bias = match ck.get("final_logits_bias") {
            Some(_) => dense("final_logits_bias", &[v])?,
            None => Tensor::zeros(v, DType::F32, &Device::Cpu)?,
        };
        let bigram_table = if cfg.enable_bigram_table {
            Some(dense("bigram_table", &[v, v])?)
        } else {
            None
        };
        Ok(Gpt {
            ln_f: norm("transformer.ln_f", d)?,
            lm_head: Linear {
                weight: Weight::from_stored(lm_head_stored, opts.sparse_below)?,
                bias: None,
            },
            config: cfg,
            wte,
            wpe,
            blocks,
            final_logits_bias,
            bigram_table,
        })
    }

    pub fn hook_points(&self) -> Vec<(String, usize)> {
        hook_points(&self.config)
    }

    /// Number of weight matrices running through the CSR kernel, and in total.
    pub fn sparse_matrix_count(&self) -> (usize, usize) {
        let mut all = vec![&self.lm_head.weight];
        for b in &self.blocks {
            all.extend([
                &b.attn.c_attn.weight,
                &b.attn.c_proj.weight,
                &b.mlp.c_fc.weight,
                &b.mlp.c_proj.weight,
            ]);
        }
        (all.iter().filter(|w| w.is_sparse()).count(), all.len())
    }

    /// Checks a token sequence against the context and the vocabulary.
    pub fn check_tokens(&self, ids: &[u32]) -> Result<()> {
        if ids.len() > self.config.block_size {
            return Err(ModelError::TooLong {
                len: ids.len(),
                block_size: self.config.block_size,
            });
        }
        if let Some((pos, &id)) = ids
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= self.config.vocab_size)
        {
            return Err(ModelError::TokenOutOfRange {
                id,
                pos,
                vocab: self.config.vocab_size,
            });
        }
        Ok(())
    }

    /// One sequence: ids (T) → logits (T, V).
    pub fn forward_ids(&self, ids: &[u32], hooks: &mut Hooks) -> Result<Tensor> {
        self.check_tokens(ids)?;
        let tokens = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
        Ok(self.forward(&tokens, hooks)?.squeeze(0)?)
    }

    /// tokens (B, T) u32 → logits (B, T, V). Hooks record and intervene at every hook point.
    pub fn forward(&self, tokens: &Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, t) = tokens.dims2()?;
        if t == 0 {
            return Err(ModelError::Hook {
                name: "input".into(),
                msg: "empty token sequence".into(),
            });
        }
        // Most forwards carry no interventions: build the hook list only when there is something to check.
        if hooks.intervened_hooks().next().is_some() {
            let points = self.hook_points();
            if let Some(name) = hooks.intervened_hooks().find(|n| !points.iter().any(|(h, _)| h == n)) {
                return Err(ModelError::Hook {
                    name: name.to_string(),
                    msg: "no such hook point in this model".into(),
                });
            }
        }
        let ids: Vec<u32> = tokens.flatten_all()?.to_vec1()?;
        for row in ids.chunks(t) {
            self.check_tokens(row)?;
        }
        if !hooks.needs_graph() && tokens.device().is_cpu() {
            return self.forward_inference(&ids, b, t, hooks);
        }
        let flat = tokens.flatten_all()?;
        let pos = self.wpe.narrow(0, 0, t)?; // (T, D) or (T, d_pos_emb)
        let mut x = self.wte.index_select(&flat, 0)?.reshape((b, t, cfg.d_model))?; // (B, T, D)
        if cfg.d_pos_emb.is_none() {
            x = x.broadcast_add(&pos)?;
        }
        for (l, block) in self.blocks.iter().enumerate() {
            x = self.block_forward(l, block, x, &pos, hooks)?;
        }
        let x = hooks.apply("final_resid", x)?;
        let mut logits = self.lm_head.forward(&self.ln_f.forward(&x)?)?; // (B, T, V)
        logits = logits.broadcast_add(&self.final_logits_bias)?;
        if let Some(table) = &self.bigram_table {
            let rows = table.index_select(&flat, 0)?.reshape((b, t, cfg.vocab_size))?;
            logits = (logits + rows)?;
        }
        Ok(logits)
    }

    fn topk(&self, loc: Loctype, x: Tensor) -> Result<Tensor> {
        let dim = *x.dims().last().expect("rank >= 1");
        Ok(match self.config.topk_at(loc, dim) {
            Some(k) => abs_topk(&x, k)?,
            None => x,
        })
    }

    fn residual(&self, loc: Loctype, x: Tensor) -> Result<Tensor> {
        let x = match self.config.residual_activation_type {
            ResidualActivation::Relu => x.relu()?,
            ResidualActivation::Identity => x,
        };
        self.topk(loc, x)
    }

    /// x: (B, T, D) → (B, T, D). `pos`: (T, D or d_pos_emb).
    fn block_forward(&self, l: usize, block: &Block, x: Tensor, pos: &Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        let cfg = &self.config;
        let a = cfg.attn_width();
        let x = hooks.apply(&format!("{l}.resid_in"), x)?;

        // Attention sublayer.
        let read = self.with_pos(block.ln_1.forward(&x)?, block.ln_p.as_ref().map(|p| &p.0), pos)?;
        let read = hooks.apply(&format!("{l}.attn.act_in"), self.topk(Loctype::AttnIn, read)?)?; // (B, T, Din)
        let qkv = block.attn.c_attn.forward(&read)?; // (B, T, 3A)
        let k = self.topk(Loctype::AttnK, qkv.narrow(2, a, a)?.contiguous()?)?;
        let k = hooks.apply(&format!("{l}.attn.k"), k)?;
        let q = self.topk(Loctype::AttnQ, qkv.narrow(2, 0, a)?.contiguous()?)?;
        let q = hooks.apply(&format!("{l}.attn.q"), q)?;
        let v = self.topk(Loctype::AttnV, qkv.narrow(2, 2 * a, a)?.contiguous()?)?;
        let v = hooks.apply(&format!("{l}.attn.v"), v)?;
        let y = if hooks.differentiable || q.track_op() || k.track_op() || v.track_op() {
            self.attention_graph(block, &q, &k, &v)?
        } else {
            self.attention_fused(block, &q, &k, &v)?
        };
        let y = hooks.apply(&format!("{l}.attn.y"), y)?;
        let o = self.topk(Loctype::AttnOut, block.attn.c_proj.forward(&y)?)?;
        let o = hooks.apply(&format!("{l}.attn.resid_delta"), o)?; // (B, T, D)
        let x = self.residual(Loctype::ResidPostAttn, (x + o)?)?;
        let x = hooks.apply(&format!("{l}.resid_mid"), x)?;

        // MLP sublayer.
        let read = self.with_pos(block.ln_2.forward(&x)?, block.ln_p.as_ref().map(|p| &p.1), pos)?;
        let read = hooks.apply(&format!("{l}.mlp.act_in"), self.topk(Loctype::MlpIn, read)?)?;
        let h = block.mlp.c_fc.forward(&read)?; // (B, T, F)
        let h = match cfg.activation_type {
            Activation::Gelu if !h.track_op() => {
                let mut v: Vec<f32> = h.flatten_all()?.to_vec1()?;
                circuitscope_kernels::gelu_erf_inplace(&mut v);
                Tensor::from_vec(v, h.shape(), h.device())?
            }
            Activation::Gelu => h.gelu_erf()?,
            Activation::Relu => h.relu()?,
        };
        let h = hooks.apply(&format!("{l}.mlp.post_act"), self.topk(Loctype::MlpNeuron, h)?)?;
        let o = self.topk(Loctype::MlpOut, block.mlp.c_proj.forward(&h)?)?;
        let o = hooks.apply(&format!("{l}.mlp.resid_delta"), o)?;
        self.residual(Loctype::ResidPostMlp, (x + o)?)
    }

    /// Attention as a differentiable custom op (fused kernel forward and backward). q, k, v: (B, T, A) → (B, T, A).
    fn attention_graph(&self, block: &Block, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let qkv = Tensor::cat(&[q, k, v], D::Minus1)?.contiguous()?; // (B, T, 3A)
        let op = CausalAttentionOp {
            n_head: self.config.n_head,
            d_head: self.config.d_head,
            scale: 1.0 / (self.config.d_head as f32).sqrt(),
            has_sink: block.attn.sink_logit.is_some(),
        };
        let sink = match &block.attn.sink_logit {
            Some(s) => s.clone(),
            None => Tensor::zeros(self.config.n_head, DType::F32, q.device())?,
        };
        Ok(qkv.apply_op2(&sink, op)?)
    }

    /// Attention through the fused CPU kernel (no gradients). q, k, v: (B, T, A) → y: (B, T, A).
    fn attention_fused(&self, block: &Block, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (b, t, a) = q.dims3()?;
        let shape = circuitscope_kernels::AttentionShape {
            t,
            n_head: self.config.n_head,
            d_head: self.config.d_head,
        };
        let sink: Option<Vec<f32>> = match &block.attn.sink_logit {
            Some(s) => Some(s.to_vec1()?),
            None => None,
        };
        let (qv, kv, vv): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            q.flatten_all()?.to_vec1()?,
            k.flatten_all()?.to_vec1()?,
            v.flatten_all()?.to_vec1()?,
        );
        let mut y = vec![0f32; b * t * a];
        let scale = 1.0 / (self.config.d_head as f32).sqrt();
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

    /// In the cat-pos-emb variant, appends the normalised positional channels to a sublayer's input.
    /// read: (B, T, D) → (B, T, Din).
    fn with_pos(&self, read: Tensor, ln_p: Option<&Norm>, pos: &Tensor) -> Result<Tensor> {
        Ok(match ln_p {
            Some(norm) => {
                let (b, t, _) = read.dims3()?;
                let p = norm.forward(pos)?.unsqueeze(0)?.broadcast_as((b, t, pos.dims()[1]))?;
                Tensor::cat(&[&read, &p], D::Minus1)?
            }
            None => read,
        })
    }
}

/// Where a model's config and weights live.
pub struct ModelFiles {
    pub config: std::path::PathBuf,
    pub weights: std::path::PathBuf,
    pub tokenizer: Option<std::path::PathBuf>,
}

impl ModelFiles {
    /// A directory with config.json/beeg_config.json and model.safetensors/final_model.pt, or a weights file
    /// with a config beside it.
    pub fn locate(path: &Path) -> Result<Self> {
        let (dir, weights) = if path.is_dir() {
            let w = ["model.safetensors", "final_model.pt"]
                .iter()
                .map(|n| path.join(n))
                .find(|p| p.exists());
            (path.to_path_buf(), w)
        } else if path.is_file() {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                Some(path.to_path_buf()),
            )
        } else {
            return Err(ModelError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            });
        };
        let config = ["config.json", "beeg_config.json"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.exists());
        match (config, weights) {
            (Some(config), Some(weights)) => Ok(ModelFiles {
                config,
                weights,
                tokenizer: Some(dir.join("tokenizer.json")).filter(|p| p.exists()),
            }),
            _ => Err(ModelError::NoModel {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Convenience for callers holding a checkpoint map: every 2-D weight a Linear uses.
pub fn is_linear_weight(name: &str) -> bool {
    name.ends_with("c_attn.weight")
        || name.ends_with("c_proj.weight")
        || name.ends_with("c_fc.weight")
        || name == "lm_head.weight"
}
