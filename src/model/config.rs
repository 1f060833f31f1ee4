//! The model configuration: our `config.json` and the reference's `beeg_config.json` (spec A.1).
//!
//! Both files carry the same keys; ours adds `format_version`. Unknown keys are ignored with a warning, because
//! older reference jsons carry keys that later versions popped (spec A.5).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{io_err, ModelError, Result};

/// The newest config format this build reads and writes.
pub const CONFIG_FORMAT_VERSION: u32 = 1;

/// The MLP's nonlinearity (`activation_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// GELU in its exact erf form (not the tanh approximation).
    Gelu,
    /// ReLU.
    Relu,
    /// GELU in its tanh approximation, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`: GPT-2's `gelu_new`.
    #[serde(rename = "gelu_new")]
    GeluNew,
}

/// What is applied to the residual stream after each sublayer's add (`residual_activation_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResidualActivation {
    /// Nothing: the plain residual stream.
    Identity,
    /// ReLU, which keeps the residual non-negative.
    Relu,
}

/// The places where AbsTopK activation sparsity may run (spec A.3), in forward order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loctype {
    /// The normalised input of attention (`attn_in`; width `d_model_in`).
    AttnIn,
    /// The keys (`attn_k`; width `n_head * d_head`).
    AttnK,
    /// The queries (`attn_q`; width `n_head * d_head`).
    AttnQ,
    /// The values (`attn_v`; width `n_head * d_head`).
    AttnV,
    /// Attention's output projection, before the residual add (`attn_out`; width `d_model`).
    AttnOut,
    /// The residual after attention's add (`resid_post_attn`).
    ResidPostAttn,
    /// The normalised input of the MLP (`mlp_in`; width `d_model_in`).
    MlpIn,
    /// The MLP's hidden neurons after the nonlinearity (`mlp_neuron`; width `d_mlp`).
    MlpNeuron,
    /// The MLP's output projection, before the residual add (`mlp_out`; width `d_model`).
    MlpOut,
    /// The residual after the MLP's add (`resid_post_mlp`).
    ResidPostMlp,
}

impl Loctype {
    /// Every loctype, in forward order.
    pub const ALL: [Loctype; 10] = [
        Loctype::AttnIn,
        Loctype::AttnK,
        Loctype::AttnQ,
        Loctype::AttnV,
        Loctype::AttnOut,
        Loctype::ResidPostAttn,
        Loctype::MlpIn,
        Loctype::MlpNeuron,
        Loctype::MlpOut,
        Loctype::ResidPostMlp,
    ];

    /// The name used in `afrac_loctypes` (e.g. `"attn_in"`).
    pub fn name(self) -> &'static str {
        match self {
            Loctype::AttnIn => "attn_in",
            Loctype::AttnK => "attn_k",
            Loctype::AttnQ => "attn_q",
            Loctype::AttnV => "attn_v",
            Loctype::AttnOut => "attn_out",
            Loctype::ResidPostAttn => "resid_post_attn",
            Loctype::MlpIn => "mlp_in",
            Loctype::MlpNeuron => "mlp_neuron",
            Loctype::MlpOut => "mlp_out",
            Loctype::ResidPostMlp => "resid_post_mlp",
        }
    }
}

/// Every field of the reference `GPTConfig` (spec A.1), with `d_head` and `d_mlp` resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Longest sequence T the model accepts; rows of the positional table.
    pub block_size: usize,
    /// Number of token ids V (2048 for the paper's tinypython_2k models).
    pub vocab_size: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Channels per head; the attention width is `n_head * d_head`, which may differ from `d_model`.
    pub d_head: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Training dropout probability; no effect at inference.
    pub dropout: f64,
    /// Whether the four Linear layers (c_attn, attn c_proj, c_fc, mlp c_proj) carry biases.
    pub bias: bool,
    /// Whether LayerNorms carry a bias; ignored when `rms_norm` is set.
    pub ln_bias: bool,
    /// RMSNorm (weight only, eps = f32 machine epsilon) instead of LayerNorm everywhere.
    pub rms_norm: bool,
    /// What is applied to the residual after each sublayer's add.
    pub residual_activation_type: ResidualActivation,
    /// The MLP's nonlinearity.
    pub activation_type: Activation,
    /// Fraction of activations AbsTopK keeps, `k = floor(afrac * width)`; `None` turns AbsTopK off.
    pub afrac: Option<f64>,
    /// Comma-separated [`Loctype`] names where AbsTopK runs (exact string match per item).
    pub afrac_loctypes: String,
    /// The reference's NaN assertions; no effect on outputs.
    pub debug_nans: bool,
    /// Whether the unembedding reuses the token embedding (`lm_head.weight` = `wte.weight`).
    pub tied_unembed: bool,
    /// Name of the tokenizer the model was trained with (e.g. `"tinypython_2k"`).
    pub tokenizer_name: String,
    /// Training memory option of the reference; no effect on outputs.
    pub grad_checkpointing: bool,
    /// Hidden width of the MLP (`4 * d_model` when the json omits it; old jsons say `n_mlp`).
    pub d_mlp: usize,
    /// Whether a dense `(V, V)` bigram table adds the current token's row to the logits.
    pub enable_bigram_table: bool,
    /// Whether the bigram table was trained (a parameter) or fixed (a buffer); same tensor either way.
    pub learnable_bigram_table: bool,
    /// Width of the concatenated positional embedding; `Some` selects the cat-pos-emb variant.
    pub d_pos_emb: Option<usize>,
    /// Training-only option of the cat-pos-emb variant; the checkpoint's `wpe` is authoritative.
    pub dropout_cat_pos_emb: bool,
    /// Initialisation-only option of the cat-pos-emb variant; the checkpoint's `wpe` is authoritative.
    pub sinusoidal_cat_pos_emb: bool,
    /// A reference training switch, unused at inference.
    pub enable_sparse_kernels: bool,
    /// The reference's SDPA attention path; mathematically equal to the manual path here.
    pub flash: bool,
    /// Whether each head has a learned attention-sink logit (always applied by this engine when set).
    pub sink: bool,
    /// Whether attention scores are divided by `sqrt(d_head)` (GPT-2's `scale_attn_weights`; always true in the
    /// reference).
    pub scale_attn_weights: bool,
    /// Whether block `l`'s attention scores are further divided by `l + 1` (GPT-2's
    /// `scale_attn_by_inverse_layer_idx`, as in Mistral's GPT-2 runs).
    pub scale_attn_by_inverse_layer_idx: bool,
}

/// The json as written: everything optional so that the reference's defaults apply to what is absent.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    block_size: Option<usize>,
    vocab_size: Option<usize>,
    n_layer: Option<usize>,
    n_head: Option<usize>,
    d_head: Option<usize>,
    d_model: Option<usize>,
    dropout: Option<f64>,
    bias: Option<bool>,
    ln_bias: Option<bool>,
    rms_norm: Option<bool>,
    residual_activation_type: Option<ResidualActivation>,
    activation_type: Option<Activation>,
    afrac: Option<f64>,
    afrac_loctypes: Option<String>,
    debug_nans: Option<bool>,
    tied_unembed: Option<bool>,
    tokenizer_name: Option<String>,
    grad_checkpointing: Option<bool>,
    d_mlp: Option<usize>,
    enable_bigram_table: Option<bool>,
    learnable_bigram_table: Option<bool>,
    d_pos_emb: Option<usize>,
    dropout_cat_pos_emb: Option<bool>,
    sinusoidal_cat_pos_emb: Option<bool>,
    enable_sparse_kernels: Option<bool>,
    flash: Option<bool>,
    sink: Option<bool>,
    scale_attn_weights: Option<bool>,
    scale_attn_by_inverse_layer_idx: Option<bool>,
    use_tied_aux_matrix: Option<bool>,
    format_version: Option<u32>,
}

const KNOWN_KEYS: &[&str] = &[
    "block_size",
    "vocab_size",
    "n_layer",
    "n_head",
    "d_head",
    "d_model",
    "dropout",
    "bias",
    "ln_bias",
    "rms_norm",
    "residual_activation_type",
    "activation_type",
    "afrac",
    "afrac_loctypes",
    "debug_nans",
    "tied_unembed",
    "tokenizer_name",
    "grad_checkpointing",
    "d_mlp",
    "enable_bigram_table",
    "learnable_bigram_table",
    "d_pos_emb",
    "dropout_cat_pos_emb",
    "sinusoidal_cat_pos_emb",
    "enable_sparse_kernels",
    "flash",
    "sink",
    "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx",
    "use_tied_aux_matrix",
    "format_version",
];

/// Why a config json describes no model this build can run. The file name is added by [`ModelError::Config`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A Hugging Face GPT-2 `config.json` this engine would compute differently (the problem names the field).
    #[error(transparent)]
    HuggingFace(super::hf_gpt2::HfConfigProblem),
    /// The text is not json, or a key holds a value of the wrong type.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The json is valid but not an object.
    #[error("expected a json object")]
    NotObject,
    /// The file was written by a newer build.
    #[error("format_version {found} is newer than this circuitscope reads ({supported}); upgrade circuitscope")]
    NewerVersion {
        /// The `format_version` in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// `use_tied_aux_matrix: true`, which the reference itself refuses.
    #[error("use_tied_aux_matrix=true is not supported (the reference asserts it is false)")]
    TiedAuxMatrix,
    /// A size that must be positive is zero.
    #[error("{keys} must be positive")]
    NotPositive {
        /// The keys of which one or more is zero.
        keys: &'static str,
    },
    /// `d_model` does not split into `n_head` heads.
    #[error("d_model {d_model} is not divisible by n_head {n_head}")]
    HeadsDoNotDivide {
        /// The residual width.
        d_model: usize,
        /// The head count.
        n_head: usize,
    },
    /// `afrac` is not a fraction.
    #[error("afrac {0} is outside [0, 1]")]
    Afrac(f64),
    /// One dimension is beyond what this build supports.
    #[error("{key} {value} is larger than circuitscope supports ({max})")]
    TooLarge {
        /// The config key.
        key: &'static str,
        /// Its value in the file.
        value: usize,
        /// The largest value accepted.
        max: usize,
    },
    /// A matrix the dimensions imply has more elements than this build supports.
    #[error("{what} is larger than circuitscope supports ({max} elements)")]
    MatrixTooLarge {
        /// The product of dimensions, in words (e.g. `vocab_size * d_model`).
        what: &'static str,
        /// The most elements accepted.
        max: usize,
    },
}

/// A parsed config plus what the parser had to say about the file (unknown keys).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The resolved configuration.
    pub config: Config,
    /// One line per ignored key or other oddity the parser noticed, for the user to see.
    pub warnings: Vec<String>,
}

/// Most layers a config may claim.
const MAX_LAYERS: usize = 4096;
/// Largest single dimension (width, vocabulary, context) a config may claim.
const MAX_WIDTH: usize = 1 << 24;
/// Most elements of any one weight matrix a config may imply (16 GB of f32).
const MAX_MATRIX: usize = 1 << 32;

impl Config {
    /// Reads `config.json` or `beeg_config.json`.
    pub fn load(path: &Path) -> Result<LoadedConfig> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_json_str(&text).map_err(|source| ModelError::Config {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses a config json; the error is a message without the file name.
    pub fn from_json_str(text: &str) -> std::result::Result<LoadedConfig, ConfigError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(ConfigError::NotObject);
        };
        let mut warnings = Vec::new();
        if let Some(n_mlp) = map.remove("n_mlp") {
            if map.contains_key("d_mlp") {
                warnings.push("both `n_mlp` and `d_mlp` given; using `d_mlp`".to_string());
            } else {
                map.insert("d_mlp".into(), n_mlp);
            }
        }
        let unknown: Vec<String> = map
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            warnings.push(format!("ignoring unknown config key `{key}`"));
            map.remove(&key);
        }
        let raw: RawConfig = serde_json::from_value(serde_json::Value::Object(map))?;
        if let Some(v) = raw.format_version {
            if v > CONFIG_FORMAT_VERSION {
                return Err(ConfigError::NewerVersion {
                    found: v,
                    supported: CONFIG_FORMAT_VERSION,
                });
            }
        }
        if raw.use_tied_aux_matrix == Some(true) {
            return Err(ConfigError::TiedAuxMatrix);
        }
        let d_model = raw.d_model.unwrap_or(768);
        let n_head = raw.n_head.unwrap_or(12);
        if n_head == 0 || d_model == 0 {
            return Err(ConfigError::NotPositive {
                keys: "n_head and d_model",
            });
        }
        if !d_model.is_multiple_of(n_head) {
            return Err(ConfigError::HeadsDoNotDivide { d_model, n_head });
        }
        let config = Config {
            block_size: raw.block_size.unwrap_or(1024),
            vocab_size: raw.vocab_size.unwrap_or(50304),
            n_layer: raw.n_layer.unwrap_or(12),
            n_head,
            d_head: raw.d_head.unwrap_or(d_model / n_head),
            d_model,
            dropout: raw.dropout.unwrap_or(0.0),
            bias: raw.bias.unwrap_or(true),
            ln_bias: raw.ln_bias.unwrap_or(true),
            rms_norm: raw.rms_norm.unwrap_or(false),
            residual_activation_type: raw.residual_activation_type.unwrap_or(ResidualActivation::Identity),
            activation_type: raw.activation_type.unwrap_or(Activation::Gelu),
            afrac: raw.afrac,
            afrac_loctypes: raw
                .afrac_loctypes
                .unwrap_or_else(|| "attn_in,attn_out,mlp_in,mlp_out".into()),
            debug_nans: raw.debug_nans.unwrap_or(false),
            tied_unembed: raw.tied_unembed.unwrap_or(true),
            tokenizer_name: raw.tokenizer_name.unwrap_or_else(|| "tinypython_2k".into()),
            grad_checkpointing: raw.grad_checkpointing.unwrap_or(false),
            d_mlp: raw.d_mlp.unwrap_or(4 * d_model),
            enable_bigram_table: raw.enable_bigram_table.unwrap_or(false),
            learnable_bigram_table: raw.learnable_bigram_table.unwrap_or(false),
            d_pos_emb: raw.d_pos_emb,
            dropout_cat_pos_emb: raw.dropout_cat_pos_emb.unwrap_or(false),
            sinusoidal_cat_pos_emb: raw.sinusoidal_cat_pos_emb.unwrap_or(false),
            enable_sparse_kernels: raw.enable_sparse_kernels.unwrap_or(false),
            flash: raw.flash.unwrap_or(true),
            sink: raw.sink.unwrap_or(false),
            scale_attn_weights: raw.scale_attn_weights.unwrap_or(true),
            scale_attn_by_inverse_layer_idx: raw.scale_attn_by_inverse_layer_idx.unwrap_or(false),
        };
        for name in config.afrac_loctypes.split(',') {
            if !name.is_empty() && !Loctype::ALL.iter().any(|l| l.name() == name) {
                warnings.push(format!(
                    "afrac_loctypes names unknown location `{name}`; it has no effect"
                ));
            }
        }
        if config.block_size == 0 || config.vocab_size == 0 || config.d_head == 0 || config.d_mlp == 0 {
            return Err(ConfigError::NotPositive {
                keys: "block_size, vocab_size, d_head and d_mlp",
            });
        }
        if let Some(a) = config.afrac {
            if !(0.0..=1.0).contains(&a) {
                return Err(ConfigError::Afrac(a));
            }
        }
        config.check_sizes()?;
        Ok(LoadedConfig { config, warnings })
    }

    /// Refuses sizes no real model has before anything is allocated from them: `n_layer` 1e9 once asked for
    /// 176 GB of layer structs before the first missing tensor was noticed. The limits are far above any model
    /// this tool can run, and every matrix's element count must fit comfortably in memory arithmetic.
    fn check_sizes(&self) -> std::result::Result<(), ConfigError> {
        for (key, value, max) in [
            ("n_layer", self.n_layer, MAX_LAYERS),
            ("n_head", self.n_head, MAX_WIDTH),
            ("d_head", self.d_head, MAX_WIDTH),
            ("d_model", self.d_model, MAX_WIDTH),
            ("d_mlp", self.d_mlp, MAX_WIDTH),
            ("d_pos_emb", self.d_pos_emb.unwrap_or(0), MAX_WIDTH),
            ("vocab_size", self.vocab_size, MAX_WIDTH),
            ("block_size", self.block_size, MAX_WIDTH),
        ] {
            if value > max {
                return Err(ConfigError::TooLarge { key, value, max });
            }
        }
        let products = [
            ("n_head * d_head", self.n_head.checked_mul(self.d_head)),
            (
                "3 * attention width * input width",
                self.attn_width_checked()
                    .and_then(|a| a.checked_mul(3 * self.d_model_in())),
            ),
            ("d_mlp * input width", self.d_mlp.checked_mul(self.d_model_in())),
            ("vocab_size * d_model", self.vocab_size.checked_mul(self.d_model)),
            (
                "vocab_size^2 (bigram table)",
                if self.enable_bigram_table {
                    self.vocab_size.checked_mul(self.vocab_size)
                } else {
                    Some(0)
                },
            ),
            (
                "block_size * input width",
                self.block_size.checked_mul(self.d_model_in()),
            ),
        ];
        for (what, n) in products {
            match n {
                Some(n) if n <= MAX_MATRIX => {}
                _ => return Err(ConfigError::MatrixTooLarge { what, max: MAX_MATRIX }),
            }
        }
        Ok(())
    }

    fn attn_width_checked(&self) -> Option<usize> {
        self.n_head.checked_mul(self.d_head)
    }

    /// Our `config.json`: every field explicit, plus the format version.
    pub fn to_json_string(&self) -> String {
        let mut value = serde_json::to_value(self).expect("config serialises");
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("format_version".into(), CONFIG_FORMAT_VERSION.into());
        }
        serde_json::to_string_pretty(&value).expect("config serialises")
    }

    /// Width of all heads together, A = n_head * d_head.
    pub fn attn_width(&self) -> usize {
        self.n_head * self.d_head
    }

    /// The multiplier of q·k before the softmax in block `layer`: `1/sqrt(d_head)` unless `scale_attn_weights`
    /// is off, divided by `layer + 1` with `scale_attn_by_inverse_layer_idx`.
    pub fn attn_scale(&self, layer: usize) -> f32 {
        let mut scale = if self.scale_attn_weights {
            1.0 / (self.d_head as f32).sqrt()
        } else {
            1.0
        };
        if self.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f32;
        }
        scale
    }

    /// The residual width that the sublayers read: d_model, plus d_pos_emb in the cat-pos-emb variant.
    pub fn d_model_in(&self) -> usize {
        self.d_model + self.d_pos_emb.unwrap_or(0)
    }

    /// The AbsTopK k for a vector of width `dim` at `loc`, or None where AbsTopK does not run there.
    pub fn topk_at(&self, loc: Loctype, dim: usize) -> Option<usize> {
        let afrac = self.afrac?;
        self.afrac_loctypes
            .split(',')
            .any(|l| l == loc.name())
            .then(|| (afrac * dim as f64).floor() as usize)
    }

    /// Number of pruning nodes: the 8 hook sites per layer plus final_resid (spec B).
    pub fn num_nodes(&self) -> usize {
        self.n_layer * (2 * self.d_model_in() + 2 * self.d_model + 3 * self.attn_width() + self.d_mlp) + self.d_model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_rename() {
        let c =
            Config::from_json_str(r#"{"n_layer": 2, "d_model": 16, "n_head": 4, "n_mlp": 40, "rtopk": 3}"#).unwrap();
        assert_eq!(c.config.d_mlp, 40);
        assert_eq!(c.config.d_head, 4);
        assert!(c.config.tied_unembed);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("rtopk"));
    }

    #[test]
    fn topk_membership_is_exact() {
        let mut c = Config::from_json_str(r#"{"d_model": 16, "n_head": 4, "afrac": 0.25}"#)
            .unwrap()
            .config;
        assert_eq!(c.topk_at(Loctype::AttnIn, 16), Some(4));
        assert_eq!(c.topk_at(Loctype::AttnQ, 16), None);
        c.afrac_loctypes = "attn_q".into();
        assert_eq!(c.topk_at(Loctype::AttnQ, 10), Some(2));
    }

    #[test]
    fn round_trip_and_newer_version() {
        let c = Config::from_json_str(r#"{"d_model": 16, "n_head": 4}"#).unwrap().config;
        let back = Config::from_json_str(&c.to_json_string()).unwrap();
        assert_eq!(back.config, c);
        assert!(back.warnings.is_empty());
        let err = Config::from_json_str(r#"{"format_version": 99}"#).unwrap_err();
        assert!(matches!(err, ConfigError::NewerVersion { found: 99, .. }), "{err}");
    }

    #[test]
    fn bad_values() {
        assert!(Config::from_json_str(r#"{"d_model": 15, "n_head": 4}"#).is_err());
        assert!(Config::from_json_str(r#"{"activation_type": "swish"}"#).is_err());
        assert!(Config::from_json_str("[1]").is_err());
    }

    #[test]
    fn absurd_sizes_are_refused_before_allocation() {
        let e = Config::from_json_str(r#"{"n_layer": 1000000000}"#).err().unwrap();
        assert!(e.to_string().contains("n_layer 1000000000"), "{e}");
        assert!(matches!(e, ConfigError::TooLarge { key: "n_layer", .. }), "{e}");
        let e = Config::from_json_str(r#"{"vocab_size": 100000, "enable_bigram_table": true}"#)
            .err()
            .unwrap();
        assert!(matches!(e, ConfigError::MatrixTooLarge { .. }), "{e}");
        assert!(e.to_string().contains("bigram"), "{e}");
        assert!(Config::from_json_str(r#"{"n_layer": 48, "d_model": 4096, "n_head": 32}"#).is_ok());
    }
}
