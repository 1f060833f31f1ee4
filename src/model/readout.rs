//! The weights between the residual stream and the logits, and the sublayers' output projections, read out for
//! direct logit attribution (`analysis::logit_attribution`): nothing here runs a forward pass.

use candle_core::Tensor;

use super::config::{Loctype, ResidualActivation};
use super::error::{HookProblem, ModelError, Result};
use super::gpt::Gpt;
use super::norm::{Norm, LAYER_NORM_EPS, RMS_EPS};

/// The final norm as plain numbers: which kind, its gain and bias over d_model channels, and its epsilon.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalNorm {
    /// LayerNorm (centres, then scales) rather than RMSNorm (scales only).
    pub centred: bool,
    /// (D) gain.
    pub weight: Vec<f32>,
    /// (D) bias (LayerNorm with `ln_bias` only).
    pub bias: Option<Vec<f32>>,
    /// The epsilon inside the square root.
    pub eps: f64,
}

impl FinalNorm {
    /// Any norm of the model (the final one, or a block's `ln_1`/`ln_2`) as plain numbers.
    pub fn of(norm: &Norm) -> Result<FinalNorm> {
        let vec = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1()?) };
        Ok(match norm {
            Norm::Rms { weight } => FinalNorm {
                centred: false,
                weight: vec(weight)?,
                bias: None,
                eps: RMS_EPS,
            },
            Norm::Layer { weight, bias } => FinalNorm {
                centred: true,
                weight: vec(weight)?,
                bias: bias.as_ref().map(vec).transpose()?,
                eps: LAYER_NORM_EPS,
            },
        })
    }

    /// The scale the norm applies to residual `x` (D): 1/sqrt(mean(x²) + eps), or 1/sqrt(var(x) + eps) for
    /// LayerNorm. Frozen at this value, the norm is linear in its input (TransformerLens `apply_ln_to_stack`).
    pub fn scale(&self, x: &[f32]) -> f32 {
        self.scale_f64(x) as f32
    }

    /// [`FinalNorm::scale`] in double precision, for sums that must add up exactly (attribution graphs).
    pub fn scale_f64(&self, x: &[f32]) -> f64 {
        let n = x.len().max(1) as f64;
        let mean = if self.centred {
            x.iter().map(|&v| v as f64).sum::<f64>() / n
        } else {
            0.0
        };
        let ms = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        1.0 / (ms + self.eps).sqrt()
    }
}

/// Which sublayer's output projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sublayer {
    /// The attention output projection `c_proj` (D, n_head·d_head).
    Attn,
    /// The MLP output projection `c_proj` (D, d_mlp).
    Mlp,
}

/// A sublayer's output projection as a dense row-major (out = D, inp) matrix and its bias.
#[derive(Debug, Clone, PartialEq)]
pub struct OutProjection {
    /// (D, inp) row-major.
    pub weight: Vec<f32>,
    /// (D).
    pub bias: Option<Vec<f32>>,
    /// Output width (d_model).
    pub out: usize,
    /// Input width (the heads' concatenated outputs, or the neurons).
    pub inp: usize,
}

impl Gpt {
    /// Row `id` of the unembedding (D): a token's logit is this row · the normalised final residual, plus
    /// [`Gpt::logit_bias`] and the bigram table's entry.
    pub fn unembed_row(&self, id: u32) -> Result<Vec<f32>> {
        self.check_vocab(id)?;
        Ok(self.lm_head.weight.row(id as usize)?)
    }

    /// The unembedding bias (`final_logits_bias`) of token `id`; zero in models without one.
    pub fn logit_bias(&self, id: u32) -> Result<f32> {
        self.check_vocab(id)?;
        Ok(self.final_logits_bias.get(id as usize)?.to_scalar::<f32>()?)
    }

    /// Column `id` of the bigram table (V): what the table adds to token `id`'s logit after each token; None in
    /// models without a table.
    pub fn bigram_column(&self, id: u32) -> Result<Option<Vec<f32>>> {
        self.check_vocab(id)?;
        match &self.bigram_table {
            Some(t) => Ok(Some(t.narrow(1, id as usize, 1)?.flatten_all()?.to_vec1()?)),
            None => Ok(None),
        }
    }

    /// The final norm's parameters.
    pub fn final_norm(&self) -> Result<FinalNorm> {
        FinalNorm::of(&self.ln_f)
    }

    /// Block `layer`'s output projection of `which` sublayer, dense.
    pub fn out_projection(&self, layer: usize, which: Sublayer) -> Result<OutProjection> {
        let block = self.blocks.get(layer).ok_or_else(|| ModelError::Hook {
            name: format!("{layer}"),
            problem: HookProblem::NoSuchBlock {
                layer,
                blocks: self.blocks.len(),
            },
        })?;
        let lin = match which {
            Sublayer::Attn => &block.attn.c_proj,
            Sublayer::Mlp => &block.mlp.c_proj,
        };
        let (out, inp) = lin.weight.dims();
        Ok(OutProjection {
            weight: lin.weight.to_dense()?.flatten_all()?.to_vec1()?,
            bias: match &lin.bias {
                Some(b) => Some(b.to_vec1()?),
                None => None,
            },
            out,
            inp,
        })
    }

    /// Why the residual stream is not the plain sum of the embedding and the sublayers' writes, if it is not:
    /// a residual activation or AbsTopK on the residual (then no write has a direct effect of its own).
    pub fn nonlinear_residual(&self) -> Option<&'static str> {
        let cfg = &self.config;
        if cfg.residual_activation_type != ResidualActivation::Identity {
            return Some("the model applies an activation to the residual stream");
        }
        if [Loctype::ResidPostAttn, Loctype::ResidPostMlp]
            .into_iter()
            .any(|l| cfg.topk_at(l, cfg.d_model).is_some())
        {
            return Some("the model runs AbsTopK on the residual stream");
        }
        None
    }

    fn check_vocab(&self, id: u32) -> Result<()> {
        if id as usize >= self.config.vocab_size {
            return Err(ModelError::Hook {
                name: "unembedding".into(),
                problem: HookProblem::TokenOutsideVocab {
                    id,
                    vocab: self.config.vocab_size,
                },
            });
        }
        Ok(())
    }
}
