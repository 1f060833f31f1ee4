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

/// Patterns of one side of one node → (sum of the values they predict, how many exemplars gave them).
type Merged = BTreeMap<Vec<Option<u32>>, (f32, u32)>;

/// The last suffix length of each round but the last (which takes the rest).
const SUFFIX_ROUNDS: [usize; 3] = [2, 5, 10];

/// (node index, side, example index): one example of the batch.
type Key = (usize, Side, usize);

/// The patterns of each node of `nodes`, per side: `[positive, negative]`.
pub fn build_patterns(probe: &dyn Probe, nodes: &[NodeExamples], opts: &N2gOptions) -> Result<Vec<[Vec<Pattern>; 2]>> {
    // 1-2. The shortest suffix reaching keep_frac of the original activation; failing that, the strongest one.
    // Suffix lengths are tried in rounds of growing length, so that the many examples that need only a token or
    // three (the usual case in a sparse model) cost a few short forwards; the result is the same as trying all.
    let mut open: Vec<(Key, Vec<f32>)> = Vec::new();
    for (n, ex) in nodes.iter().enumerate() {
        for side in [Side::Positive, Side::Negative] {
            for (e, x) in ex.side(side).iter().enumerate() {
                if !x.tokens.is_empty() {
                    open.push(((n, side, e), Vec::with_capacity(x.tokens.len())));
                }
            }
        }
    }
    let mut chosen: Vec<(Key, usize, f32)> = Vec::new();
    let mut lo = 1;
    for hi in SUFFIX_ROUNDS.into_iter().chain(std::iter::once(usize::MAX)) {
        if open.is_empty() {
            break;
        }
        let mut queries = Vec::new();
        for ((n, side, e), _) in &open {
            let x = &nodes[*n].side(*side)[*e];
            let len = x.tokens.len();
            for k in lo..=hi.min(len) {
                queries.push(Query {
                    node: nodes[*n].node,
                    tokens: x.tokens[len - k..].to_vec(),
                });
            }
        }
        let acts = probe.last_values(&queries)?;
        let mut at = 0;
        let mut still = Vec::with_capacity(open.len());
        for ((n, side, e), mut seen) in open {
            let x = &nodes[n].side(side)[e];
            let len = x.tokens.len();
            let s = side.sign();
            let got = (hi.min(len) + 1).saturating_sub(lo);
            seen.extend(acts[at..at + got].iter().map(|a| s * a));
            at += got;
            let target = opts.keep_frac * s * x.value;
            if let Some(i) = seen.iter().position(|&a| a >= target && a > 0.0) {
                chosen.push(((n, side, e), i + 1, seen[i]));
            } else if seen.len() == len {
                if let Some((i, &a)) = seen.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
                    if a > 0.0 {
                        chosen.push(((n, side, e), i + 1, a));
                    }
                }
            } else {
                still.push(((n, side, e), seen));
            }
        }
        open = still;
        lo = hi.saturating_add(1);
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
    let mut merged: Vec<[Merged; 2]> = (0..nodes.len()).map(|_| [BTreeMap::new(), BTreeMap::new()]).collect();
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
            Some(first) => (first..k).map(|j| salient[j].then_some(suffix[j])).collect(),
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
