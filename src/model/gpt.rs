//! The weight-sparse GPT of the reference (spec A.2-A.4), with hooks at every point the reference names: the
//! embeddings, the blocks (`block.rs`: attention, MLP and block layers with their own load and forward) and the
//! unembedding.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::block::{Block, Loader};
use super::checkpoint::Checkpoint;
use super::config::Config;
use super::error::{HookProblem, ModelError, Result};
use super::hook_name::HookName;
use super::hooks::Hooks;
use super::linear::{Linear, Weight};
use super::norm::Norm;
use super::weight_names as wn;

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
    /// Every matrix dense: the simplest and, for dense checkpoints, the fastest choice.
    pub const ALL_DENSE: LoadOptions = LoadOptions {
        sparse_below: 0.0,
        allow_extra: false,
        allow_nonfinite: false,
    };
    /// Every matrix through the CSR kernels, whatever its density (density is always below 2).
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

/// The reference's weight-sparse GPT: embeddings, blocks and unembedding, loaded from a checkpoint.
pub struct Gpt {
    /// The configuration the weights were checked against.
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
    HookName::all(cfg.n_layer)
        .filter_map(|h| Some((h.to_string(), h.width(cfg)?)))
        .collect()
}

impl Gpt {
    /// Loads a model directory (or a checkpoint file with its config beside it).
    pub fn load(path: &Path, opts: LoadOptions) -> Result<(Self, Vec<String>)> {
        let files = ModelFiles::locate(path)?;
        let loaded = files.load_config()?;
        let ckpt = files.open_checkpoint(&loaded.config)?;
        // Built first: a missing or misshapen tensor is the clearer message when a file is also unusual.
        let model = Self::from_checkpoint(loaded.config, &ckpt, opts)?;
        let mut warnings = loaded.warnings;
        warnings.extend(ckpt.audit(&model.config, &opts)?);
        Ok((model, warnings))
    }

    /// Builds the model from a checkpoint, checking that every required tensor is present with the right shape.
    pub fn from_checkpoint(cfg: Config, ck: &Checkpoint, opts: LoadOptions) -> Result<Self> {
        let (v, d) = (cfg.vocab_size, cfg.d_model);
        let loader = Loader { ck, cfg: &cfg, opts };
        let dense = |name: &str, shape: &[usize]| loader.dense(name, shape);
        let blocks = (0..cfg.n_layer)
            .map(|l| Block::load(&loader, l))
            .collect::<Result<Vec<_>>>()?;
        // Tied: the reference copies lm_head.weight last, so it wins over wte when both exist.
        let unembed_name = if cfg.tied_unembed && ck.get(wn::LM_HEAD).is_none() {
            wn::WTE
        } else {
            wn::LM_HEAD
        };
        let lm_head_stored = ck.require(unembed_name, &[v, d])?;
        let wte = if cfg.tied_unembed {
            lm_head_stored.to_dense()?
        } else {
            dense(wn::WTE, &[v, d])?
        };
        let wpe = dense(wn::WPE, &[cfg.block_size, cfg.d_pos_emb.unwrap_or(d)])?;
        let final_logits_bias = match ck.get(wn::FINAL_LOGITS_BIAS) {
            Some(_) => dense(wn::FINAL_LOGITS_BIAS, &[v])?,
            None => Tensor::zeros(v, DType::F32, &Device::Cpu)?,
        };
        let bigram_table = if cfg.enable_bigram_table {
            Some(dense(wn::BIGRAM_TABLE, &[v, v])?)
        } else {
            None
        };
        let ln_f = loader.norm(wn::LN_F, d)?;
        Ok(Gpt {
            ln_f,
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

    /// The names of every hook point of this model, in recording order, with their widths.
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
                problem: HookProblem::EmptyInput,
            });
        }
        // Most forwards carry no interventions: build the hook list only when there is something to check.
        if hooks.intervened_hooks().next().is_some() {
            let points = self.hook_points();
            if let Some(name) = hooks.intervened_hooks().find(|n| !points.iter().any(|(h, _)| h == n)) {
                return Err(ModelError::Hook {
                    name: name.to_string(),
                    problem: HookProblem::NoSuchHook,
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
            x = block.forward(cfg, l, x, &pos, hooks)?;
        }
        let x = hooks.apply(&HookName::FinalResid.to_string(), x)?;
        self.unembed(&x, &flat, b, t)
    }

    /// The residual stream after the last block's hook (B, T, D) → logits (B, T, V); `flat` (B·T) the tokens
    /// (for the bigram table).
    fn unembed(&self, x: &Tensor, flat: &Tensor, b: usize, t: usize) -> Result<Tensor> {
        let mut logits = self.lm_head.forward(&self.ln_f.forward(x)?)?; // (B, T, V)
        logits = logits.broadcast_add(&self.final_logits_bias)?;
        if let Some(table) = &self.bigram_table {
            let rows = table.index_select(flat, 0)?.reshape((b, t, self.config.vocab_size))?;
            logits = (logits + rows)?;
        }
        Ok(logits)
    }

    /// The forward pass from a residual site on, on the tensor (autograd) path: `x` (B, T, D) is the residual
    /// stream at site `site` of the 2L+1 sites (0: entering block 0; 2l+1: after block l's `resid_mid` hook;
    /// 2l+2: after block l, i.e. entering block l+1, or `final_resid` for the last) and replaces it; tokens
    /// (B, T) u32 are needed only for positions and the bigram table. → logits (B, T, V). The same numbers as
    /// [`Gpt::forward`] with that site's hook patched to `x`, without computing the blocks before the site.
    /// Hooks at and after the site apply (so site hooks `0.resid_in`, `l.resid_in` see `x` first).
    pub fn forward_from_site(&self, tokens: &Tensor, site: usize, x: Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, t) = tokens.dims2()?;
        let n = cfg.n_layer;
        if site > 2 * n {
            return Err(ModelError::Hook {
                name: format!("site {site}"),
                problem: HookProblem::NoSuchHook,
            });
        }
        let flat = tokens.flatten_all()?;
        let ids: Vec<u32> = flat.to_vec1()?;
        for row in ids.chunks(t.max(1)) {
            self.check_tokens(row)?;
        }
        let pos = self.wpe.narrow(0, 0, t)?;
        let mut x = x;
        let first = site / 2;
        if site % 2 == 1 {
            x = self.blocks[first].forward_mlp_half(cfg, first, x, &pos, hooks)?;
        }
        let start = if site % 2 == 1 { first + 1 } else { first };
        for (l, block) in self.blocks.iter().enumerate().skip(start) {
            x = block.forward(cfg, l, x, &pos, hooks)?;
        }
        let x = hooks.apply(&HookName::FinalResid.to_string(), x)?;
        self.unembed(&x, &flat, b, t)
    }
}

/// The layout of a model directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// Ours (`config.json` + `model.safetensors`) or the reference's (`beeg_config.json` + `final_model.pt`).
    Native,
    /// A Hugging Face GPT-2 (`config.json` with `model_type: gpt2`, `model.safetensors` or a shard index);
    /// see [`super::hf_gpt2`].
    HfGpt2,
}

/// Where a model's config and weights live.
pub struct ModelFiles {
    /// The config json (`config.json` or the reference's `beeg_config.json`).
    pub config: std::path::PathBuf,
    /// The weights (`model.safetensors`, the importable `final_model.pt`, or a Hugging Face shard index).
    pub weights: std::path::PathBuf,
    /// `tokenizer.json` beside them, when present.
    pub tokenizer: Option<std::path::PathBuf>,
    /// Which layout the files are in.
    pub format: ModelFormat,
}

impl ModelFiles {
    /// A directory with config.json/beeg_config.json and model.safetensors/final_model.pt (or a Hugging Face
    /// GPT-2's model.safetensors/model.safetensors.index.json), a weights file with a config beside it, or a hub
    /// cache entry (`models--gpt2`, whose `refs/main` snapshot is used).
    pub fn locate(path: &Path) -> Result<Self> {
        let path = &super::hf_gpt2::resolve_hub_cache(path)?;
        // Followed explicitly so that a symlink loop or a link to a missing blob is reported as such.
        if let Err(e) = std::fs::metadata(path) {
            let source = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory")
                }
                _ => e,
            };
            return Err(ModelError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        let (dir, weights) = if path.is_dir() {
            (path.to_path_buf(), None)
        } else {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                Some(path.to_path_buf()),
            )
        };
        let first = |names: &[&str]| -> Result<Option<std::path::PathBuf>> {
            for n in names {
                let p = dir.join(n);
                if super::hf_gpt2::exists(&p)? {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        };
        let config = first(&["config.json", "beeg_config.json"])?;
        let format = match &config {
            Some(c) if c.file_name().is_some_and(|n| n == "config.json") => {
                let text = std::fs::read_to_string(c).map_err(super::error::io_err(c))?;
                if super::hf_gpt2::is_hf_config(&text) {
                    ModelFormat::HfGpt2
                } else {
                    ModelFormat::Native
                }
            }
            _ => ModelFormat::Native,
        };
        let weights = match (weights, format) {
            (Some(w), _) => Some(w),
            (None, ModelFormat::Native) => first(&["model.safetensors", "final_model.pt"])?,
            (None, ModelFormat::HfGpt2) => first(&[super::hf_gpt2::WEIGHTS, super::hf_gpt2::SHARD_INDEX])?,
        };
        match (config, weights) {
            (Some(config), Some(weights)) => Ok(ModelFiles {
                config,
                weights,
                tokenizer: first(&["tokenizer.json"])?,
                format,
            }),
            _ => Err(ModelError::NoModel {
                path: path.to_path_buf(),
            }),
        }
    }

    /// The model's config, read in its format's terms.
    pub fn load_config(&self) -> Result<super::config::LoadedConfig> {
        match self.format {
            ModelFormat::Native => Config::load(&self.config),
            ModelFormat::HfGpt2 => super::hf_gpt2::load_config(&self.config),
        }
    }

    /// The model's weights in our tensor names and orientation (a Hugging Face GPT-2's are renamed and its
    /// Conv1D weights transposed; `cfg` checks their shapes as stored).
    pub fn open_checkpoint(&self, cfg: &Config) -> Result<Checkpoint> {
        match self.format {
            ModelFormat::Native => Checkpoint::open(&self.weights),
            ModelFormat::HfGpt2 => super::hf_gpt2::open_checkpoint(&self.weights, cfg),
        }
    }
}

/// Convenience for callers holding a checkpoint map: every 2-D weight a Linear uses.
pub fn is_linear_weight(name: &str) -> bool {
    wn::is_linear_weight(name)
}
