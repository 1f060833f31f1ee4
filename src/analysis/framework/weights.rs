//! The one adapter between model families and the framework lens: a model's weights as TransformerLens lays them
//! out (`x · W`, per head), which each family fills in (our weight-sparse GPT in `from_gpt.rs`; Hugging Face
//! GPT-2 checkpoints the same way). Everything else in `framework/` reads only this struct.

use super::mat::Mat;
use super::{FrameworkError, ShapeProblem};

/// Which normalisation the model uses before each sublayer and before the unembedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// LayerNorm: `(x - mean) / sqrt(var + eps) * w + b`.
    Layer {
        /// The epsilon under the square root.
        eps: f32,
    },
    /// RMSNorm: `x / sqrt(mean(x²) + eps) * w`.
    Rms {
        /// The epsilon under the square root.
        eps: f32,
    },
}

/// A norm's learned parameters: the gain and (LayerNorm only) the bias, each `(d_model)`.
#[derive(Debug, Clone, PartialEq)]
pub struct NormParams {
    /// The gain, `(d_model)`.
    pub w: Vec<f32>,
    /// The bias, `(d_model)`, for LayerNorms with a bias.
    pub b: Option<Vec<f32>>,
}

/// One attention head: its reading matrices `(d_model, d_head)`, writing matrix `(d_head, d_model)` and biases.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadWeights {
    /// `(d_model, d_head)`: q = x · W_Q + b_Q.
    pub w_q: Mat,
    /// `(d_model, d_head)`.
    pub w_k: Mat,
    /// `(d_model, d_head)`.
    pub w_v: Mat,
    /// `(d_head, d_model)`: the head's output is z · W_O.
    pub w_o: Mat,
    /// `(d_head)`.
    pub b_q: Vec<f32>,
    /// `(d_head)`.
    pub b_k: Vec<f32>,
    /// `(d_head)`.
    pub b_v: Vec<f32>,
}

/// An MLP: `out = act(x · W_in + b_in) · W_out + b_out`.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpWeights {
    /// `(d_model, d_mlp)`.
    pub w_in: Mat,
    /// `(d_mlp)`.
    pub b_in: Vec<f32>,
    /// `(d_mlp, d_model)`.
    pub w_out: Mat,
    /// `(d_model)`.
    pub b_out: Vec<f32>,
}

/// One block: norms (None once folded), heads, attention output bias, MLP (None in attention-only models) and
/// the per-head sink logits where the model has sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    /// The norm before attention; None once its parameters are folded into the heads.
    pub ln1: Option<NormParams>,
    /// The norm before the MLP; None once folded, or in attention-only models.
    pub ln2: Option<NormParams>,
    /// The heads, in order.
    pub heads: Vec<HeadWeights>,
    /// `(d_model)` attention output bias.
    pub b_o: Vec<f32>,
    /// The MLP, if the block has one.
    pub mlp: Option<MlpWeights>,
    /// `(n_head)` learned logit of each head's sink slot (zero value vector), where the model has sinks.
    pub sink_logit: Option<Vec<f32>>,
}

/// What the forward does besides linear maps and norms, which limits which weight processing steps are exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nonlinearities {
    /// AbsTopK on the norms' outputs (attention or MLP input): folding a norm gain changes which entries win.
    pub topk_on_reads: bool,
    /// AbsTopK on values, after their bias: folding value biases changes which entries win.
    pub topk_on_values: bool,
    /// AbsTopK on the sublayers' outputs: centring writing weights changes which entries win.
    pub topk_on_writes: bool,
    /// A nonlinearity applied to the residual stream itself (ReLU after each add): nothing is linear in it.
    pub residual_activation: bool,
}

/// A model's weights in TransformerLens' layout; filled by each model family, read by every framework analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameworkWeights {
    /// The norm kind of every norm in the model.
    pub norm: NormKind,
    /// `(vocab, d_model)` token embedding.
    pub w_e: Mat,
    /// `(n_ctx, d_model)` positional embedding, added to the residual.
    pub w_pos: Mat,
    /// `(d_model, vocab)` unembedding.
    pub w_u: Mat,
    /// `(vocab)` unembedding bias.
    pub b_u: Vec<f32>,
    /// `(vocab, vocab)`: the current token's row is added to the logits (weight-sparse GPTs with a bigram table).
    pub bigram: Option<Mat>,
    /// The final norm; None once folded into the unembedding.
    pub ln_final: Option<NormParams>,
    /// The blocks, in order.
    pub layers: Vec<LayerWeights>,
    /// What in the forward is not linear, for the exactness of processing and of linear attributions.
    pub nonlinear: Nonlinearities,
}

impl FrameworkWeights {
    /// Residual width.
    pub fn d_model(&self) -> usize {
        self.w_e.cols
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.w_e.rows
    }

    /// Number of blocks.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Heads per block (the first block's count; [`FrameworkWeights::check`] makes them all equal).
    pub fn n_heads(&self) -> usize {
        self.layers.first().map_or(0, |l| l.heads.len())
    }

    /// Channels per head.
    pub fn d_head(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.heads.first())
            .map_or(0, |h| h.w_q.cols)
    }

    /// Checks that every shape agrees with `d_model`, `vocab`, `n_heads` and `d_head`, so that analyses can index
    /// without checks. The error names the first tensor that does not fit.
    pub fn check(&self) -> Result<(), FrameworkError> {
        let (d, v, h, dh) = (self.d_model(), self.vocab(), self.n_heads(), self.d_head());
        let want = |what: &str, m: &Mat, r: usize, c: usize| {
            if m.rows == r && m.cols == c && m.data.len() == r * c {
                Ok(())
            } else {
                Err(FrameworkError::Shape(ShapeProblem::Matrix {
                    what: what.to_string(),
                    rows: m.rows,
                    cols: m.cols,
                    want_rows: r,
                    want_cols: c,
                }))
            }
        };
        let len = |what: &str, x: &[f32], n: usize| {
            if x.len() == n {
                Ok(())
            } else {
                Err(FrameworkError::Shape(ShapeProblem::Vector {
                    what: what.to_string(),
                    got: x.len(),
                    want: n,
                }))
            }
        };
        want("W_pos", &self.w_pos, self.w_pos.rows, d)?;
        want("W_U", &self.w_u, d, v)?;
        len("b_U", &self.b_u, v)?;
        if let Some(b) = &self.bigram {
            want("bigram table", b, v, v)?;
        }
        let norm = |what: String, n: &Option<NormParams>| -> Result<(), FrameworkError> {
            if let Some(n) = n {
                len(&format!("{what}.w"), &n.w, d)?;
                if let Some(b) = &n.b {
                    len(&format!("{what}.b"), b, d)?;
                }
            }
            Ok(())
        };
        norm("ln_final".into(), &self.ln_final)?;
        for (l, layer) in self.layers.iter().enumerate() {
            norm(format!("blocks.{l}.ln1"), &layer.ln1)?;
            norm(format!("blocks.{l}.ln2"), &layer.ln2)?;
            if layer.heads.len() != h {
                return Err(FrameworkError::Shape(ShapeProblem::HeadCount {
                    layer: l,
                    heads: layer.heads.len(),
                    first: h,
                }));
            }
            len(&format!("blocks.{l}.b_O"), &layer.b_o, d)?;
            if let Some(s) = &layer.sink_logit {
                len(&format!("blocks.{l}.sink_logit"), s, h)?;
            }
            for (i, hd) in layer.heads.iter().enumerate() {
                let p = format!("blocks.{l}.head{i}");
                want(&format!("{p}.W_Q"), &hd.w_q, d, dh)?;
                want(&format!("{p}.W_K"), &hd.w_k, d, dh)?;
                want(&format!("{p}.W_V"), &hd.w_v, d, dh)?;
                want(&format!("{p}.W_O"), &hd.w_o, dh, d)?;
                len(&format!("{p}.b_Q"), &hd.b_q, dh)?;
                len(&format!("{p}.b_K"), &hd.b_k, dh)?;
                len(&format!("{p}.b_V"), &hd.b_v, dh)?;
            }
            if let Some(m) = &layer.mlp {
                let f = m.w_in.cols;
                want(&format!("blocks.{l}.mlp.W_in"), &m.w_in, d, f)?;
                want(&format!("blocks.{l}.mlp.W_out"), &m.w_out, f, d)?;
                len(&format!("blocks.{l}.mlp.b_in"), &m.b_in, f)?;
                len(&format!("blocks.{l}.mlp.b_out"), &m.b_out, d)?;
            }
        }
        Ok(())
    }
}
