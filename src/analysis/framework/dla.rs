//! Direct logit attribution with the final norm's scale frozen (TransformerLens' `apply_ln_to_stack`): every
//! vector written to the residual stream at the last position is read through the final norm's gain and the
//! unembedding direction of one token (or of the difference of two), divided by the norm's scale on the whole
//! residual. The parts plus the bias terms sum to the logit (difference).

use super::weights::{FrameworkWeights, NormKind};
use super::{FrameworkError, FrameworkInput, ShapeProblem};

/// The unembedding direction of a logit (difference), with the final norm frozen at one residual's scale.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenUnembed {
    /// `(d_model)`: gain ⊙ (W_U[:, target] - W_U[:, alt]).
    pub direction: Vec<f32>,
    /// Whether parts are centred first (LayerNorm subtracts the mean).
    pub centre: bool,
    /// The final norm's scale on the residual: sqrt(var + eps) (LayerNorm) or sqrt(mean square + eps) (RMSNorm).
    pub scale: f32,
    /// What does not come from the residual: the final norm's bias through the direction, and the unembedding
    /// bias difference.
    pub constant: f32,
}

impl FrozenUnembed {
    /// The direction of `target`'s logit (minus `alt`'s) with the final norm frozen at `final_resid`'s scale.
    pub fn new(
        w: &FrameworkWeights,
        final_resid: &[f32],
        target: u32,
        alt: Option<u32>,
    ) -> Result<Self, FrameworkError> {
        let (d, v) = (w.d_model(), w.vocab());
        for tok in std::iter::once(target).chain(alt) {
            if tok as usize >= v {
                return Err(FrameworkInput::TokenOutsideVocab { token: tok, vocab: v }.into());
            }
        }
        if final_resid.len() != d {
            return Err(FrameworkError::Shape(ShapeProblem::FinalResid {
                got: final_resid.len(),
                d_model: d,
            }));
        }
        let col = |t: u32| w.w_u.col(t as usize);
        let mut direction = col(target);
        let mut constant = w.b_u[target as usize] as f64;
        if let Some(a) = alt {
            direction.iter_mut().zip(col(a)).for_each(|(x, y)| *x -= y);
            constant -= w.b_u[a as usize] as f64;
        }
        if let Some(ln) = &w.ln_final {
            if let Some(b) = &ln.b {
                constant += dot(b, &direction);
            }
            direction.iter_mut().zip(&ln.w).for_each(|(x, g)| *x *= g);
        }
        let n = d.max(1) as f64;
        let (centre, scale) = match w.norm {
            NormKind::Layer { eps } => {
                let mean = final_resid.iter().map(|&x| x as f64).sum::<f64>() / n;
                let var = final_resid.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
                (true, (var + eps as f64).sqrt())
            }
            NormKind::Rms { eps } => {
                let ms = final_resid.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n;
                (false, (ms + eps as f64).sqrt())
            }
        };
        Ok(FrozenUnembed {
            direction,
            centre,
            scale: scale as f32,
            constant: constant as f32,
        })
    }

    /// One residual part's share of the logit (difference).
    pub fn attribute(&self, part: &[f32]) -> f32 {
        let mean = if self.centre {
            part.iter().map(|&x| x as f64).sum::<f64>() / part.len().max(1) as f64
        } else {
            0.0
        };
        let s: f64 = part
            .iter()
            .zip(&self.direction)
            .map(|(&x, &d)| (x as f64 - mean) * d as f64)
            .sum();
        (s / self.scale as f64) as f32
    }
}

/// The bigram table's share of the logit (difference) at a position whose token is `current`.
pub fn bigram_part(w: &FrameworkWeights, current: u32, target: u32, alt: Option<u32>) -> Option<f32> {
    let b = w.bigram.as_ref()?;
    let row = b.row(current as usize);
    Some(row[target as usize] - alt.map_or(0.0, |a| row[a as usize]))
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}
