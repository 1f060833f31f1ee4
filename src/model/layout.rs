//! The tensors of a checkpoint for a config (spec A.5): names, shapes and roles. The loader, the synthetic model
//! writer and the trainer's initialisation all follow this one list.

use super::config::Config;
use super::weight_names::{self as wn, BlockLinear, BlockNorm};

/// What a tensor is for; decides its initialisation and whether training keeps it weight-sparse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    /// wte, wpe and lm_head.
    Embedding,
    /// c_attn, attn c_proj, c_fc, mlp c_proj weights; `output` marks the projections into the residual.
    Matrix {
        /// True for attn c_proj and mlp c_proj, whose outputs are added to the residual stream.
        output: bool,
    },
    /// Linear biases.
    Bias,
    /// Norm gains (`ln_1`, `ln_2`, `ln_f`, and `ln_p1`/`ln_p2` in cat-pos-emb models).
    NormWeight,
    /// LayerNorm biases (only when `ln_bias` and not `rms_norm`).
    NormBias,
    /// Per-head attention-sink logits, `(n_head)`.
    SinkLogit,
    /// The dense `(V, V)` bigram table added to the logits.
    BigramTable,
    /// The `(V)` bias added to the final logits.
    FinalLogitsBias,
}

impl TensorRole {
    /// The reference keeps these weight-sparse in training (`is_sparse_param`): every matrix, embedding and
    /// Linear bias; never norms, sinks, the bigram table or the logits bias.
    pub fn is_sparse(self) -> bool {
        matches!(
            self,
            TensorRole::Embedding | TensorRole::Matrix { .. } | TensorRole::Bias
        )
    }
}

/// One tensor a model must have: its state-dict name, shape and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// State-dict name, e.g. `transformer.h.0.attn.c_attn.weight`.
    pub name: String,
    /// The shape the config implies.
    pub shape: Vec<usize>,
    /// What the tensor is for, which decides how it is stored and pruned.
    pub role: TensorRole,
}

/// Every tensor a model of `cfg` has, in a stable order. `lm_head.weight` only when untied; `final_logits_bias`
/// always (the loader fills zeros when a checkpoint lacks it).
pub fn tensor_specs(cfg: &Config) -> Vec<TensorSpec> {
    let (v, d, din, a, f) = (
        cfg.vocab_size,
        cfg.d_model,
        cfg.d_model_in(),
        cfg.attn_width(),
        cfg.d_mlp,
    );
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, role: TensorRole| out.push(TensorSpec { name, shape, role });
    let layer_norm_bias = !cfg.rms_norm && cfg.ln_bias;
    push(wn::WTE.into(), vec![v, d], TensorRole::Embedding);
    push(
        wn::WPE.into(),
        vec![cfg.block_size, cfg.d_pos_emb.unwrap_or(d)],
        TensorRole::Embedding,
    );
    for l in 0..cfg.n_layer {
        for ln in [BlockNorm::Ln1, BlockNorm::Ln2] {
            let p = wn::norm(l, ln);
            push(format!("{p}.weight"), vec![d], TensorRole::NormWeight);
            if layer_norm_bias {
                push(format!("{p}.bias"), vec![d], TensorRole::NormBias);
            }
        }
        if let Some(dp) = cfg.d_pos_emb {
            for ln in [BlockNorm::LnP1, BlockNorm::LnP2] {
                let p = wn::norm(l, ln);
                push(format!("{p}.weight"), vec![dp], TensorRole::NormWeight);
                if layer_norm_bias {
                    push(format!("{p}.bias"), vec![dp], TensorRole::NormBias);
                }
            }
        }
        for (which, rows, cols) in [
            (BlockLinear::AttnQkv, 3 * a, din),
            (BlockLinear::AttnOut, d, a),
            (BlockLinear::MlpIn, f, din),
            (BlockLinear::MlpOut, d, f),
        ] {
            push(
                wn::linear_weight(l, which),
                vec![rows, cols],
                TensorRole::Matrix {
                    output: which.writes_residual(),
                },
            );
            if cfg.bias {
                push(wn::linear_bias(l, which), vec![rows], TensorRole::Bias);
            }
        }
        if cfg.sink {
            push(wn::sink_logit(l), vec![cfg.n_head], TensorRole::SinkLogit);
        }
    }
    push(format!("{}.weight", wn::LN_F), vec![d], TensorRole::NormWeight);
    if layer_norm_bias {
        push(format!("{}.bias", wn::LN_F), vec![d], TensorRole::NormBias);
    }
    if !cfg.tied_unembed {
        push(wn::LM_HEAD.into(), vec![v, d], TensorRole::Embedding);
    }
    push(wn::FINAL_LOGITS_BIAS.into(), vec![v], TensorRole::FinalLogitsBias);
    if cfg.enable_bigram_table {
        push(wn::BIGRAM_TABLE.into(), vec![v, v], TensorRole::BigramTable);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_match_the_node_count_widths() {
        let cfg = Config::from_json_str(
            r#"{"n_layer": 2, "d_model": 16, "n_head": 4, "d_head": 8, "d_mlp": 40,
            "vocab_size": 128, "block_size": 32, "sink": true, "rms_norm": true, "tied_unembed": false,
            "enable_bigram_table": true}"#,
        )
        .unwrap()
        .config;
        let specs = tensor_specs(&cfg);
        let find = |n: &str| specs.iter().find(|s| s.name == n).unwrap();
        assert_eq!(find("transformer.h.1.attn.c_attn.weight").shape, vec![96, 16]);
        assert_eq!(
            find("transformer.h.0.mlp.c_proj.weight").role,
            TensorRole::Matrix { output: true }
        );
        assert_eq!(find("bigram_table").shape, vec![128, 128]);
        assert!(specs.iter().all(|s| !s.name.contains("ln_1.bias")));
        assert_eq!(specs.iter().filter(|s| s.role.is_sparse()).count(), 3 + 2 * 8);
    }
}
