//! The one table of checkpoint tensor names of the reference's weight-sparse GPT (`transformer.h.…`), used by the
//! loader, the layout, the trainer, the pruner and the circuit graph, so that no other file spells a name.
//!
//! Another model family (GPT-2's Conv1D checkpoints) gets its own table beside this one.

/// Token embedding (V, D); also the unembedding of tied models without `lm_head.weight`.
pub const WTE: &str = "transformer.wte.weight";
/// Positional embedding (block_size, D or d_pos_emb).
pub const WPE: &str = "transformer.wpe.weight";
/// Prefix of the final norm's tensors.
pub const LN_F: &str = "transformer.ln_f";
/// Unembedding (V, D).
pub const LM_HEAD: &str = "lm_head.weight";
/// Per-token logit bias (V).
pub const FINAL_LOGITS_BIAS: &str = "final_logits_bias";
/// Bigram logit table (V, V).
pub const BIGRAM_TABLE: &str = "bigram_table";

/// The four weight matrices of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockLinear {
    /// q, k and v stacked: (3A, Din).
    AttnQkv,
    /// Attention output projection: (D, A).
    AttnOut,
    /// MLP input: (F, Din).
    MlpIn,
    /// MLP output: (D, F).
    MlpOut,
}

impl BlockLinear {
    /// The four in checkpoint order.
    pub const ALL: [BlockLinear; 4] = [
        BlockLinear::AttnQkv,
        BlockLinear::AttnOut,
        BlockLinear::MlpIn,
        BlockLinear::MlpOut,
    ];

    /// The module path inside a block, e.g. `attn.c_attn`.
    pub const fn module(self) -> &'static str {
        match self {
            BlockLinear::AttnQkv => "attn.c_attn",
            BlockLinear::AttnOut => "attn.c_proj",
            BlockLinear::MlpIn => "mlp.c_fc",
            BlockLinear::MlpOut => "mlp.c_proj",
        }
    }

    /// Whether the matrix writes to the residual stream (the reference scales its initialisation).
    pub const fn writes_residual(self) -> bool {
        matches!(self, BlockLinear::AttnOut | BlockLinear::MlpOut)
    }
}

/// The norms of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockNorm {
    /// Before attention.
    Ln1,
    /// Before the MLP.
    Ln2,
    /// Of the positional channels before attention (cat-pos-emb variant).
    LnP1,
    /// Of the positional channels before the MLP (cat-pos-emb variant).
    LnP2,
}

impl BlockNorm {
    /// The module name inside a block, e.g. `ln_1`.
    pub const fn module(self) -> &'static str {
        match self {
            BlockNorm::Ln1 => "ln_1",
            BlockNorm::Ln2 => "ln_2",
            BlockNorm::LnP1 => "ln_p1",
            BlockNorm::LnP2 => "ln_p2",
        }
    }
}

/// The prefix of block `layer`'s tensors: `transformer.h.<layer>`.
pub fn block(layer: usize) -> String {
    format!("transformer.h.{layer}")
}

/// The prefix of one of block `layer`'s linear layers, e.g. `transformer.h.0.attn.c_attn`.
pub fn linear(layer: usize, which: BlockLinear) -> String {
    format!("{}.{}", block(layer), which.module())
}

/// The weight matrix of one of block `layer`'s linear layers.
pub fn linear_weight(layer: usize, which: BlockLinear) -> String {
    format!("{}.weight", linear(layer, which))
}

/// The bias of one of block `layer`'s linear layers.
pub fn linear_bias(layer: usize, which: BlockLinear) -> String {
    format!("{}.bias", linear(layer, which))
}

/// The prefix of one of block `layer`'s norms, e.g. `transformer.h.0.ln_1`.
pub fn norm(layer: usize, which: BlockNorm) -> String {
    format!("{}.{}", block(layer), which.module())
}

/// Block `layer`'s per-head attention-sink logits (n_head).
pub fn sink_logit(layer: usize) -> String {
    format!("{}.attn.attn_imp.sink_logit", block(layer))
}

/// Whether `name` is a 2-D weight that a linear layer multiplies by (a block's four matrices or the unembedding).
pub fn is_linear_weight(name: &str) -> bool {
    name == LM_HEAD
        || BlockLinear::ALL.iter().any(|m| {
            // By the module's last part only (`c_attn`), as converted checkpoints may nest blocks differently.
            let leaf = m.module().rsplit('.').next().unwrap_or(m.module());
            name.strip_suffix(".weight").is_some_and(|p| p.ends_with(leaf))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_reference_checkpoints() {
        assert_eq!(
            linear_weight(1, BlockLinear::AttnQkv),
            "transformer.h.1.attn.c_attn.weight"
        );
        assert_eq!(linear_bias(0, BlockLinear::MlpOut), "transformer.h.0.mlp.c_proj.bias");
        assert_eq!(norm(3, BlockNorm::LnP2), "transformer.h.3.ln_p2");
        assert_eq!(sink_logit(2), "transformer.h.2.attn.attn_imp.sink_logit");
        assert!(is_linear_weight("transformer.h.4.mlp.c_fc.weight"));
        assert!(is_linear_weight(LM_HEAD));
        assert!(!is_linear_weight(WTE));
        assert!(!is_linear_weight("transformer.h.4.mlp.c_fc.bias"));
    }
}
