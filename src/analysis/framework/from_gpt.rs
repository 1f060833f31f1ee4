//! Fills the framework lens' [`FrameworkWeights`] from our weight-sparse GPT: the model's `(out, in)` linear
//! layers become TransformerLens' per-head `(d_model, d_head)` and `(d_head, d_model)` matrices.

use candle_core::Tensor;

use super::mat::Mat;
use super::weights::{FrameworkWeights, HeadWeights, LayerWeights, MlpWeights, Nonlinearities, NormKind, NormParams};
use super::{FrameworkError, UnsupportedModel};
use crate::model::config::{Loctype, ResidualActivation};
use crate::model::norm::{Norm, LAYER_NORM_EPS, RMS_EPS};
use crate::model::Gpt;

fn values(t: &Tensor) -> Result<Vec<f32>, FrameworkError> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// A `(rows, cols)` tensor as a matrix.
fn mat(t: &Tensor) -> Result<Mat, FrameworkError> {
    let (r, c) = t.dims2()?;
    Mat::new(r, c, values(t)?)
}

fn bias(b: &Option<Tensor>, n: usize) -> Result<Vec<f32>, FrameworkError> {
    match b {
        Some(t) => values(t),
        None => Ok(vec![0.0; n]),
    }
}

fn norm(n: &Norm) -> Result<NormParams, FrameworkError> {
    Ok(match n {
        Norm::Rms { weight } => NormParams {
            w: values(weight)?,
            b: None,
        },
        Norm::Layer { weight, bias } => NormParams {
            w: values(weight)?,
            b: bias.as_ref().map(values).transpose()?,
        },
    })
}

/// The model's weights in the framework lens' layout, with the nonlinearities its config turns on.
pub fn from_gpt(model: &Gpt) -> Result<FrameworkWeights, FrameworkError> {
    let cfg = &model.config;
    if cfg.d_pos_emb.is_some() {
        return Err(FrameworkError::Unsupported(UnsupportedModel::CatPosEmb));
    }
    let dense = model.dense_weights()?;
    let (d, a, dh) = (cfg.d_model, cfg.attn_width(), cfg.d_head);
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for blk in &dense.blocks {
        let qkv = mat(&blk.c_attn.0)?; // (3A, D)
        let qkv_b = bias(&blk.c_attn.1, 3 * a)?;
        let proj = mat(&blk.attn_proj.0)?; // (D, A)
        let heads = (0..cfg.n_head)
            .map(|h| {
                // Rows of the (3A, D) projection for one head's q, k or v, transposed to (D, d_head).
                let read = |part: usize| {
                    let mut m = Mat::zeros(d, dh);
                    for c in 0..dh {
                        let row = qkv.row(part * a + h * dh + c);
                        for (i, &x) in row.iter().enumerate() {
                            m.data[i * dh + c] = x;
                        }
                    }
                    m
                };
                let b = |part: usize| qkv_b[part * a + h * dh..part * a + (h + 1) * dh].to_vec();
                let mut w_o = Mat::zeros(dh, d);
                for c in 0..dh {
                    for i in 0..d {
                        w_o.data[c * d + i] = proj.at(i, h * dh + c);
                    }
                }
                HeadWeights {
                    w_q: read(0),
                    w_k: read(1),
                    w_v: read(2),
                    w_o,
                    b_q: b(0),
                    b_k: b(1),
                    b_v: b(2),
                }
            })
            .collect();
        layers.push(LayerWeights {
            ln1: Some(norm(&blk.ln_1)?),
            ln2: Some(norm(&blk.ln_2)?),
            heads,
            b_o: bias(&blk.attn_proj.1, d)?,
            mlp: Some(MlpWeights {
                w_in: mat(&blk.c_fc.0)?.t(),
                b_in: bias(&blk.c_fc.1, cfg.d_mlp)?,
                w_out: mat(&blk.mlp_proj.0)?.t(),
                b_out: bias(&blk.mlp_proj.1, d)?,
            }),
            sink_logit: blk.sink_logit.as_ref().map(values).transpose()?,
        });
    }
    let at = |loc: Loctype| cfg.topk_at(loc, 1).is_some();
    let w = FrameworkWeights {
        norm: if cfg.rms_norm {
            NormKind::Rms { eps: RMS_EPS as f32 }
        } else {
            NormKind::Layer {
                eps: LAYER_NORM_EPS as f32,
            }
        },
        w_e: mat(&dense.wte)?,
        w_pos: mat(&dense.wpe)?,
        w_u: mat(&dense.lm_head)?.t(),
        b_u: values(&dense.final_logits_bias)?,
        bigram: dense.bigram_table.as_ref().map(mat).transpose()?,
        ln_final: Some(norm(&dense.ln_f)?),
        layers,
        nonlinear: Nonlinearities {
            topk_on_reads: at(Loctype::AttnIn) || at(Loctype::MlpIn),
            topk_on_values: at(Loctype::AttnV),
            topk_on_writes: at(Loctype::AttnOut)
                || at(Loctype::MlpOut)
                || at(Loctype::ResidPostAttn)
                || at(Loctype::ResidPostMlp),
            residual_activation: cfg.residual_activation_type == ResidualActivation::Relu,
        },
    };
    w.check()?;
    Ok(w)
}
