//! The attention of single heads on one prompt, cut from the patterns the model recorded (`L.attn.pattern`,
//! after AbsTopK and any ablation of q and k), so that nothing outside the model recomputes attention.

use std::collections::{BTreeMap, BTreeSet};

use super::recording::Recorded;
use crate::circuit::{NodeId, Site};

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

/// The (layer, head) of every q or k node.
pub fn heads_of_qk_nodes(nodes: &[NodeId], d_head: usize) -> BTreeSet<(usize, usize)> {
    nodes
        .iter()
        .filter(|n| matches!(n.site, Site::AttnQ | Site::AttnK))
        .filter_map(|n| Some((n.layer?, n.index / d_head)))
        .collect()
}

/// The layers whose patterns `heads` need: what to record (`recording::pattern_record`).
pub fn layers_of(heads: &BTreeSet<(usize, usize)>) -> BTreeSet<usize> {
    heads.iter().map(|&(l, _)| l).collect()
}

/// The pattern of every head in `heads` whose layer's pattern was recorded in `rec`. With `has_sink`, a query's
/// sink weight is what its row leaves of one (the model's softmax shares it with the sink slot); without, zero.
pub fn patterns(
    rec: &Recorded,
    heads: &BTreeSet<(usize, usize)>,
    has_sink: bool,
) -> BTreeMap<(usize, usize), AttnPattern> {
    let t = rec.ids.len();
    let mut out = BTreeMap::new();
    for &(l, h) in heads {
        let Some(weights) = rec.patterns.get(&l).and_then(|p| p.get(h * t * t..(h + 1) * t * t)) else {
            continue;
        };
        let sink = (0..t)
            .map(|i| {
                if has_sink {
                    // Rounding can leave a hair below zero where the sink takes (almost) nothing.
                    (1.0 - weights[i * t..=i * t + i].iter().sum::<f32>()).max(0.0)
                } else {
                    0.0
                }
            })
            .collect();
        out.insert(
            (l, h),
            AttnPattern {
                t,
                weights: weights.to_vec(),
                sink,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::recording::{pattern_record, record};
    use crate::model::synth::{synth_tensors, SynthShape};
    use crate::model::{Checkpoint, Gpt, Hooks, LoadOptions};

    fn model(sink: bool) -> Gpt {
        let mut cfg = SynthShape::Tiny.config();
        cfg.n_layer = 2;
        cfg.sink = sink;
        let ck = Checkpoint {
            path: "<synth>".into(),
            tensors: synth_tensors(&cfg, 0.3, 11).unwrap(),
        };
        Gpt::from_checkpoint(cfg, &ck, LoadOptions::default()).unwrap()
    }

    /// Rows are causal; with a sink, row and sink sum to one and the sink takes a share; without, the rows
    /// alone sum to one. Only the asked layers are recorded, and only their heads come back.
    #[test]
    fn heads_are_cut_from_the_recorded_patterns() {
        let ids = [3u32, 17, 5, 99, 3];
        let t = ids.len();
        for sink in [true, false] {
            let m = model(sink);
            let heads = BTreeSet::from([(1, 0), (1, m.config.n_head - 1), (0, 1)]);
            let mut hooks = Hooks::recording("$^").unwrap();
            hooks.set_record_patterns(&pattern_record([1])).unwrap();
            let rec = record(&m, &ids, &mut hooks).unwrap();
            assert_eq!(rec.patterns.keys().copied().collect::<Vec<_>>(), vec![1]);
            assert!(rec.hooks.is_empty(), "patterns are not activation rows");
            let p = patterns(&rec, &heads, sink);
            assert_eq!(
                p.keys().copied().collect::<Vec<_>>(),
                vec![(1, 0), (1, m.config.n_head - 1)]
            );
            for ((_, h), pat) in &p {
                assert_eq!(pat.weights, rec.patterns[&1][h * t * t..(h + 1) * t * t]);
                for i in 0..t {
                    assert!(pat.weights[i * t + i + 1..(i + 1) * t].iter().all(|&w| w == 0.0));
                    let total = pat.row(i).iter().sum::<f32>() + pat.sink[i];
                    assert!((total - 1.0).abs() < 1e-5, "query {i}: {total}");
                    if sink {
                        assert!(pat.sink[i] > 0.0);
                    } else {
                        assert_eq!(pat.sink[i], 0.0);
                    }
                }
            }
        }
    }
}
