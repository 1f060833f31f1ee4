//! Explanations of nodes without a language model: neuron-to-graph (N2G) token patterns built from a node's
//! strongest contexts in the scan, rendered as a short sentence (`fires on " [[" after "= "`), and scored on
//! held-out text (never the scan's exemplars): the correlation of predicted and real activations, and the
//! precision and recall of "fires". Positive and negative activations are explained separately.
//!
//! Works for any node a [`Probe`] can read: channels and neurons through [`ModelProbe`], anything else (SAE
//! features, planted test nodes) through its own probe. The pieces: [`n2g`] builds patterns, [`pattern`] merges
//! them into a trie that predicts and renders, [`score`] measures, [`store`] keeps the results beside the scan.

pub mod error;
pub mod n2g;
pub mod pattern;
pub mod probe;
pub mod score;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::analysis::scan::NodeScan;
use crate::circuit::file::Exemplar;
use crate::circuit::NodeId;
pub use error::{CorruptExplanations, ExplainError, Result};
pub use n2g::{Example, N2gOptions, NodeExamples};
pub use pattern::{Pattern, PatternTrie, Side};
pub use probe::{ModelProbe, Probe, Query};
pub use score::FireScore;
pub use store::{ExplanationsFile, EXPLAIN_FORMAT_VERSION, EXPLANATIONS_FILE};

/// A correlation at or above this counts as a good explanation (the README's table).
pub const GOOD_CORRELATION: f32 = 0.7;

/// What `explain` does per node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExplainOptions {
    /// The kept suffix gives at least this fraction of the peak's activation.
    pub keep_frac: f32,
    /// Tokens with a saliency below this become wildcards.
    pub saliency: f32,
    /// A side (positive or negative) is explained only when its extreme reaches this fraction of the node's
    /// largest magnitude, so that GELU's small negative dip is not "explained".
    pub side_frac: f32,
    /// Quantile samples join a side's top exemplars when at least this fraction of its extreme.
    pub sample_frac: f32,
    /// Patterns shown per side in the sentence.
    pub shown: usize,
    /// The padding token of the saliency test.
    pub pad: u32,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        ExplainOptions {
            keep_frac: 0.5,
            saliency: 0.5,
            side_frac: 0.25,
            sample_frac: 0.25,
            shown: 2,
            pad: 0,
        }
    }
}

/// One side of a node's explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideExplanation {
    /// The sentence, e.g. `fires on "[[" after "= "`.
    pub text: String,
    /// The patterns behind it, strongest first.
    pub patterns: Vec<Pattern>,
    /// "Fires" on held-out text.
    pub fires: FireScore,
}

/// A node's explanation and its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeExplanation {
    /// Both sides' sentences joined (`fires on …; negative on …`); empty when nothing could be explained.
    pub explanation: String,
    /// Pearson correlation of predicted and real activations on held-out text (None when either is constant).
    pub correlation: Option<f32>,
    /// The positive side, when the node has one worth explaining.
    pub positive: Option<SideExplanation>,
    /// The negative side, likewise.
    pub negative: Option<SideExplanation>,
}

impl NodeExplanation {
    /// Whether the correlation reaches [`GOOD_CORRELATION`].
    pub fn is_good(&self) -> bool {
        self.correlation.is_some_and(|c| c >= GOOD_CORRELATION)
    }

    /// The side whose "fires" scores headline the explanation: positive when present.
    pub fn main_side(&self) -> Option<&SideExplanation> {
        self.positive.as_ref().or(self.negative.as_ref())
    }

    /// One line: `corr 0.93 · P 0.91 R 0.88`, for tables and the workbench.
    pub fn score_line(&self) -> String {
        let f = |v: Option<f32>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
        let (p, r) = self
            .main_side()
            .map_or((None, None), |s| (s.fires.precision, s.fires.recall));
        format!("corr {} · P {} R {}", f(self.correlation), f(p), f(r))
    }
}

/// Held-out text to score on: token ids cut into sequences of `seq_len`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    /// The token stream.
    pub tokens: Vec<u32>,
    /// Length of the sequences it is cut into (the model's context or the scan's).
    pub seq_len: usize,
}

/// The exemplar's activation at its pivot (NaN for a malformed one, which no filter keeps).
fn pivot_value(e: &Exemplar) -> f32 {
    e.acts.get(e.pivot).copied().unwrap_or(f32::NAN)
}

/// The exemplar's tokens up to and including its pivot.
fn truncated(e: &Exemplar) -> Vec<u32> {
    e.tokens.iter().take(e.pivot + 1).copied().collect()
}

/// A node's examples from its scan: per side the top (bottom) exemplars plus the quantile samples strong enough,
/// each cut at its pivot; a side only when its extreme is a fair share of the node's largest magnitude.
pub fn examples_from_scan(scan: &NodeScan, opts: &ExplainOptions) -> NodeExamples {
    let extreme = scan.max.abs().max(scan.min.abs());
    let mut out = NodeExamples {
        node: scan.id,
        positive: Vec::new(),
        negative: Vec::new(),
    };
    if extreme.is_nan() || extreme <= 0.0 {
        return out;
    }
    for side in [Side::Positive, Side::Negative] {
        let s = side.sign();
        let side_max = s * if side == Side::Positive { scan.max } else { scan.min };
        if side_max <= 0.0 || side_max < opts.side_frac * extreme {
            continue;
        }
        let (main, samples): (&[Exemplar], Vec<&Exemplar>) = match side {
            Side::Positive => (
                scan.top.as_slice(),
                scan.quantiles.iter().flat_map(|q| &q.top).collect(),
            ),
            Side::Negative => (
                scan.bottom.as_slice(),
                scan.quantiles.iter().flat_map(|q| &q.bottom).collect(),
            ),
        };
        let mut examples: Vec<Example> = Vec::new();
        let candidates = main.iter().filter(|e| s * pivot_value(e) > 0.0).chain(
            samples
                .into_iter()
                .filter(|e| s * pivot_value(e) >= opts.sample_frac * side_max),
        );
        for e in candidates {
            let x = Example {
                tokens: truncated(e),
                value: pivot_value(e),
            };
            if !x.tokens.is_empty() && !examples.iter().any(|y| y.tokens == x.tokens) {
                examples.push(x);
            }
        }
        match side {
            Side::Positive => out.positive = examples,
            Side::Negative => out.negative = examples,
        }
    }
    out
}

/// Explains `nodes`: patterns from their examples (one batch of probes for all of them), then scores on
/// `held_out`. `display` turns a token id into its text for the sentences. The result is in `nodes`' order.
pub fn explain_batch(
    probe: &dyn Probe,
    nodes: &[NodeExamples],
    held_out: &HeldOut,
    opts: &ExplainOptions,
    display: &dyn Fn(u32) -> String,
) -> Result<Vec<NodeExplanation>> {
    if held_out.tokens.is_empty() {
        return Err(ExplainError::NoHeldOut);
    }
    let n2g = N2gOptions {
        keep_frac: opts.keep_frac,
        saliency: opts.saliency,
        pad: opts.pad,
    };
    let patterns = n2g::build_patterns(probe, nodes, &n2g)?;
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.node).collect();
    let real = probe.stream_values(&held_out.tokens, held_out.seq_len, &ids)?;
    let mut out = Vec::with_capacity(nodes.len());
    for ((ex, [pos, neg]), real) in nodes.iter().zip(patterns).zip(real) {
        let tries = [PatternTrie::new(&pos), PatternTrie::new(&neg)];
        let predicted = score::predict(&held_out.tokens, held_out.seq_len, &tries[0], &tries[1]);
        let side = |side: Side, mut patterns: Vec<Pattern>| -> Option<SideExplanation> {
            let strongest = ex.side(side).iter().map(|x| side.sign() * x.value).fold(0f32, f32::max);
            if patterns.is_empty() || strongest <= 0.0 {
                return None;
            }
            patterns.sort_by(|a, b| {
                (b.value * b.count as f32)
                    .total_cmp(&(a.value * a.count as f32))
                    .then_with(|| a.tokens.cmp(&b.tokens))
            });
            Some(SideExplanation {
                text: pattern::render(side, &patterns, opts.shown, display),
                fires: score::fire_score(&real, &predicted, side.sign(), 0.5 * strongest),
                patterns,
            })
        };
        let positive = side(Side::Positive, pos);
        let negative = side(Side::Negative, neg);
        let explanation = [&positive, &negative]
            .into_iter()
            .flatten()
            .map(|s| s.text.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        out.push(NodeExplanation {
            explanation,
            correlation: score::pearson(&predicted, &real),
            positive,
            negative,
        });
    }
    Ok(out)
}
