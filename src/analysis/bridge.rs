//! Bridges between a weight-sparse model and a dense one (the weight-sparse paper's last section): at each of the
//! 2L+1 residual sites (after the embedding, after each attention block, after each MLP block) an encoder
//! (Linear, then AbsTopK keeping the sparse model's activation fraction) maps the dense model's residual stream to
//! the sparse model's, and a decoder (Linear) maps it back. Trained together with the sparse model
//! ([`crate::train`] with a [`BridgeSpec`]), they make the sparse model a readable stand-in for the dense one: an
//! edit of a sparse node, mapped through the decoder, edits the dense model ([`steer`]).
//!
//! This module holds the bridges themselves (their files, encode and decode), the training losses
//! ([`bridge_losses`]), the path table of `bridge eval` ([`path_table`]) and steering through a bridge.
//!
//! Both models read and replace a site's residual stream through their ordinary hooks: site 0 is `0.resid_in`,
//! site 2l+1 is `l.resid_mid`, site 2l+2 is `(l+1).resid_in`, and the last site is `final_resid`. A pass that
//! "starts in one model and finishes in the other" is the second model's forward with its site hook patched by
//! the bridged activation; the patch replaces the whole stream there, so nothing before the site reaches the
//! output (or its gradient).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var, D};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::model::checkpoint::{write_atomic, write_safetensors};
use crate::model::topk::abs_topk;
use crate::model::{Action, Checkpoint, Config, Gpt, HookName, HookSite, Hooks, Intervention, Stored};

/// The bridges' weights in a bridged model's directory.
pub const BRIDGES_FILE: &str = "bridges.safetensors";
/// The bridged model's description (dense model, coefficients, shapes) in its directory.
pub const BRIDGE_JSON: &str = "bridge.json";
/// The version of `bridge.json` this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Why a bridge operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Loading or running a model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A bridge file could not be read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// `bridge.json` is not the json the trainer writes.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
    /// `bridge.json` comes from a newer build.
    #[error("{}: format version {found} is newer than this build reads ({FORMAT_VERSION}); update circuitscope", path.display())]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The folder holds no bridged model.
    #[error("{}: no {BRIDGE_JSON} here; a bridged model is trained with `circuitscope train --bridge-to DENSE_DIR`", dir.display())]
    NotBridged {
        /// The folder.
        dir: PathBuf,
    },
    /// The two models cannot be bridged (vocabulary, context, or widths that do not match the bridges).
    #[error("{0}")]
    Mismatch(String),
    /// The dense model is not the one the bridges were trained against.
    #[error("the dense model at {} has fingerprint {found}, but the bridges were trained against {expected}", path.display())]
    Fingerprint {
        /// The dense model's folder.
        path: PathBuf,
        /// Its fingerprint.
        found: String,
        /// The fingerprint in `bridge.json`.
        expected: String,
    },
}

type Result<T> = std::result::Result<T, BridgeError>;

/// The weight of each loss term of bridged training (every one 1 by default, as in the public reimplementation
/// whose recipe the trainer follows). A term with weight 0 is not computed at all.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct BridgeCoefficients {
    /// The sparse model's own next-token cross-entropy.
    pub ce: f64,
    /// KL(dense ‖ sparse) of the next-token distributions.
    pub kl: f64,
    /// NMSE(encoder(dense activation), sparse activation), mean over sites; the target is detached.
    pub nmse_encode: f64,
    /// NMSE(decoder(sparse activation), dense activation), mean over sites; the target is detached.
    pub nmse_decode: f64,
    /// KL(dense ‖ dense up to a site, encoder, sparse onward), mean over sites.
    pub kl_dense_to_sparse: f64,
    /// KL(dense ‖ sparse up to a site, decoder, dense onward), mean over sites.
    pub kl_sparse_to_dense: f64,
}

impl Default for BridgeCoefficients {
    fn default() -> Self {
        BridgeCoefficients {
            ce: 1.0,
            kl: 1.0,
            nmse_encode: 1.0,
            nmse_decode: 1.0,
            kl_dense_to_sparse: 1.0,
            kl_sparse_to_dense: 1.0,
        }
    }
}

impl BridgeCoefficients {
    /// Whether any term needs the dense model at all.
    pub fn uses_dense(&self) -> bool {
        self.kl != 0.0
            || self.nmse_encode != 0.0
            || self.nmse_decode != 0.0
            || self.kl_dense_to_sparse != 0.0
            || self.kl_sparse_to_dense != 0.0
    }
}

/// What a bridged training run is coupled to: part of the run's `train_config.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BridgeSpec {
    /// The dense model's folder, as given.
    pub dense: PathBuf,
    /// The dense model's fingerprint when the run started (checked again on resume and when the model is opened).
    pub dense_fingerprint: String,
    /// The loss weights.
    pub coefficients: BridgeCoefficients,
    /// Sites whose mixed paths are trained each step, drawn anew every step from (seed, step); None: every site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed_sites_per_step: Option<usize>,
}

/// `bridge.json`: what a bridged model's directory says about its bridges.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BridgeInfo {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The dense model's folder, as given to the trainer.
    pub dense_model: PathBuf,
    /// The dense model's fingerprint (as circuit files and scans record it).
    pub dense_fingerprint: String,
    /// The loss weights the bridges were trained with.
    pub coefficients: BridgeCoefficients,
    /// The number of sites, 2L+1.
    pub sites: usize,
    /// The site hooks, in order (the same names in both models).
    pub site_hooks: Vec<String>,
    /// The dense model's residual width.
    pub dense_d_model: usize,
    /// The sparse model's residual width.
    pub sparse_d_model: usize,
    /// How many entries the encoder's AbsTopK keeps (None: all).
    pub encoder_topk: Option<usize>,
}

/// The number of bridge sites of a model of `n_layer` blocks: after the embedding and after each sublayer.
pub fn site_count(n_layer: usize) -> usize {
    2 * n_layer + 1
}

/// The hook whose residual stream is site `site`: `0.resid_in`, `l.resid_mid`, `(l+1).resid_in`, `final_resid`.
pub fn site_hook(site: usize, n_layer: usize) -> HookName {
    if site >= 2 * n_layer {
        HookName::FinalResid
    } else if site.is_multiple_of(2) {
        HookName::block(site / 2, HookSite::ResidIn)
    } else {
        HookName::block(site / 2, HookSite::ResidMid)
    }
}

/// A site's short name for tables: `embed`, `0.attn`, `0.mlp`, ...
pub fn site_label(site: usize) -> String {
    match site {
        0 => "embed".into(),
        s if s % 2 == 1 => format!("{}.attn", s / 2),
        s => format!("{}.mlp", s / 2 - 1),
    }
}

/// The first site downstream of `hook`: where a change at the hook first shows in the residual stream.
pub fn site_after(hook: HookName, n_layer: usize) -> usize {
    match hook {
        HookName::FinalResid => 2 * n_layer,
        HookName::Block { layer, site } => match site {
            HookSite::ResidIn => 2 * layer,
            HookSite::AttnActIn
            | HookSite::AttnK
            | HookSite::AttnQ
            | HookSite::AttnV
            | HookSite::AttnPattern
            | HookSite::AttnY
            | HookSite::AttnResidDelta
            | HookSite::ResidMid => 2 * layer + 1,
            HookSite::MlpActIn | HookSite::MlpPostAct | HookSite::MlpResidDelta => 2 * layer + 2,
        },
    }
}

/// The recording pattern of every site hook.
fn sites_pattern(n_layer: usize) -> String {
    (0..site_count(n_layer))
        .map(|s| regex::escape(&site_hook(s, n_layer).to_string()) + "$")
        .collect::<Vec<_>>()
        .join("|")
}

/// How many entries the encoder keeps: the sparse model's activation fraction of its width (all when the
/// sparse model has no activation sparsity).
pub fn encoder_topk(sparse: &Config) -> Option<usize> {
    sparse
        .afrac
        .map(|f| ((f * sparse.d_model as f64).floor() as usize).clamp(1, sparse.d_model))
}

/// The bridges: per site an encoder (d_sparse, d_dense) + bias and a decoder (d_dense, d_sparse) + bias, stored as
/// `encoder.<site>.weight`, `encoder.<site>.bias`, `decoder.<site>.weight`, `decoder.<site>.bias`.
#[derive(Clone)]
pub struct Bridges {
    tensors: BTreeMap<String, Tensor>,
    /// The number of sites, 2L+1.
    pub sites: usize,
    /// The dense model's residual width.
    pub dense_width: usize,
    /// The sparse model's residual width.
    pub sparse_width: usize,
    /// The encoder's AbsTopK k (None: keep all).
    pub topk: Option<usize>,
}

/// The names and shapes of every bridge tensor.
pub fn tensor_shapes(sites: usize, dense: usize, sparse: usize) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for s in 0..sites {
        out.push((format!("encoder.{s}.weight"), vec![sparse, dense]));
        out.push((format!("encoder.{s}.bias"), vec![sparse]));
        out.push((format!("decoder.{s}.weight"), vec![dense, sparse]));
        out.push((format!("decoder.{s}.bias"), vec![dense]));
    }
    out
}

impl Bridges {
    /// Fresh trainable bridges: weights N(0, 1/fan_in) (unit gain, as a residual stream's scale should carry
    /// over), zero biases, drawn from their own generator so that the sparse model's init is the plain trainer's.
    pub fn init_vars(sites: usize, dense: usize, sparse: usize, seed: u64) -> Result<BTreeMap<String, Var>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xB81D_6E5B_0000_0017);
        let mut out = BTreeMap::new();
        for (name, shape) in tensor_shapes(sites, dense, sparse) {
            let t = if shape.len() == 2 {
                let std = 1.0 / (shape[1] as f32).sqrt();
                let dist = Normal::new(0.0f32, std).expect("valid std");
                let data: Vec<f32> = (0..shape[0] * shape[1]).map(|_| dist.sample(&mut rng)).collect();
                Tensor::from_vec(data, shape.as_slice(), &Device::Cpu)?
            } else {
                Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?
            };
            out.insert(name, Var::from_tensor(&t)?);
        }
        Ok(out)
    }

    /// Bridges over these tensors (variables' tensors keep their gradients), every shape checked.
    pub fn from_tensors(
        tensors: BTreeMap<String, Tensor>,
        sites: usize,
        dense: usize,
        sparse: usize,
        topk: Option<usize>,
    ) -> Result<Self> {
        for (name, shape) in tensor_shapes(sites, dense, sparse) {
            match tensors.get(&name) {
                Some(t) if t.dims() == shape.as_slice() => {}
                Some(t) => {
                    return Err(BridgeError::Mismatch(format!(
                        "bridge tensor {name} is {:?}, expected {shape:?}",
                        t.dims()
                    )))
                }
                None => return Err(BridgeError::Mismatch(format!("bridge tensor {name} is missing"))),
            }
        }
        Ok(Bridges {
            tensors,
            sites,
            dense_width: dense,
            sparse_width: sparse,
            topk,
        })
    }

    /// The named tensors (for saving).
    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }

    fn linear(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        let w = &self.tensors[&format!("{prefix}.weight")]; // (out, in)
        let b = &self.tensors[&format!("{prefix}.bias")]; // (out)
        let dims = x.dims().to_vec();
        let inp = *dims.last().expect("rank >= 1");
        let rows = x.elem_count() / inp.max(1);
        let y = x.reshape((rows, inp))?.matmul(&w.t()?)?.broadcast_add(b)?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank >= 1") = w.dims()[0];
        Ok(y.reshape(out_dims)?)
    }

    /// Site `site`'s encoder: dense residual (..., d_dense) → sparse residual (..., d_sparse), AbsTopK'd.
    pub fn encode(&self, site: usize, x: &Tensor) -> Result<Tensor> {
        let y = self.linear(x, &format!("encoder.{site}"))?;
        Ok(match self.topk {
            Some(k) => abs_topk(&y, k)?,
            None => y,
        })
    }

    /// Site `site`'s decoder: sparse residual (..., d_sparse) → dense residual (..., d_dense).
    pub fn decode(&self, site: usize, x: &Tensor) -> Result<Tensor> {
        self.linear(x, &format!("decoder.{site}"))
    }

    /// The decoder's linear part only (no bias): how a change of the sparse residual maps to one of the dense.
    /// delta (..., d_sparse) → (..., d_dense).
    pub fn decode_delta(&self, site: usize, delta: &Tensor) -> Result<Tensor> {
        let w = &self.tensors[&format!("decoder.{site}.weight")]; // (d_dense, d_sparse)
        let dims = delta.dims().to_vec();
        let inp = *dims.last().expect("rank >= 1");
        let y = delta.reshape((delta.elem_count() / inp.max(1), inp))?.matmul(&w.t()?)?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank >= 1") = w.dims()[0];
        Ok(y.reshape(out_dims)?)
    }

    /// Writes the bridges as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let map: BTreeMap<String, Stored> = self
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), Stored::Dense(t.detach())))
            .collect();
        write_safetensors(path, &map, &[("content".into(), "circuitscope bridges".into())])?;
        Ok(())
    }
}

impl BridgeInfo {
    /// The description of bridges between `sparse` and `dense` trained with `spec`.
    pub fn new(spec: &BridgeSpec, sparse: &Config, dense: &Config) -> Self {
        let n = site_count(sparse.n_layer);
        BridgeInfo {
            format_version: FORMAT_VERSION,
            dense_model: spec.dense.clone(),
            dense_fingerprint: spec.dense_fingerprint.clone(),
            coefficients: spec.coefficients,
            sites: n,
            site_hooks: (0..n).map(|s| site_hook(s, sparse.n_layer).to_string()).collect(),
            dense_d_model: dense.d_model,
            sparse_d_model: sparse.d_model,
            encoder_topk: encoder_topk(sparse),
        }
    }

    /// Writes `bridge.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(BRIDGE_JSON),
            serde_json::to_string_pretty(self).expect("serialisable").as_bytes(),
        )?;
        Ok(())
    }

    /// Reads `dir/bridge.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(BRIDGE_JSON);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BridgeError::NotBridged { dir: dir.to_path_buf() })
            }
            Err(source) => return Err(BridgeError::File { path, source }),
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|source| BridgeError::Json {
            path: path.clone(),
            source,
        })?;
        if let Some(v) = value.get("format_version").and_then(|v| v.as_u64()) {
            if v > FORMAT_VERSION as u64 {
                return Err(BridgeError::NewerFormat { path, found: v as u32 });
            }
        }
        serde_json::from_value(value).map_err(|source| BridgeError::Json { path, source })
    }
}

/// The two models can be bridged: same vocabulary, same number of layers, a context the dense model covers.
pub fn check_pair(sparse: &Config, dense: &Config) -> Result<()> {
    if sparse.vocab_size != dense.vocab_size {
        return Err(BridgeError::Mismatch(format!(
            "the sparse model's vocabulary ({}) differs from the dense model's ({}); bridged models share a tokenizer",
            sparse.vocab_size, dense.vocab_size
        )));
    }
    if sparse.n_layer != dense.n_layer {
        return Err(BridgeError::Mismatch(format!(
            "the sparse model has {} layers and the dense model {}; bridges pair the residual sites layer by layer",
            sparse.n_layer, dense.n_layer
        )));
    }
    if sparse.block_size > dense.block_size {
        return Err(BridgeError::Mismatch(format!(
            "the sparse model's context ({}) is longer than the dense model's ({})",
            sparse.block_size, dense.block_size
        )));
    }
    Ok(())
}

/// A bridged model opened for analysis: the sparse model, the dense one and the bridges.
pub struct BridgedPair {
    /// The weight-sparse model (the folder's own model).
    pub sparse: Gpt,
    /// The dense model the bridges map to.
    pub dense: Gpt,
    /// The bridges.
    pub bridges: Bridges,
    /// `bridge.json`.
    pub info: BridgeInfo,
    /// Where the dense model was loaded from.
    pub dense_dir: PathBuf,
}

/// Where the dense model named in `bridge.json` is: the path as given (relative to the working directory, as the
/// trainer was given it), else relative to the bridged model's folder.
fn resolve_dense(dir: &Path, named: &Path) -> PathBuf {
    if named.is_relative() && !named.exists() && dir.join(named).exists() {
        dir.join(named)
    } else {
        named.to_path_buf()
    }
}

/// A bridged model's other half: the dense model, the bridges and their description, for a caller that holds the
/// sparse model itself (the workbench's engine).
pub struct BridgeParts {
    /// The dense model the bridges map to.
    pub dense: Gpt,
    /// The bridges.
    pub bridges: Bridges,
    /// `bridge.json`.
    pub info: BridgeInfo,
    /// Where the dense model was loaded from.
    pub dense_dir: PathBuf,
}

/// Opens the bridges in `dir` for the already loaded sparse model, and the dense model they name (or
/// `dense_override`), checking the dense model's fingerprint and every shape.
pub fn open_pair(
    dir: &Path,
    sparse: Gpt,
    dense_override: Option<&Path>,
    opts: crate::model::LoadOptions,
) -> Result<BridgedPair> {
    let parts = open_bridges(dir, &sparse.config, dense_override, opts)?;
    Ok(BridgedPair {
        sparse,
        dense: parts.dense,
        bridges: parts.bridges,
        info: parts.info,
        dense_dir: parts.dense_dir,
    })
}

/// [`open_pair`] without the sparse model: the bridges in `dir` for a sparse model of config `sparse`.
pub fn open_bridges(
    dir: &Path,
    sparse: &Config,
    dense_override: Option<&Path>,
    opts: crate::model::LoadOptions,
) -> Result<BridgeParts> {
    let info = BridgeInfo::load(dir)?;
    let dense_dir = match dense_override {
        Some(d) => d.to_path_buf(),
        None => resolve_dense(dir, &info.dense_model),
    };
    let (dense, _warnings) = Gpt::load(&dense_dir, opts)?;
    let files = crate::model::ModelFiles::locate(&dense_dir)?;
    let fp = crate::circuit::file::model_fingerprint(&files.open_checkpoint(&dense.config)?, &dense.config)
        .map_err(|e| BridgeError::Mismatch(format!("{}: {e}", dense_dir.display())))?;
    if fp != info.dense_fingerprint {
        return Err(BridgeError::Fingerprint {
            path: dense_dir,
            found: fp,
            expected: info.dense_fingerprint,
        });
    }
    check_pair(sparse, &dense.config)?;
    if info.sites != site_count(sparse.n_layer) || info.sites != site_count(dense.config.n_layer) {
        return Err(BridgeError::Mismatch(format!(
            "{}: {} bridge sites, but the sparse model has {} layers and the dense one {}",
            dir.join(BRIDGE_JSON).display(),
            info.sites,
            sparse.n_layer,
            dense.config.n_layer
        )));
    }
    let path = dir.join(BRIDGES_FILE);
    if !path.exists() {
        return Err(BridgeError::File {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let ckpt = Checkpoint::open(&path)?;
    let mut tensors = BTreeMap::new();
    for (name, shape) in tensor_shapes(info.sites, dense.config.d_model, sparse.d_model) {
        tensors.insert(name.clone(), ckpt.require_dense(&name, &shape)?);
    }
    let bridges = Bridges::from_tensors(
        tensors,
        info.sites,
        dense.config.d_model,
        sparse.d_model,
        info.encoder_topk,
    )?;
    Ok(BridgeParts {
        dense,
        bridges,
        info,
        dense_dir,
    })
}

/// Mean over rows of KL(p ‖ q) where p and q are the softmaxes of `p_logits` and `q_logits` (..., V), in nats.
pub fn kl_logits(p_logits: &Tensor, q_logits: &Tensor) -> Result<Tensor> {
    let lp = candle_nn::ops::log_softmax(p_logits, D::Minus1)?;
    let lq = candle_nn::ops::log_softmax(q_logits, D::Minus1)?;
    let per_row = (lp.exp()? * (lp - lq)?)?.sum(D::Minus1)?;
    Ok(per_row.mean_all()?)
}

/// Normalised mean squared error: Σ(pred − target)² / Σ target² over every entry.
pub fn nmse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    let err = (pred - target)?.sqr()?.sum_all()?;
    let norm = target.sqr()?.sum_all()?;
    // A zero target (possible only in constructed models) would divide by zero: count its error unnormalised.
    let norm = norm.maximum(1e-12)?;
    Ok((err / norm)?)
}

/// The terms of one bridged training step, each a scalar; those with weight 0 are None (not computed).
pub struct LossTerms {
    /// The sparse model's cross-entropy (always computed, for the log).
    pub ce: Tensor,
    /// KL(dense ‖ sparse).
    pub kl: Option<Tensor>,
    /// Mean over sites of NMSE(encoder(dense), sparse).
    pub nmse_encode: Option<Tensor>,
    /// Mean over sites of NMSE(decoder(sparse), dense).
    pub nmse_decode: Option<Tensor>,
    /// Mean over sites of KL(dense ‖ dense→encoder→sparse).
    pub kl_dense_to_sparse: Option<Tensor>,
    /// Mean over sites of KL(dense ‖ sparse→decoder→dense).
    pub kl_sparse_to_dense: Option<Tensor>,
    /// Σ weight × term.
    pub total: Tensor,
}

impl LossTerms {
    /// Each computed term's value, by its coefficient's name, for the log.
    pub fn values(&self) -> Result<Vec<(&'static str, f64)>> {
        let mut out = vec![("ce", scalar(&self.ce)?)];
        for (name, t) in [
            ("kl", &self.kl),
            ("nmse_encode", &self.nmse_encode),
            ("nmse_decode", &self.nmse_decode),
            ("kl_dense_to_sparse", &self.kl_dense_to_sparse),
            ("kl_sparse_to_dense", &self.kl_sparse_to_dense),
        ] {
            if let Some(t) = t {
                out.push((name, scalar(t)?));
            }
        }
        Ok(out)
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// One forward with site `site` replaced by `x` (B, T, W): the model runs on from there. → logits (B, T, V).
fn forward_from(model: &Gpt, tokens: &Tensor, site: usize, x: Tensor, differentiable: bool) -> Result<Tensor> {
    let mut hooks = Hooks::none();
    if differentiable {
        // Training: the tensor path from the site on, skipping the blocks before it.
        hooks.differentiable = true;
        return Ok(model.forward_from_site(tokens, site, x, &mut hooks)?);
    }
    // Evaluation: the fused inference path with the site patched is faster than the tensor path from the site,
    // even though it recomputes the blocks before it.
    hooks.intervene(
        &site_hook(site, model.config.n_layer).to_string(),
        Intervention::new(Action::Patch(x)),
    );
    Ok(model.forward(tokens, &mut hooks)?)
}

/// The site activations (site order) recorded by `hooks` after a forward.
fn site_acts(hooks: &Hooks, n_layer: usize) -> Result<Vec<Tensor>> {
    (0..site_count(n_layer))
        .map(|s| {
            let name = site_hook(s, n_layer).to_string();
            hooks
                .recorded
                .get(&name)
                .cloned()
                .ok_or_else(|| BridgeError::Mismatch(format!("site hook {name} was not recorded")))
        })
        .collect()
}

/// The bridged training loss on one batch: tokens (B, T) u32, targets (B, T) u32. The sparse model and the
/// bridges carry gradients (their weights are variables); the dense model is frozen. Terms with weight 0 are
/// skipped, so with only `ce` this is the plain trainer's loss on the same graph. The two mixed-path terms are
/// averaged over `mixed_sites` (None: every site); each site costs a forward and backward of the rest of a
/// model, so a trainer may sample a few sites per step.
pub fn bridge_losses(
    sparse: &Gpt,
    dense: &Gpt,
    bridges: &Bridges,
    tokens: &Tensor,
    targets: &Tensor,
    coef: &BridgeCoefficients,
    mixed_sites: Option<&[usize]>,
) -> Result<LossTerms> {
    let n_layer = sparse.config.n_layer;
    let v = sparse.config.vocab_size;
    let need_sites = coef.nmse_encode != 0.0
        || coef.nmse_decode != 0.0
        || coef.kl_dense_to_sparse != 0.0
        || coef.kl_sparse_to_dense != 0.0;
    let mut s_hooks = Hooks::none();
    if need_sites {
        s_hooks.set_record(&sites_pattern(n_layer))?;
    }
    s_hooks.differentiable = true;
    let s_logits = sparse.forward(tokens, &mut s_hooks)?; // (B, T, V)
    let ce = candle_nn::loss::cross_entropy(&s_logits.reshape(((), v))?, &targets.flatten_all()?)?;
    let mut total = weighted(&ce, coef.ce)?;
    let mut terms = LossTerms {
        ce: ce.clone(),
        kl: None,
        nmse_encode: None,
        nmse_decode: None,
        kl_dense_to_sparse: None,
        kl_sparse_to_dense: None,
        total: ce,
    };
    if !coef.uses_dense() {
        terms.total = total;
        return Ok(terms);
    }
    // The dense model is frozen: its pass needs no graph, and its activations are constants (detached targets).
    let mut d_hooks = Hooks::none();
    if need_sites {
        d_hooks.set_record(&sites_pattern(n_layer))?;
    }
    let d_logits = dense.forward(tokens, &mut d_hooks)?.detach(); // (B, T, V)
    let add = |total: &mut Tensor, t: &Tensor, w: f64| -> Result<()> {
        *total = (&*total + weighted(t, w)?)?;
        Ok(())
    };
    if coef.kl != 0.0 {
        let kl = kl_logits(&d_logits, &s_logits)?;
        add(&mut total, &kl, coef.kl)?;
        terms.kl = Some(kl);
    }
    if need_sites {
        let s_acts = site_acts(&s_hooks, n_layer)?;
        let d_acts: Vec<Tensor> = site_acts(&d_hooks, n_layer)?.iter().map(Tensor::detach).collect();
        let all: Vec<usize> = (0..s_acts.len()).collect();
        let mixed = mixed_sites.unwrap_or(&all);
        if let Some(&bad) = mixed.iter().find(|&&s| s >= s_acts.len()) {
            return Err(BridgeError::Mismatch(format!(
                "site {bad} does not exist; the model has {} sites",
                s_acts.len()
            )));
        }
        let mean = |parts: Vec<Tensor>| -> Result<Tensor> {
            let n = parts.len().max(1) as f64;
            Ok((Tensor::stack(&parts, 0)?.sum_all()? / n)?)
        };
        if coef.nmse_encode != 0.0 {
            let parts = (0..s_acts.len())
                .map(|s| nmse(&bridges.encode(s, &d_acts[s])?, &s_acts[s].detach()))
                .collect::<Result<Vec<_>>>()?;
            let t = mean(parts)?;
            add(&mut total, &t, coef.nmse_encode)?;
            terms.nmse_encode = Some(t);
        }
        if coef.nmse_decode != 0.0 {
            let parts = (0..s_acts.len())
                .map(|s| nmse(&bridges.decode(s, &s_acts[s])?, &d_acts[s]))
                .collect::<Result<Vec<_>>>()?;
            let t = mean(parts)?;
            add(&mut total, &t, coef.nmse_decode)?;
            terms.nmse_decode = Some(t);
        }
        if coef.kl_dense_to_sparse != 0.0 && !mixed.is_empty() {
            let parts = mixed
                .iter()
                .map(|&s| {
                    let logits = forward_from(sparse, tokens, s, bridges.encode(s, &d_acts[s])?, true)?;
                    kl_logits(&d_logits, &logits)
                })
                .collect::<Result<Vec<_>>>()?;
            let t = mean(parts)?;
            add(&mut total, &t, coef.kl_dense_to_sparse)?;
            terms.kl_dense_to_sparse = Some(t);
        }
        if coef.kl_sparse_to_dense != 0.0 && !mixed.is_empty() {
            let parts = mixed
                .iter()
                .map(|&s| {
                    let logits = forward_from(dense, tokens, s, bridges.decode(s, &s_acts[s])?, true)?;
                    kl_logits(&d_logits, &logits)
                })
                .collect::<Result<Vec<_>>>()?;
            let t = mean(parts)?;
            add(&mut total, &t, coef.kl_sparse_to_dense)?;
            terms.kl_sparse_to_dense = Some(t);
        }
    }
    terms.total = total;
    Ok(terms)
}

/// `t × w`, and `t` itself for weight 1 (so a CE-only loss is the plain trainer's tensor, bit for bit).
fn weighted(t: &Tensor, w: f64) -> Result<Tensor> {
    Ok(if w == 1.0 { t.clone() } else { t.affine(w, 0.0)? })
}

/// One row of the path table: a way through the two models, its cross-entropy on the text and its KL to the
/// dense model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathRow {
    /// `dense`, `sparse`, `unigram`, `dense>sparse` (dense up to the site, encoder, sparse onward),
    /// `sparse>dense` (sparse up to the site, decoder, dense onward), `dense>round_trip` (dense with the site
    /// replaced by decoder(encoder(·))) or `sparse>round_trip` (sparse with encoder(decoder(·))).
    pub path: String,
    /// The site crossed, if any.
    pub site: Option<usize>,
    /// The site's short name (`embed`, `0.attn`, `0.mlp`, ...).
    pub site_label: Option<String>,
    /// Mean next-token cross-entropy, nats.
    pub ce: f64,
    /// Mean KL(dense ‖ path), nats.
    pub kl: f64,
}

/// Per-site reconstruction errors over the text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SiteRow {
    /// The site.
    pub site: usize,
    /// Its short name.
    pub label: String,
    /// Its hook.
    pub hook: String,
    /// NMSE(encoder(dense), sparse).
    pub nmse_encode: f64,
    /// NMSE(decoder(sparse), dense).
    pub nmse_decode: f64,
}

/// The path table of `bridge eval`.
#[derive(Debug, Clone, Serialize)]
pub struct PathTable {
    /// Every path: dense, sparse, unigram, then per site the two crossings and the two round trips.
    pub paths: Vec<PathRow>,
    /// Per-site NMSE both ways.
    pub sites: Vec<SiteRow>,
    /// Tokens scored.
    pub tokens: usize,
}

/// Sums of one path's per-token CE and KL.
#[derive(Default, Clone, Copy)]
struct Acc {
    ce: f64,
    kl: f64,
}

/// Σ over rows of CE against `targets` and KL(dense ‖ logits). logits, dense: (B, T, V); targets (B·T).
fn score(logits: &Tensor, dense_logp: &Tensor, targets: &[u32]) -> Result<Acc> {
    let v = *logits.dims().last().expect("rank 3");
    let lq = candle_nn::ops::log_softmax(&logits.reshape(((), v))?, D::Minus1)?;
    let kl = (dense_logp.exp()? * (dense_logp - &lq)?)?.sum_all()?;
    let rows: Vec<Vec<f32>> = lq.to_vec2()?;
    let ce: f64 = rows.iter().zip(targets).map(|(r, &t)| -(r[t as usize] as f64)).sum();
    Ok(Acc { ce, kl: scalar(&kl)? })
}

/// The path table over `windows` (each a token sequence of at most block_size + 1 tokens: inputs and the next
/// tokens), in batches of `batch` windows of equal length.
pub fn path_table(pair: &BridgedPair, windows: &[Vec<u32>], batch: usize) -> Result<PathTable> {
    let (sparse, dense, bridges) = (&pair.sparse, &pair.dense, &pair.bridges);
    let n_layer = sparse.config.n_layer;
    let n_sites = site_count(n_layer);
    let v = dense.config.vocab_size;
    // Order of the accumulators: dense, sparse, then per site dense>sparse, sparse>dense, both round trips.
    let mut acc = vec![Acc::default(); 2 + 4 * n_sites];
    let mut nmse_sums = vec![[0f64; 4]; n_sites]; // encode err, encode norm, decode err, decode norm
    let mut counts = vec![0u64; v];
    let (mut dense_mass, mut dense_neg_entropy) = (vec![0f64; v], 0f64);
    let mut tokens = 0usize;
    let pattern = sites_pattern(n_layer);
    for group in windows.chunks(batch.max(1)) {
        let t = group[0].len() - 1;
        if t == 0 || group.iter().any(|w| w.len() != t + 1) {
            return Err(BridgeError::Mismatch(
                "path_table: windows must share one length of at least 2".into(),
            ));
        }
        let inputs: Vec<u32> = group.iter().flat_map(|w| w[..t].iter().copied()).collect();
        let targets: Vec<u32> = group.iter().flat_map(|w| w[1..].iter().copied()).collect();
        for &id in &targets {
            counts[id as usize] += 1;
        }
        tokens += targets.len();
        let input = Tensor::from_vec(inputs, (group.len(), t), &Device::Cpu)?;
        let mut dh = Hooks::recording(&pattern)?;
        let d_logits = dense.forward(&input, &mut dh)?;
        let d_logp = candle_nn::ops::log_softmax(&d_logits.reshape(((), v))?, D::Minus1)?;
        let d_p = d_logp.exp()?;
        dense_neg_entropy += scalar(&(&d_p * &d_logp)?.sum_all()?)?;
        let mass: Vec<f32> = d_p.sum(0)?.to_vec1()?;
        for (m, x) in dense_mass.iter_mut().zip(mass) {
            *m += x as f64;
        }
        let mut sh = Hooks::recording(&pattern)?;
        let s_logits = sparse.forward(&input, &mut sh)?;
        let (d_acts, s_acts) = (site_acts(&dh, n_layer)?, site_acts(&sh, n_layer)?);
        let mut add = |i: usize, a: Acc| {
            acc[i].ce += a.ce;
            acc[i].kl += a.kl;
        };
        add(0, score(&d_logits, &d_logp, &targets)?);
        add(1, score(&s_logits, &d_logp, &targets)?);
        for s in 0..n_sites {
            let enc = bridges.encode(s, &d_acts[s])?;
            let dec = bridges.decode(s, &s_acts[s])?;
            let sums = &mut nmse_sums[s];
            sums[0] += scalar(&(&enc - &s_acts[s])?.sqr()?.sum_all()?)?;
            sums[1] += scalar(&s_acts[s].sqr()?.sum_all()?)?;
            sums[2] += scalar(&(&dec - &d_acts[s])?.sqr()?.sum_all()?)?;
            sums[3] += scalar(&d_acts[s].sqr()?.sum_all()?)?;
            let base = 2 + 4 * s;
            let paths = [
                forward_from(sparse, &input, s, enc.clone(), false)?,
                forward_from(dense, &input, s, dec.clone(), false)?,
                forward_from(dense, &input, s, bridges.decode(s, &enc)?, false)?,
                forward_from(sparse, &input, s, bridges.encode(s, &dec)?, false)?,
            ];
            for (i, logits) in paths.iter().enumerate() {
                add(base + i, score(logits, &d_logp, &targets)?);
            }
        }
    }
    let n = tokens.max(1) as f64;
    let row = |path: &str, site: Option<usize>, a: Acc| PathRow {
        path: path.into(),
        site,
        site_label: site.map(site_label),
        ce: a.ce / n,
        kl: a.kl / n,
    };
    let mut paths = vec![row("dense", None, acc[0]), row("sparse", None, acc[1])];
    paths.push(unigram_row(&counts, &dense_mass, dense_neg_entropy, tokens));
    for s in 0..n_sites {
        let base = 2 + 4 * s;
        for (i, name) in ["dense>sparse", "sparse>dense", "dense>round_trip", "sparse>round_trip"]
            .iter()
            .enumerate()
        {
            paths.push(row(name, Some(s), acc[base + i]));
        }
    }
    let sites = (0..n_sites)
        .map(|s| {
            let [ee, en, de, dn] = nmse_sums[s];
            SiteRow {
                site: s,
                label: site_label(s),
                hook: site_hook(s, n_layer).to_string(),
                nmse_encode: ee / en.max(1e-30),
                nmse_decode: de / dn.max(1e-30),
            }
        })
        .collect();
    Ok(PathTable { paths, sites, tokens })
}

/// The reference row: a unigram model (add-one smoothed counts of the scored tokens themselves), its CE and its
/// KL to the dense model: the scale the crossings' KLs are judged against. `dense_mass[v]` is Σ over tokens of
/// the dense model's p(v), `dense_neg_entropy` Σ over tokens of Σ_v p log p, so that
/// KL = dense_neg_entropy − Σ_v dense_mass[v] · log u(v) needs no second pass.
fn unigram_row(counts: &[u64], dense_mass: &[f64], dense_neg_entropy: f64, tokens: usize) -> PathRow {
    let total: f64 = counts.iter().map(|&c| c as f64 + 1.0).sum();
    let logu: Vec<f64> = counts.iter().map(|&c| ((c as f64 + 1.0) / total).ln()).collect();
    let ce: f64 = -counts.iter().zip(&logu).map(|(&c, l)| c as f64 * l).sum::<f64>();
    let cross: f64 = dense_mass.iter().zip(&logu).map(|(m, l)| m * l).sum();
    let n = tokens.max(1) as f64;
    PathRow {
        path: "unigram".into(),
        site: None,
        site_label: None,
        ce: ce / n,
        kl: (dense_neg_entropy - cross) / n,
    }
}

/// What steering through a bridge did: both models' last-position logits before and after.
#[derive(Debug, Clone)]
pub struct SteerOutcome {
    /// The site the change was carried across.
    pub site: usize,
    /// The sparse model's last-position logits (V) without and with the edit.
    pub sparse_before: Vec<f32>,
    /// See `sparse_before`.
    pub sparse_after: Vec<f32>,
    /// The dense model's last-position logits without and with the decoded change.
    pub dense_before: Vec<f32>,
    /// See `dense_before`.
    pub dense_after: Vec<f32>,
    /// The L2 norm of the sparse residual's change at the site, per position.
    pub sparse_delta_norm: Vec<f32>,
    /// The L2 norm of the decoded change added to the dense residual, per position.
    pub dense_delta_norm: Vec<f32>,
}

/// Steering through a bridge: run the sparse model on `ids` with `edits` (hook, intervention), take the change
/// of its residual stream at `site` (at least the first site after every edit), map it through the decoder's
/// linear part into the dense model's residual at the same site, and run the dense model on from there.
pub fn steer(pair: &BridgedPair, ids: &[u32], edits: &[(String, Intervention)], site: usize) -> Result<SteerOutcome> {
    let mut out = steer_many(
        &pair.sparse,
        &pair.dense,
        &pair.bridges,
        ids,
        std::slice::from_ref(&edits.to_vec()),
        site,
    )?;
    Ok(out.pop().expect("one edit set, one outcome"))
}

/// [`steer`] for several sets of edits on the same prompt, each steered on its own: the unedited passes of both
/// models run once. The models and bridges are passed apart so that a caller holding the sparse model elsewhere
/// (the workbench's engine) needs no second copy of it.
pub fn steer_many(
    sparse: &Gpt,
    dense: &Gpt,
    bridges: &Bridges,
    ids: &[u32],
    edit_sets: &[Vec<(String, Intervention)>],
    site: usize,
) -> Result<Vec<SteerOutcome>> {
    let hook = site_hook(site, sparse.config.n_layer).to_string();
    let pattern = regex::escape(&hook) + "$";
    let mut plain = Hooks::recording(&pattern)?;
    let s_before = sparse.forward_ids(ids, &mut plain)?; // (T, V)
    let mut d_plain = Hooks::recording(&pattern)?;
    let d_before = dense.forward_ids(ids, &mut d_plain)?; // (T, V)
    let last = |l: &Tensor| -> Result<Vec<f32>> { Ok(l.get(ids.len() - 1)?.to_vec1()?) };
    let norms = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.squeeze(0)?.sqr()?.sum(D::Minus1)?.sqrt()?.to_vec1()?) };
    let (sparse_before, dense_before) = (last(&s_before)?, last(&d_before)?);
    let mut out = Vec::with_capacity(edit_sets.len());
    for edits in edit_sets {
        let mut edited = Hooks::recording(&pattern)?;
        for (h, iv) in edits {
            edited.intervene(h, iv.clone());
        }
        let s_after = sparse.forward_ids(ids, &mut edited)?;
        let delta = (&edited.recorded[&hook] - &plain.recorded[&hook])?; // (1, T, d_sparse)
        let dense_delta = bridges.decode_delta(site, &delta)?; // (1, T, d_dense)
        let patched = (&d_plain.recorded[&hook] + &dense_delta)?;
        let mut d_hooks = Hooks::none();
        d_hooks.intervene(&hook, Intervention::new(Action::Patch(patched)));
        let d_after = dense.forward_ids(ids, &mut d_hooks)?;
        out.push(SteerOutcome {
            site,
            sparse_before: sparse_before.clone(),
            sparse_after: last(&s_after)?,
            dense_before: dense_before.clone(),
            dense_after: last(&d_after)?,
            sparse_delta_norm: norms(&delta)?,
            dense_delta_norm: norms(&dense_delta)?,
        });
    }
    Ok(out)
}

/// The mean of `hook[channel]` at the last token of each prompt: a node's value on one class of a task (the
/// `class_a` / `class_b` of `run --bridge-steer` and `bridge steer-eval`).
pub fn node_mean_at_last(model: &Gpt, prompts: &[Vec<u32>], hook: &str, channel: usize) -> Result<f32> {
    let pattern = regex::escape(hook) + "$";
    let mut sum = 0f64;
    for ids in prompts {
        let mut hooks = Hooks::recording(&pattern)?;
        model.forward_ids(ids, &mut hooks)?;
        let act = &hooks.recorded[hook]; // (1, T, W)
        let v: f32 = act.squeeze(0)?.get(ids.len() - 1)?.get(channel)?.to_scalar()?;
        sum += v as f64;
    }
    Ok((sum / prompts.len().max(1) as f64) as f32)
}

/// `n` distinct channels of `0..width` other than `exclude`, drawn from `seed`, ascending: the random control
/// of `bridge steer-eval`.
pub fn random_channels(width: usize, exclude: usize, n: usize, seed: u64) -> Result<Vec<usize>> {
    use rand::seq::SliceRandom;
    let mut pool: Vec<usize> = (0..width).filter(|&c| c != exclude).collect();
    if n > pool.len() {
        return Err(BridgeError::Mismatch(format!(
            "{n} random channels asked for, but the hook has only {} channels besides the node",
            pool.len()
        )));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    pool.shuffle(&mut rng);
    pool.truncate(n);
    pool.sort_unstable();
    Ok(pool)
}

/// How often steering moved a logit difference toward the other class, over the steered prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SteerTally {
    /// Prompts steered.
    pub prompts: usize,
    /// Prompts whose logit difference moved toward the other class (strictly).
    pub toward: usize,
    /// Prompts whose logit difference moved away from it (strictly).
    pub away: usize,
    /// Prompts whose logit difference did not change at all.
    pub unchanged: usize,
    /// Mean over the prompts of the logit difference's move toward the other class (negative: away), nats.
    pub mean_shift: f64,
}

impl SteerTally {
    fn add(&mut self, shift: f32) {
        self.prompts += 1;
        match shift.partial_cmp(&0.0) {
            Some(std::cmp::Ordering::Greater) => self.toward += 1,
            Some(std::cmp::Ordering::Less) => self.away += 1,
            _ => self.unchanged += 1,
        }
        // Accumulated as a sum; divided in `finish`.
        self.mean_shift += shift as f64;
    }

    fn finish(&mut self) {
        self.mean_shift /= self.prompts.max(1) as f64;
    }

    /// `toward / prompts` (0 without prompts).
    pub fn rate(&self) -> f64 {
        self.toward as f64 / self.prompts.max(1) as f64
    }
}

/// One random control channel's result.
#[derive(Debug, Clone, Serialize)]
pub struct RandomSteer {
    /// The channel of the node's hook.
    pub channel: usize,
    /// The dense model's moves.
    pub dense: SteerTally,
}

/// The result of [`steer_eval`].
#[derive(Debug, Clone)]
pub struct SteerEval {
    /// The bridge site the changes crossed.
    pub site: usize,
    /// The node's mean at the last token of the class-a prompts.
    pub class_a: f32,
    /// ... and of the class-b prompts.
    pub class_b: f32,
    /// Test pairs used (each gives two steered prompts).
    pub pairs: usize,
    /// The dense model's moves when the node is steered: class-a prompts toward b, class-b prompts toward a.
    pub dense_a_to_b: SteerTally,
    /// See `dense_a_to_b`.
    pub dense_b_to_a: SteerTally,
    /// Both directions together.
    pub dense: SteerTally,
    /// The sparse model's own moves under the same edit (the reference the bridge should carry over).
    pub sparse: SteerTally,
    /// Mean over the prompts of |change| set at the node (the norm each random channel is moved by).
    pub mean_abs_change: f64,
    /// The random channels of the node's hook, each moved by the node's change on every prompt.
    pub random: Vec<RandomSteer>,
}

/// The paper's steering experiment through a bridge. On each test pair, the class-a prompt has its node set to
/// the node's class-b mean and the class-b prompt to the class-a mean (at the last token; `scale` multiplies the
/// change, 1 = the full move); the change crosses the bridge at the first site after the node's hook, and the
/// dense model's logit difference logit(target) − logit(alt) is read before and after: moving toward the other
/// class is a decrease on class-a prompts and an increase on class-b ones. Each random channel of the same hook
/// gets the same signed change on every prompt (so the same norm), and is tallied the same way.
#[allow(clippy::too_many_arguments)]
pub fn steer_eval(
    pair: &BridgedPair,
    data: &crate::analysis::ablate::TaskData,
    hook: &str,
    channel: usize,
    class_means: (f32, f32),
    random: &[usize],
    scale: f32,
) -> Result<SteerEval> {
    let n_layer = pair.sparse.config.n_layer;
    let name: HookName = hook
        .parse()
        .map_err(|e| BridgeError::Mismatch(format!("hook {hook}: {e}")))?;
    let site = site_after(name, n_layer);
    let alts: Vec<u32> = data
        .alt
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.ok_or_else(|| {
                BridgeError::Mismatch(format!(
                    "task {}: pair {i} has no alternative target, so there is no logit difference to move",
                    data.task
                ))
            })
        })
        .collect::<Result<_>>()?;
    let pattern = regex::escape(hook) + "$";
    let (mut a_to_b, mut b_to_a, mut sparse_t) = (SteerTally::default(), SteerTally::default(), SteerTally::default());
    let mut rand_t = vec![SteerTally::default(); random.len()];
    let mut abs_change = 0f64;
    // (prompts, the mean they are steered to, +1 when toward the other class is an increase of the difference)
    for (prompts, target, sign) in [(&data.pos, class_means.1, -1f32), (&data.neg, class_means.0, 1f32)] {
        for (i, ids) in prompts.iter().enumerate() {
            let mut rec = Hooks::recording(&pattern)?;
            pair.sparse.forward_ids(ids, &mut rec)?;
            let acts = rec.recorded[hook].squeeze(0)?.get(ids.len() - 1)?; // (W)
            let width = acts.dims()[0];
            let current: f32 = acts.get(channel)?.to_scalar()?;
            let change = scale * (target - current);
            abs_change += change.abs() as f64;
            let edit_of = |c: usize| -> Vec<(String, Intervention)> {
                let mut v = vec![0f32; width];
                v[c] = change;
                vec![(
                    hook.to_string(),
                    Intervention::new(Action::Add(v)).channels(vec![c]).positions(vec![-1]),
                )]
            };
            let sets: Vec<_> = std::iter::once(channel)
                .chain(random.iter().copied())
                .map(edit_of)
                .collect();
            let outcomes = steer_many(&pair.sparse, &pair.dense, &pair.bridges, ids, &sets, site)?;
            let (a, b) = (data.tok[i] as usize, alts[i] as usize);
            let shift = |before: &[f32], after: &[f32]| sign * ((after[a] - after[b]) - (before[a] - before[b]));
            let node = &outcomes[0];
            let d = shift(&node.dense_before, &node.dense_after);
            if sign < 0.0 { &mut a_to_b } else { &mut b_to_a }.add(d);
            sparse_t.add(shift(&node.sparse_before, &node.sparse_after));
            for (t, o) in rand_t.iter_mut().zip(&outcomes[1..]) {
                t.add(shift(&o.dense_before, &o.dense_after));
            }
        }
    }
    let mut dense = SteerTally {
        prompts: a_to_b.prompts + b_to_a.prompts,
        toward: a_to_b.toward + b_to_a.toward,
        away: a_to_b.away + b_to_a.away,
        unchanged: a_to_b.unchanged + b_to_a.unchanged,
        mean_shift: a_to_b.mean_shift + b_to_a.mean_shift,
    };
    for t in [&mut dense, &mut a_to_b, &mut b_to_a, &mut sparse_t] {
        t.finish();
    }
    let steered = dense.prompts.max(1) as f64;
    Ok(SteerEval {
        site,
        class_a: class_means.0,
        class_b: class_means.1,
        pairs: data.len(),
        dense_a_to_b: a_to_b,
        dense_b_to_a: b_to_a,
        dense,
        sparse: sparse_t,
        mean_abs_change: abs_change / steered,
        random: random
            .iter()
            .zip(rand_t)
            .map(|(&channel, mut dense)| {
                dense.finish();
                RandomSteer { channel, dense }
            })
            .collect(),
    })
}

/// The `k` distinct sites (of `n`) whose mixed paths step `step` trains, ascending; a function of (seed, step) only,
/// so that a resumed run draws the same ones.
pub fn sample_sites(n: usize, k: usize, seed: u64, step: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5175_B41D ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut all: Vec<usize> = (0..n).collect();
    all.shuffle(&mut rng);
    all.truncate(k.min(n));
    all.sort_unstable();
    all
}
