//! Neuron-to-graph (Foote et al. 2023, as OpenAI's SAE work uses it): from a node's strongest contexts to token
//! patterns. Each context is cut at its peak; the shortest suffix that still gives at least `keep_frac` of the
//! activation is kept (every suffix is run, in one batch over all nodes); each suffix token's saliency is
//! 1 − act′/act with that token replaced by padding; tokens below `saliency` become wildcards, and the run before
//! the first salient token is dropped. Identical patterns merge, averaging the activation they predict.

use std::collections::BTreeMap;

use super::error::Result;
use super::pattern::{Pattern, Side};
use super::probe::{Probe, Query};
use crate::circuit::NodeId;

/// One strong context of a node: the tokens up to and including the peak, and the node's activation there.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Tokens in reading order, the last one at the peak.
    pub tokens: Vec<u32>,
    /// The node's raw (signed) activation at the peak in its original context.
    pub value: f32,
}

/// A node's contexts, by side.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeExamples {
    /// The node.
    pub node: NodeId,
    /// Contexts of its largest activations (value > 0).
    pub positive: Vec<Example>,
    /// Contexts of its most negative activations (value < 0).
    pub negative: Vec<Example>,
}

impl NodeExamples {
    /// The examples of one side.
    pub fn side(&self, side: Side) -> &[Example] {
        match side {
            Side::Positive => &self.positive,
            Side::Negative => &self.negative,
        }
    }
}

/// The knobs of pattern building.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct N2gOptions {
    /// The kept suffix must give at least this fraction of the peak's activation (N2G: 0.5).
    pub keep_frac: f32,
    /// Tokens whose saliency is below this become wildcards.
    pub saliency: f32,
    /// The token that replaces a token to measure its saliency.
    pub pad: u32,
}

/// (node index, side, example index): one example of the batch.
type Key = (usize, Side, usize);

/// The patterns of each node of `nodes`, per side: `[positive, negative]`.
pub fn build_patterns(probe: &dyn Probe, nodes: &[NodeExamples], opts: &N2gOptions) -> Result<Vec<[Vec<Pattern>; 2]>> {
    // 1. Every suffix of every example.
    let mut queries = Vec::new();
    let mut spans: Vec<(Key, usize)> = Vec::new();
    for (n, ex) in nodes.iter().enumerate() {
        for side in [Side::Positive, Side::Negative] {
            for (e, x) in ex.side(side).iter().enumerate() {
                if x.tokens.is_empty() {
                    continue;
                }
                spans.push(((n, side, e), queries.len()));
                let len = x.tokens.len();
                for k in 1..=len {
                    queries.push(Query {
                        node: ex.node,
                        tokens: x.tokens[len - k..].to_vec(),
                    });
                }
            }
        }
    }
    let suffix_acts = probe.last_values(&queries)?;

    // 2. The shortest suffix reaching keep_frac of the original activation; failing that, the strongest one.
    let mut chosen: Vec<(Key, usize, f32)> = Vec::new();
    for &((n, side, e), at) in &spans {
        let x = &nodes[n].side(side)[e];
        let s = side.sign();
        let acts: Vec<f32> = suffix_acts[at..at + x.tokens.len()].iter().map(|a| s * a).collect();
        let target = opts.keep_frac * s * x.value;
        let k = match acts.iter().position(|&a| a >= target && a > 0.0) {
            Some(i) => i + 1,
            None => match acts.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
                Some((i, &a)) if a > 0.0 => i + 1,
                _ => continue,
            },
        };
        chosen.push(((n, side, e), k, acts[k - 1]));
    }

    // 3. Saliency: each token of each kept suffix replaced by padding.
    let mut queries = Vec::new();
    let mut sal_at: Vec<Vec<Option<usize>>> = Vec::with_capacity(chosen.len());
    for &((n, side, e), k, _) in &chosen {
        let x = &nodes[n].side(side)[e];
        let suffix = &x.tokens[x.tokens.len() - k..];
        let mut at = Vec::with_capacity(k);
        for j in 0..k {
            if suffix[j] == opts.pad {
                at.push(None);
                continue;
            }
            let mut t = suffix.to_vec();
            t[j] = opts.pad;
            at.push(Some(queries.len()));
            queries.push(Query {
                node: nodes[n].node,
                tokens: t,
            });
        }
        sal_at.push(at);
    }
    let padded_acts = probe.last_values(&queries)?;

    // 4. Patterns, merged per node and side.
    let mut merged: Vec<[BTreeMap<Vec<Option<u32>>, (f32, u32)>; 2]> =
        (0..nodes.len()).map(|_| [BTreeMap::new(), BTreeMap::new()]).collect();
    for (&((n, side, e), k, act), at) in chosen.iter().zip(&sal_at) {
        let x = &nodes[n].side(side)[e];
        let suffix = &x.tokens[x.tokens.len() - k..];
        let s = side.sign();
        let salient: Vec<bool> = at
            .iter()
            .map(|q| q.is_some_and(|q| 1.0 - s * padded_acts[q] / act >= opts.saliency))
            .collect();
        let tokens: Vec<Option<u32>> = match salient.iter().position(|&b| b) {
            None => vec![Some(suffix[k - 1])],
            Some(first) => (first..k)
                .map(|j| salient[j].then_some(suffix[j]))
                .collect(),
        };
        let slot = &mut merged[n][side_index(side)];
        let entry = slot.entry(tokens).or_insert((0.0, 0));
        entry.0 += s * x.value;
        entry.1 += 1;
    }
    Ok(merged
        .into_iter()
        .map(|sides| {
            sides.map(|m| {
                m.into_iter()
                    .map(|(tokens, (sum, count))| Pattern {
                        tokens,
                        value: sum / count as f32,
                        count,
                    })
                    .collect()
            })
        })
        .collect())
}

/// 0 for positive, 1 for negative.
pub fn side_index(side: Side) -> usize {
    match side {
        Side::Positive => 0,
        Side::Negative => 1,
    }
}
