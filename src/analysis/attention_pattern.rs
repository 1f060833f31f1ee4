//! Attention patterns recomputed from recorded q and k (after AbsTopK and any ablation) and the heads' sink
//! logits, as the model computes them. This is the one place that recomputes attention; a recorded pattern hook
//! can replace it.

use std::collections::{BTreeMap, BTreeSet};

use super::recording::Recorded;
use crate::circuit::{NodeId, Site};
use crate::model::{Checkpoint, ModelError};

/// The attention of one head on one prompt: (T, T) weights, query-major, and the sink's weight per query.
#[derive(Debug, Clone, PartialEq)]
pub struct AttnPattern {
    /// Sequence length T.
    pub t: usize,
    /// (T, T) attention weights, row = query, column = key; zero above the diagonal.
    pub weights: Vec<f32>,
    /// (T) weight each query gives the sink (all zero for a model without sinks).
    pub sink: Vec<f32>,
}

impl AttnPattern {
    /// The weights of query `q` on keys 0..=q.
    pub fn row(&self, q: usize) -> &[f32] {
        &self.weights[q * self.t..q * self.t + q + 1]
    }
}

/// Every layer's per-head sink logits, (H) each; None for a layer without a sink.
pub fn sink_logits(ckpt: &Checkpoint, n_layer: usize) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
    (0..n_layer)
        .map(
            |l| match ckpt.get(&format!("transformer.h.{l}.attn.attn_imp.sink_logit")) {
                Some(s) => Ok(Some(s.to_dense()?.flatten_all()?.to_vec1()?)),
                None => Ok(None),
            },
        )
        .collect()
}

/// The (layer, head) of every q or k node.
pub fn heads_of_qk_nodes(nodes: &[NodeId], d_head: usize) -> BTreeSet<(usize, usize)> {
    nodes
        .iter()
        .filter(|n| matches!(n.site, Site::AttnQ | Site::AttnK))
        .filter_map(|n| Some((n.layer?, n.index / d_head)))
        .collect()
}

/// Causal softmax attention of head `h` from q (T, wq) and k (T, wk), row-major, with scores scaled by
/// 1/sqrt(d_head) and an optional sink logit that takes part in each query's softmax.
pub fn head_pattern(
    q: (usize, &[f32]),
    k: (usize, &[f32]),
    t: usize,
    d_head: usize,
    h: usize,
    sink_logit: Option<f32>,
) -> AttnPattern {
    let ((wq, q), (wk, k)) = (q, k);
    let dh = d_head;
    let scale = 1.0 / (dh as f32).sqrt();
    let mut weights = vec![0f32; t * t];
    let mut sink = vec![0f32; t];
    for i in 0..t {
        let qi = &q[i * wq + h * dh..i * wq + (h + 1) * dh];
        let scores: Vec<f32> = (0..=i)
            .map(|j| {
                let kj = &k[j * wk + h * dh..j * wk + (h + 1) * dh];
                qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
            })
            .collect();
        let m = scores
            .iter()
            .copied()
            .chain(sink_logit)
            .fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = scores.iter().map(|s| (s - m).exp()).sum::<f32>() + sink_logit.map_or(0.0, |s| (s - m).exp());
        for (j, s) in scores.iter().enumerate() {
            weights[i * t + j] = (s - m).exp() / z;
        }
        sink[i] = sink_logit.map_or(0.0, |s| (s - m).exp() / z);
    }
    AttnPattern { t, weights, sink }
}

/// The pattern of every head in `heads` whose layer's q and k were recorded in `rec`.
pub fn patterns(
    rec: &Recorded,
    heads: &BTreeSet<(usize, usize)>,
    d_head: usize,
    sinks: &[Option<Vec<f32>>],
) -> BTreeMap<(usize, usize), AttnPattern> {
    let mut out = BTreeMap::new();
    for &(l, h) in heads {
        let (Some((wq, q)), Some((wk, k))) = (
            rec.hooks.get(&format!("{l}.attn.q")),
            rec.hooks.get(&format!("{l}.attn.k")),
        ) else {
            continue;
        };
        let sink_logit = sinks.get(l).and_then(|s| s.as_ref()).and_then(|s| s.get(h).copied());
        out.insert(
            (l, h),
            head_pattern((*wq, q), (*wk, k), rec.ids.len(), d_head, h, sink_logit),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_sink_sum_to_one_and_are_causal() {
        // T = 3, one head of width 2.
        let q = [1.0, 0.0, 0.5, 0.5, 0.0, 1.0];
        let k = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let p = head_pattern((2, &q), (2, &k), 3, 2, 0, Some(0.3));
        for i in 0..3 {
            let s: f32 = p.row(i).iter().sum::<f32>() + p.sink[i];
            assert!((s - 1.0).abs() < 1e-6, "row {i} sums to {s}");
            for j in i + 1..3 {
                assert_eq!(p.weights[i * 3 + j], 0.0);
            }
        }
        let no_sink = head_pattern((2, &q), (2, &k), 3, 2, 0, None);
        assert_eq!(no_sink.row(0), &[1.0]);
        assert!(no_sink.sink.iter().all(|&s| s == 0.0));
    }
}
