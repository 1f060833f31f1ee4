//! The tensors of a checkpoint for a config (spec A.5): names, shapes and roles. The loader, the synthetic model
//! writer and the trainer's initialisation all follow this one list.

use super::config::Config;

/// What a tensor is for; decides its initialisation and whether training keeps it weight-sparse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    /// wte, wpe and lm_head.
    Embedding,
    /// c_attn, attn c_proj, c_fc, mlp c_proj weights; `output` marks the projections into the residual.
    Matrix {
        output: bool,
    },
    /// Linear biases.
    Bias,
    NormWeight,
    NormBias,
    SinkLogit,
    BigramTable,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
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
    push("transformer.wte.weight".into(), vec![v, d], TensorRole::Embedding);
    push(
        "transformer.wpe.weight".into(),
        vec![cfg.block_size, cfg.d_pos_emb.unwrap_or(d)],
        TensorRole::Embedding,
    );
    for l in 0..cfg.n_layer {
        let p = format!("transformer.h.{l}");
        for ln in ["ln_1", "ln_2"] {
            push(format!("{p}.{ln}.weight"), vec![d], TensorRole::NormWeight);
            if layer_norm_bias {
                push(format!("{p}.{ln}.bias"), vec![d], TensorRole::NormBias);
            }
        }
        if let Some(dp) = cfg.d_pos_emb {
            for ln in ["ln_p1", "ln_p2"] {
                push(format!("{p}.{ln}.weight"), vec![dp], TensorRole::NormWeight);
                if layer_norm_bias {
                    push(format!("{p}.{ln}.bias"), vec![dp], TensorRole::NormBias);
                }
            }
        }
        for (name, rows, cols, output) in [
            ("attn.c_attn", 3 * a, din, false),
            ("attn.c_proj", d, a, true),
            ("mlp.c_fc", f, din, false),
            ("mlp.c_proj", d, f, true),
        ] {
            push(
                format!("{p}.{name}.weight"),
                vec![rows, cols],
                TensorRole::Matrix { output },
            );
            if cfg.bias {
                push(format!("{p}.{name}.bias"), vec![rows], TensorRole::Bias);
            }
        }
        if cfg.sink {
            push(
                format!("{p}.attn.attn_imp.sink_logit"),
                vec![cfg.n_head],
                TensorRole::SinkLogit,
            );
        }
    }
    push("transformer.ln_f.weight".into(), vec![d], TensorRole::NormWeight);
    if layer_norm_bias {
        push("transformer.ln_f.bias".into(), vec![d], TensorRole::NormBias);
    }
    if !cfg.tied_unembed {
        push("lm_head.weight".into(), vec![v, d], TensorRole::Embedding);
    }
    push("final_logits_bias".into(), vec![v], TensorRole::FinalLogitsBias);
    if cfg.enable_bigram_table {
        push("bigram_table".into(), vec![v, v], TensorRole::BigramTable);
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
