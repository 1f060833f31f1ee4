//! Which logits a graph explains: one token's logit, the difference of two tokens' logits, or by default the
//! most likely next tokens (circuit-tracer's rule: the top logits covering a share of the probability).

use super::{AttributeError, AttributeInput};

/// One target logit (difference) and its weight in the influence the pruning follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetSpec {
    /// The token whose logit is explained.
    pub token: u32,
    /// The token whose logit is subtracted, for a logit difference.
    pub alt: Option<u32>,
    /// The target's weight in the influence (its probability for default targets, 1 for a given target).
    pub weight: f32,
}

/// How the targets are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// The most likely next tokens until their probabilities sum to `cover`, at most `max` of them, each weighted
    /// by its probability.
    Top {
        /// The share of the probability to cover (0.95 by default).
        cover: f32,
        /// The most targets to take (10 by default).
        max: usize,
    },
    /// These targets.
    Given(Vec<TargetSpec>),
}

impl Default for Targets {
    fn default() -> Self {
        Targets::Top { cover: 0.95, max: 10 }
    }
}

impl Targets {
    /// The targets for a prompt whose last position has these logits (V).
    pub fn resolve(&self, last_logits: &[f32]) -> Result<Vec<TargetSpec>, AttributeError> {
        let v = last_logits.len();
        match self {
            Targets::Given(t) => {
                if t.is_empty() {
                    return Err(AttributeInput::NoTarget.into());
                }
                for s in t {
                    for tok in std::iter::once(s.token).chain(s.alt) {
                        if tok as usize >= v {
                            return Err(AttributeInput::TargetOutsideVocab { token: tok, vocab: v }.into());
                        }
                    }
                }
                Ok(t.clone())
            }
            Targets::Top { cover, max } => {
                if !(*cover > 0.0 && *cover <= 1.0) || *max == 0 {
                    return Err(AttributeInput::DefaultTargets {
                        cover: *cover,
                        max: *max,
                    }
                    .into());
                }
                let probs = softmax(last_logits);
                let mut order: Vec<usize> = (0..v).collect();
                order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
                let mut out = Vec::new();
                let mut sum = 0.0f64;
                for i in order.into_iter().take(*max) {
                    out.push(TargetSpec {
                        token: i as u32,
                        alt: None,
                        weight: probs[i] as f32,
                    });
                    sum += probs[i];
                    if sum >= *cover as f64 {
                        break;
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Softmax in f64 (the logits' probabilities).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let e: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_targets_cover_the_share() {
        // Probabilities about 0.64, 0.24, 0.09, 0.03.
        let logits = [0.0f32, 2.0, 1.0, 3.0];
        let t = Targets::Top { cover: 0.85, max: 10 }.resolve(&logits).unwrap();
        assert_eq!(t.iter().map(|s| s.token).collect::<Vec<_>>(), vec![3, 1]);
        assert!((t[0].weight - 0.6439).abs() < 1e-3);
        let t = Targets::Top { cover: 0.999, max: 2 }.resolve(&logits).unwrap();
        assert_eq!(t.len(), 2);
        assert!(matches!(
            Targets::Given(vec![]).resolve(&logits),
            Err(AttributeError::Input(AttributeInput::NoTarget))
        ));
        let bad = TargetSpec {
            token: 9,
            alt: None,
            weight: 1.0,
        };
        assert!(matches!(
            Targets::Given(vec![bad]).resolve(&logits),
            Err(AttributeError::Input(AttributeInput::TargetOutsideVocab {
                token: 9,
                vocab: 4
            }))
        ));
        let e = Targets::Top { cover: 0.0, max: 3 }.resolve(&logits).unwrap_err();
        assert!(matches!(
            e,
            AttributeError::Input(AttributeInput::DefaultTargets { max: 3, .. })
        ));
        assert_eq!(
            e.to_string(),
            "the default targets need a probability share in (0, 1] and at least one logit, got 0 and 3"
        );
    }
}
