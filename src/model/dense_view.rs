//! A loaded model's weights as dense tensors in its own `(out, in)` layout, for lenses that read weights rather
//! than run the model (the framework lens). CSR matrices are materialised; nothing else is copied.

use candle_core::Tensor;

use super::error::Result;
use super::gpt::Gpt;
use super::norm::Norm;

/// One block's weights, dense.
pub struct DenseBlock {
    /// The norm before attention.
    pub ln_1: Norm,
    /// The norm before the MLP.
    pub ln_2: Norm,
    /// `(3A, Din)` q, k and v stacked, and its `(3A)` bias.
    pub c_attn: (Tensor, Option<Tensor>),
    /// `(D, A)` attention output projection and its `(D)` bias.
    pub attn_proj: (Tensor, Option<Tensor>),
    /// `(F, Din)` MLP input and its `(F)` bias.
    pub c_fc: (Tensor, Option<Tensor>),
    /// `(D, F)` MLP output and its `(D)` bias.
    pub mlp_proj: (Tensor, Option<Tensor>),
    /// `(n_head)` sink logits, where the model has sinks.
    pub sink_logit: Option<Tensor>,
}

/// The whole model's weights, dense.
pub struct DenseWeights {
    /// `(V, D)` token embedding.
    pub wte: Tensor,
    /// `(block_size, D)` positional embedding (or `(block_size, d_pos_emb)` in the cat-pos-emb variant).
    pub wpe: Tensor,
    /// The blocks.
    pub blocks: Vec<DenseBlock>,
    /// The final norm.
    pub ln_f: Norm,
    /// `(V, D)` unembedding.
    pub lm_head: Tensor,
    /// `(V)` logit bias.
    pub final_logits_bias: Tensor,
    /// `(V, V)` bigram table, where the model has one.
    pub bigram_table: Option<Tensor>,
}

impl Gpt {
    /// Every weight as a dense tensor (CSR matrices are materialised).
    pub fn dense_weights(&self) -> Result<DenseWeights> {
        let pair = |l: &super::linear::Linear| -> Result<(Tensor, Option<Tensor>)> {
            Ok((l.weight.to_dense()?, l.bias.clone()))
        };
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                Ok(DenseBlock {
                    ln_1: b.ln_1.clone(),
                    ln_2: b.ln_2.clone(),
                    c_attn: pair(&b.attn.c_attn)?,
                    attn_proj: pair(&b.attn.c_proj)?,
                    c_fc: pair(&b.mlp.c_fc)?,
                    mlp_proj: pair(&b.mlp.c_proj)?,
                    sink_logit: b.attn.sink_logit.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DenseWeights {
            wte: self.wte.clone(),
            wpe: self.wpe.clone(),
            blocks,
            ln_f: self.ln_f.clone(),
            lm_head: self.lm_head.weight.to_dense()?,
            final_logits_bias: self.final_logits_bias.clone(),
            bigram_table: self.bigram_table.clone(),
        })
    }
}
