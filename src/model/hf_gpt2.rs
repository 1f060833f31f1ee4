//! GPT-2-family checkpoints in Hugging Face's layout (`GPT2LMHeadModel` written by `save_pretrained`): the
//! config, the tensor names, sharded weights and the hub cache's folders, mapped onto the reference's blocks.
//!
//! A GPT-2 is the reference's architecture with LayerNorm (with bias), linear biases, no sink, no bigram table
//! and no AbsTopK, so nothing here has its own forward: the config becomes a [`Config`] and the tensors become a
//! [`Checkpoint`] in our names (`transformer.h.0.attn.c_attn.weight`, ...). Two things differ in the file:
//! Conv1D weights are stored `[in, out]` (held as transposed views, never copied), and the original `gpt2` upload has no
//! `transformer.` prefix on its keys.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::checkpoint::{Checkpoint, Stored};
use super::config::{Config, LoadedConfig};
use super::error::{io_err, FormatProblem, ModelError, Result};
use super::norm::LAYER_NORM_EPS;
use super::weight_names::{self as wn, BlockLinear, BlockNorm};

/// The single-file weights of a Hugging Face model directory.
pub const WEIGHTS: &str = "model.safetensors";
/// The shard index of a sharded Hugging Face model directory.
pub const SHARD_INDEX: &str = "model.safetensors.index.json";
/// The prefix `GPT2LMHeadModel` puts before the body's keys; the original `gpt2` upload omits it.
const PREFIX: &str = "transformer.";

/// Whether a config json is Hugging Face's (it names a `model_type`; ours and the reference's never do).
pub fn is_hf_config(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.get("model_type").is_some())
}

/// Reads a Hugging Face `config.json` of a GPT-2 (`model_type: gpt2`) as our [`Config`].
pub fn load_config(path: &Path) -> Result<LoadedConfig> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    config_from_json_str(&text).map_err(|problem| ModelError::Config {
        path: path.to_path_buf(),
        source: super::config::ConfigError::HuggingFace(problem),
    })
}

/// Why a Hugging Face `config.json` describes no GPT-2 this engine computes the same way; each names the field.
#[derive(Debug, thiserror::Error)]
pub enum HfConfigProblem {
    /// The text is not json.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The json is not an object.
    #[error("expected a json object")]
    NotObject,
    /// A size field is not a non-negative integer.
    #[error("`{field}` must be a non-negative integer, got {value}")]
    NotUint {
        /// The field's name.
        field: &'static str,
        /// The value given.
        value: serde_json::Value,
    },
    /// A flag is not a boolean.
    #[error("`{field}` must be true or false, got {value}")]
    NotBool {
        /// The field's name.
        field: &'static str,
        /// The value given.
        value: serde_json::Value,
    },
    /// `model_type` names another architecture.
    #[error("`model_type` is `{found}`; circuitscope reads Hugging Face checkpoints of `gpt2` only")]
    ModelType {
        /// The `model_type` given.
        found: String,
    },
    /// `model_type` is absent or not a string.
    #[error("`model_type` must be a string (`gpt2`)")]
    ModelTypeMissing,
    /// An activation function this engine does not compute (None: the value is not a string).
    #[error(
        "`activation_function` {} is not supported (gelu_new, gelu_pytorch_tanh, gelu or relu)",
        quoted_or_not_string(.found)
    )]
    Activation {
        /// The name given, if it is a string.
        found: Option<String>,
    },
    /// `layer_norm_epsilon` is not a number.
    #[error("`layer_norm_epsilon` must be a number, got {value}")]
    EpsNotNumber {
        /// The value given.
        value: serde_json::Value,
    },
    /// A LayerNorm epsilon other than ours.
    #[error("`layer_norm_epsilon` {value} is not supported (circuitscope's LayerNorm uses {LAYER_NORM_EPS})")]
    Eps {
        /// The epsilon given.
        value: f64,
    },
    /// A GPT-2 with cross-attention (an encoder-decoder's decoder).
    #[error("`add_cross_attention` true is not supported (a decoder-only GPT-2 has none)")]
    CrossAttention,
    /// The sizes given make no model (e.g. `n_embd` not a multiple of `n_head`; boxed: a config error inside a
    /// config error).
    #[error(transparent)]
    Config(Box<super::config::ConfigError>),
}

fn quoted_or_not_string(found: &Option<String>) -> String {
    found
        .as_ref()
        .map_or_else(|| "(not a string)".to_string(), |s| format!("`{s}`"))
}

/// Parses a Hugging Face GPT-2 config; absent fields take `GPT2Config`'s defaults. Anything this engine would
/// compute differently is refused with the field's name.
pub fn config_from_json_str(text: &str) -> std::result::Result<LoadedConfig, HfConfigProblem> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let map = value.as_object().ok_or(HfConfigProblem::NotObject)?;
    let field = |name: &str| map.get(name).filter(|v| !v.is_null());
    let uint = |name: &'static str, default: usize| -> std::result::Result<usize, HfConfigProblem> {
        match field(name) {
            None => Ok(default),
            Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| HfConfigProblem::NotUint {
                field: name,
                value: v.clone(),
            }),
        }
    };
    let flag = |name: &'static str, default: bool| -> std::result::Result<bool, HfConfigProblem> {
        match field(name) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| HfConfigProblem::NotBool {
                field: name,
                value: v.clone(),
            }),
        }
    };
    match field("model_type").and_then(|v| v.as_str()) {
        Some("gpt2") => {}
        Some(other) => {
            return Err(HfConfigProblem::ModelType {
                found: other.to_string(),
            })
        }
        None => return Err(HfConfigProblem::ModelTypeMissing),
    }
    let activation = match field("activation_function").map(|v| v.as_str()) {
        None | Some(Some("gelu_new" | "gelu_pytorch_tanh")) => "gelu_new",
        Some(Some("gelu")) => "gelu",
        Some(Some("relu")) => "relu",
        Some(v) => {
            return Err(HfConfigProblem::Activation {
                found: v.map(str::to_string),
            })
        }
    };
    if let Some(eps) = field("layer_norm_epsilon") {
        let eps = eps
            .as_f64()
            .ok_or_else(|| HfConfigProblem::EpsNotNumber { value: eps.clone() })?;
        if (eps - LAYER_NORM_EPS).abs() > 1e-12 {
            return Err(HfConfigProblem::Eps { value: eps });
        }
    }
    if flag("add_cross_attention", false)? {
        return Err(HfConfigProblem::CrossAttention);
    }
    let n_embd = uint("n_embd", 768)?;
    let json = serde_json::json!({
        "block_size": uint("n_positions", 1024)?,
        "vocab_size": uint("vocab_size", 50257)?,
        "n_layer": uint("n_layer", 12)?,
        "n_head": uint("n_head", 12)?,
        "d_model": n_embd,
        "d_mlp": uint("n_inner", 4 * n_embd)?,
        "bias": true,
        "ln_bias": true,
        "rms_norm": false,
        "residual_activation_type": "identity",
        "activation_type": activation,
        "tied_unembed": flag("tie_word_embeddings", true)?,
        "tokenizer_name": "gpt2",
        "sink": false,
        "enable_bigram_table": false,
        "scale_attn_weights": flag("scale_attn_weights", true)?,
        "scale_attn_by_inverse_layer_idx": flag("scale_attn_by_inverse_layer_idx", false)?,
    });
    let loaded = Config::from_json_str(&json.to_string()).map_err(|e| HfConfigProblem::Config(Box::new(e)))?;
    Ok(LoadedConfig {
        config: loaded.config,
        warnings: Vec::new(),
    })
}

/// The Hugging Face name (without prefix) and the `[in, out]` shape of every Conv1D weight of block `layer`.
fn conv1d_weights(cfg: &Config, layer: usize) -> [(String, [usize; 2]); 4] {
    let (d, a, f) = (cfg.d_model, cfg.attn_width(), cfg.d_mlp);
    BlockLinear::ALL.map(|which| {
        let shape = match which {
            BlockLinear::AttnQkv => [d, 3 * a],
            BlockLinear::AttnOut => [a, d],
            BlockLinear::MlpIn => [d, f],
            BlockLinear::MlpOut => [f, d],
        };
        (format!("h.{layer}.{}.weight", which.module()), shape)
    })
}

/// Every tensor a GPT-2 of `cfg` reads, by Hugging Face name without prefix, with the shape as stored.
fn expected_shapes(cfg: &Config) -> HashMap<String, Vec<usize>> {
    let (d, a, f, v) = (cfg.d_model, cfg.attn_width(), cfg.d_mlp, cfg.vocab_size);
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    for layer in 0..cfg.n_layer {
        for (name, shape) in conv1d_weights(cfg, layer) {
            shapes.insert(name, shape.to_vec());
        }
        for (which, out) in [
            (BlockLinear::AttnQkv, 3 * a),
            (BlockLinear::AttnOut, d),
            (BlockLinear::MlpIn, f),
            (BlockLinear::MlpOut, d),
        ] {
            shapes.insert(format!("h.{layer}.{}.bias", which.module()), vec![out]);
        }
        for norm in [BlockNorm::Ln1, BlockNorm::Ln2] {
            for part in ["weight", "bias"] {
                shapes.insert(format!("h.{layer}.{}.{part}", norm.module()), vec![d]);
            }
        }
    }
    for part in ["weight", "bias"] {
        shapes.insert(format!("ln_f.{part}"), vec![d]);
    }
    shapes.insert("wte.weight".into(), vec![v, d]);
    shapes.insert("wpe.weight".into(), vec![cfg.block_size, d]);
    shapes.insert(wn::LM_HEAD.into(), vec![v, d]);
    shapes
}

/// The causal-mask buffers older GPT-2 files carry (`h.N.attn.bias`, `h.N.attn.masked_bias`): not weights.
fn is_mask_buffer(name: &str) -> bool {
    name.starts_with("h.") && (name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias"))
}

/// Opens the weights of a Hugging Face GPT-2 (`model.safetensors`, or the index of a sharded one) as a
/// checkpoint in our tensor names and orientation, checking every known tensor's shape against `cfg` in the
/// file's own terms first, so that an error names the key and shape as stored.
pub fn open_checkpoint(weights: &Path, cfg: &Config) -> Result<Checkpoint> {
    let raw = if weights.file_name().is_some_and(|n| n == SHARD_INDEX) {
        open_shards(weights)?
    } else {
        Checkpoint::open_safetensors(weights)?
    };
    let expected = expected_shapes(cfg);
    let conv1d: Vec<String> = (0..cfg.n_layer)
        .flat_map(|l| conv1d_weights(cfg, l).map(|(name, _)| name))
        .collect();
    let mut tensors = BTreeMap::new();
    for (stored_name, stored) in raw.tensors {
        let name = stored_name.strip_prefix(PREFIX).unwrap_or(&stored_name).to_string();
        if is_mask_buffer(&name) {
            continue;
        }
        if let Some(shape) = expected.get(&name) {
            if &stored.shape() != shape {
                return Err(ModelError::Shape {
                    path: raw.path.clone(),
                    name: stored_name.clone(),
                    expected: shape.clone(),
                    got: stored.shape(),
                });
            }
        }
        let stored = if conv1d.contains(&name) {
            // Conv1D computes x·W with W [in, out]; our Linear holds [out, in] and computes x·Wᵀ. A transposed
            // view, not a copy: the product reads it as the [in, out] matrix it is, so loading moves no bytes.
            Stored::Dense(stored.to_dense()?.t()?)
        } else {
            stored
        };
        let ours = if name == wn::LM_HEAD {
            name
        } else {
            format!("{PREFIX}{name}")
        };
        if tensors.insert(ours.clone(), stored).is_some() {
            return Err(ModelError::Format {
                path: raw.path.clone(),
                problem: FormatProblem::StoredTwice { name: ours },
            });
        }
    }
    Ok(Checkpoint {
        path: raw.path,
        tensors,
    })
}

/// Reads every shard a `model.safetensors.index.json` names into one checkpoint (named after the index), checking
/// that each tensor the index lists is in the shard it names.
fn open_shards(index: &Path) -> Result<Checkpoint> {
    let fmt = |problem: FormatProblem| ModelError::Format {
        path: index.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(index).map_err(io_err(index))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| fmt(FormatProblem::IndexJson(e)))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| fmt(FormatProblem::NoWeightMap))?;
    let mut by_shard: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| fmt(FormatProblem::ShardNotString { tensor: tensor.clone() }))?;
        // A shard is a file beside the index: a path elsewhere is not what `save_pretrained` writes.
        if file.is_empty() || file.contains(['/', '\\']) || file == ".." || file == "." {
            return Err(fmt(FormatProblem::ShardOutsideIndex {
                tensor: tensor.clone(),
                file: file.to_string(),
            }));
        }
        by_shard.entry(file.to_string()).or_default().push(tensor.clone());
    }
    if by_shard.is_empty() {
        return Err(fmt(FormatProblem::EmptyWeightMap));
    }
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut tensors = BTreeMap::new();
    for (file, names) in by_shard {
        let shard = Checkpoint::open_safetensors(&dir.join(&file)).map_err(|e| {
            fmt(FormatProblem::Shard {
                file: file.clone(),
                first: names[0].clone(),
                source: Box::new(e),
            })
        })?;
        for name in names {
            if !shard.tensors.contains_key(&name) {
                return Err(fmt(FormatProblem::ShardLacks { name, file }));
            }
        }
        for (name, stored) in shard.tensors {
            if tensors.insert(name.clone(), stored).is_some() {
                return Err(fmt(FormatProblem::InManyShards { name }));
            }
        }
    }
    Ok(Checkpoint {
        path: index.to_path_buf(),
        tensors,
    })
}

/// The snapshot folder of a hub cache entry (`.../models--gpt2`, holding `snapshots/<rev>/` and `refs/main`):
/// the revision `refs/main` names, else the only snapshot. Any other path is returned as it is.
pub fn resolve_hub_cache(path: &Path) -> Result<PathBuf> {
    let snapshots = path.join("snapshots");
    if !is_dir(&snapshots)? {
        return Ok(path.to_path_buf());
    }
    let refs_main = path.join("refs").join("main");
    if exists(&refs_main)? {
        let rev = std::fs::read_to_string(&refs_main).map_err(io_err(&refs_main))?;
        let rev = rev.trim();
        if rev.is_empty() || rev.contains(['/', '\\']) || rev.starts_with('.') {
            return Err(ModelError::Format {
                path: refs_main,
                problem: FormatProblem::BadSnapshotName { rev: rev.to_string() },
            });
        }
        let snap = snapshots.join(rev);
        if !is_dir(&snap)? {
            return Err(ModelError::Io {
                path: snap,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the snapshot refs/main names is not in snapshots/",
                ),
            });
        }
        return Ok(snap);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&snapshots).map_err(io_err(&snapshots))? {
        let entry = entry.map_err(io_err(&snapshots))?;
        if is_dir(&entry.path())? {
            found.push(entry.path());
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        count => Err(ModelError::Format {
            path: snapshots,
            problem: FormatProblem::AmbiguousSnapshots { count },
        }),
    }
}

/// Whether `path` exists, following symlinks; a link that cannot be followed (a loop, a missing blob) is an
/// error naming it rather than a silent "absent".
pub fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        // NotADirectory: a path below a file (`final_model.pt/snapshots`) is simply absent.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(io_err(path)(e)),
        Ok(_) => std::fs::metadata(path).map(|_| true).map_err(io_err(path)),
    }
}

fn is_dir(path: &Path) -> Result<bool> {
    Ok(exists(path)? && path.is_dir())
}

/// The GPT-2 shapes `synth --shape` writes in Hugging Face's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpt2Shape {
    /// GPT-2 small: d_model 768, 12 layers, 12 heads, context 1024, vocab 50257 (124M parameters).
    Small,
    /// d_model 64, 2 layers, 4 heads, context 256, vocab 256: the fixture's shape, for tests.
    Tiny,
}

impl Gpt2Shape {
    /// `config.json` as `save_pretrained` writes it for this shape (tied embeddings, `gelu_new`).
    pub fn config_json(self) -> serde_json::Value {
        let (n_embd, n_layer, n_head, n_positions, vocab_size) = match self {
            Gpt2Shape::Small => (768, 12, 12, 1024, 50257),
            Gpt2Shape::Tiny => (64, 2, 4, 256, 256),
        };
        serde_json::json!({
            "activation_function": "gelu_new",
            "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1,
            "embd_pdrop": 0.1,
            "initializer_range": 0.02,
            "layer_norm_epsilon": 1e-5,
            "model_type": "gpt2",
            "n_embd": n_embd,
            "n_head": n_head,
            "n_inner": null,
            "n_layer": n_layer,
            "n_positions": n_positions,
            "resid_pdrop": 0.1,
            "scale_attn_by_inverse_layer_idx": false,
            "scale_attn_weights": true,
            "tie_word_embeddings": true,
            "vocab_size": vocab_size,
        })
    }
}

/// Every tensor of a random GPT-2 of `cfg` under Hugging Face's names (Conv1D weights `[in, out]`, no
/// `lm_head.weight`), deterministic in `seed`: GPT-2's initialisation (N(0, 0.02) matrices and token embeddings,
/// N(0, 0.01) positions, output projections scaled by 1/sqrt(2·n_layer)) with N(0, 0.02) biases and N(1, 0.1)
/// norm gains, so that every path carries signal.
pub fn synth_tensors(cfg: &Config, seed: u64) -> Result<BTreeMap<String, Stored>> {
    use candle_core::{Device, Tensor};
    let mut rng = circuitscope_kernels::rng::SplitMix64::new(seed);
    let mut normal = |n: usize, std: f32, mean: f32| -> Vec<f32> {
        // Box-Muller, both outputs used.
        let mut v = Vec::with_capacity(n + 1);
        while v.len() < n {
            let u1 = (1.0 - rng.next_f64()).max(f64::MIN_POSITIVE);
            let u2 = rng.next_f64();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            v.push(mean + std * (r * a.cos()) as f32);
            v.push(mean + std * (r * a.sin()) as f32);
        }
        v.truncate(n);
        v
    };
    let shapes = expected_shapes(cfg);
    let proj_std = 0.02 / (2.0 * cfg.n_layer as f32).sqrt();
    let mut names: Vec<&String> = shapes.keys().filter(|n| n.as_str() != wn::LM_HEAD).collect();
    names.sort();
    let mut out = BTreeMap::new();
    for name in names {
        let shape = &shapes[name];
        let n = shape.iter().product();
        let values = if name.ends_with("c_proj.weight") {
            normal(n, proj_std, 0.0)
        } else if name.ends_with(".weight") && (name.contains(".ln_") || name.starts_with("ln_f")) {
            normal(n, 0.1, 1.0)
        } else if name == "wpe.weight" {
            normal(n, 0.01, 0.0)
        } else {
            normal(n, 0.02, 0.0)
        };
        let t = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?;
        out.insert(format!("{PREFIX}{name}"), Stored::Dense(t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_maps_onto_ours() {
        let c = config_from_json_str(
            r#"{"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_inner": null,
                "n_positions": 64, "vocab_size": 256, "activation_function": "gelu_new"}"#,
        )
        .unwrap()
        .config;
        assert_eq!((c.d_model, c.d_head, c.d_mlp, c.block_size), (64, 16, 256, 64));
        assert!(c.bias && c.ln_bias && !c.rms_norm && !c.sink && c.tied_unembed);
        assert_eq!(c.activation_type, super::super::config::Activation::GeluNew);
        assert_eq!(c.attn_scale(1), 0.25);
        let c = config_from_json_str(r#"{"model_type": "gpt2", "scale_attn_by_inverse_layer_idx": true}"#)
            .unwrap()
            .config;
        assert_eq!((c.d_model, c.n_layer, c.vocab_size), (768, 12, 50257));
        assert_eq!(c.attn_scale(1), 1.0 / (8.0 * 2.0));
    }

    #[test]
    fn refusals_name_the_field() {
        for (json, field) in [
            (r#"{"model_type": "llama"}"#, "model_type"),
            (
                r#"{"model_type": "gpt2", "activation_function": "swish"}"#,
                "activation_function",
            ),
            (
                r#"{"model_type": "gpt2", "layer_norm_epsilon": 1e-6}"#,
                "layer_norm_epsilon",
            ),
            (
                r#"{"model_type": "gpt2", "add_cross_attention": true}"#,
                "add_cross_attention",
            ),
            (r#"{"model_type": "gpt2", "n_embd": -3}"#, "n_embd"),
        ] {
            let e = config_from_json_str(json).err().unwrap();
            assert!(e.to_string().contains(field), "{json}: {e}");
        }
        assert!(matches!(
            config_from_json_str(r#"{"model_type": "gpt2", "n_embd": -3}"#),
            Err(HfConfigProblem::NotUint { field: "n_embd", .. })
        ));
        assert!(matches!(
            config_from_json_str(r#"{"model_type": "gpt2", "activation_function": 3}"#),
            Err(HfConfigProblem::Activation { found: None })
        ));
        assert!(config_from_json_str(r#"{"model_type": "gpt2", "n_embd": 65}"#).is_err());
    }

    #[test]
    fn detects_hugging_face_configs() {
        assert!(is_hf_config(r#"{"model_type": "gpt2"}"#));
        assert!(!is_hf_config(r#"{"d_model": 64}"#));
        assert!(!is_hf_config("not json"));
    }

    #[test]
    fn a_hub_cache_without_refs_main_counts_its_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        for rev in ["aaa", "bbb"] {
            std::fs::create_dir_all(dir.path().join("snapshots").join(rev)).unwrap();
        }
        let err = resolve_hub_cache(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::Format {
                    problem: FormatProblem::AmbiguousSnapshots { count: 2 },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().ends_with(
            "2 snapshots and no refs/main to choose between them; pass the snapshot folder itself (snapshots/<rev>)"
        ));
        std::fs::create_dir_all(dir.path().join("refs")).unwrap();
        std::fs::write(dir.path().join("refs").join("main"), "../x").unwrap();
        match resolve_hub_cache(dir.path()) {
            Err(ModelError::Format {
                problem: FormatProblem::BadSnapshotName { rev },
                ..
            }) => assert_eq!(rev, "../x"),
            other => panic!("{other:?}"),
        }
    }
}
