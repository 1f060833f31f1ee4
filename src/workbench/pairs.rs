//! `:pairs N`, the paper's way of reading a node: run each task pair's two prompts (class A and class B) and
//! compare every circuit node at the decision token (the last token, after which the targets differ), averaged
//! over the pairs, beside the attention of the circuit's heads from the decision token on both prompts.
//!
//! The engine runs the prompts ([`super::Engine::pairs`]); [`build`] turns the recorded runs into the owned view
//! the UI draws.

use std::collections::{BTreeMap, BTreeSet};

use super::protocol::Ablation;
use crate::analysis::attention_pattern;
use crate::analysis::recording::Recorded;
use crate::circuit::NodeId;

/// One node's values at the decision token, averaged over the pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairNodeRow {
    /// The circuit node.
    pub node: NodeId,
    /// Mean value on the class-A prompts.
    pub a: f32,
    /// Mean value on the class-B prompts.
    pub b: f32,
    /// Mean of B − A over the pairs (equal to b − a).
    pub diff: f32,
}

/// The decision token's attention row of one head on one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttnRow {
    /// Weight on each token of the prompt (the decision token attends to all of them).
    pub weights: Vec<f32>,
    /// What the sink takes (zero in models without sinks).
    pub sink: f32,
}

/// One pair as run: both prompts' tokens, the task's logit difference after each, and the heads' attention.
#[derive(Debug, Clone, PartialEq)]
pub struct PairView {
    /// Display text of the class-A prompt's tokens (left-truncated to the context).
    pub tokens_a: Vec<String>,
    /// Display text of the class-B prompt's tokens.
    pub tokens_b: Vec<String>,
    /// logit(target A) − logit(target B) at the decision token of prompt A and of prompt B.
    pub logit_diff: Option<(f32, f32)>,
    /// (layer, head) → the decision token's attention on prompt A and on prompt B.
    pub attention: BTreeMap<(usize, usize), (AttnRow, AttnRow)>,
}

/// The answer to [`super::Request::Pairs`].
#[derive(Debug, Clone, PartialEq)]
pub struct PairsView {
    /// The task whose pairs ran.
    pub task: String,
    /// How many pairs were asked for.
    pub asked: usize,
    /// Pairs left out: one-sided items (no class-B prompt) or prompts that do not encode.
    pub skipped: usize,
    /// The ablations every prompt ran under.
    pub ablations: Vec<Ablation>,
    /// Every circuit node, in circuit order.
    pub nodes: Vec<PairNodeRow>,
    /// The pairs that ran, in task order.
    pub pairs: Vec<PairView>,
    /// The heads whose attention each pair carries: those with q, k or v nodes in the circuit.
    pub heads: Vec<(usize, usize)>,
}

/// Everything [`build`] needs besides the runs.
pub struct PairsSetup<'a> {
    /// The task's name.
    pub task: &'a str,
    /// Pairs asked for.
    pub asked: usize,
    /// Pairs left out before running.
    pub skipped: usize,
    /// The circuit's nodes.
    pub nodes: &'a [NodeId],
    /// The heads to report, whose layers' patterns the runs recorded.
    pub heads: &'a BTreeSet<(usize, usize)>,
    /// Whether the model has attention sinks.
    pub sink: bool,
    /// The task's two targets as token ids, when both are single tokens.
    pub targets: Option<(u32, u32)>,
    /// The ablations the runs were made under.
    pub ablations: &'a [Ablation],
}

fn last(v: &[f32]) -> f32 {
    v.last().copied().unwrap_or(0.0)
}

/// The decision token's attention row of every head in `heads` on `rec`.
fn attention_rows(rec: &Recorded, heads: &BTreeSet<(usize, usize)>, sink: bool) -> BTreeMap<(usize, usize), AttnRow> {
    attention_pattern::patterns(rec, heads, sink)
        .into_iter()
        .map(|(h, p)| {
            let q = p.t.saturating_sub(1);
            (
                h,
                AttnRow {
                    weights: p.row(q).to_vec(),
                    sink: p.sink.get(q).copied().unwrap_or(0.0),
                },
            )
        })
        .collect()
}

/// The view of `runs`, one (class A, class B) pair of recorded runs per task pair.
pub fn build(setup: &PairsSetup, runs: &[(Recorded, Recorded)], token_text: impl Fn(u32) -> String) -> PairsView {
    let n = runs.len().max(1) as f64;
    let nodes = setup
        .nodes
        .iter()
        .map(|node| {
            let (mut a, mut b) = (0f64, 0f64);
            for (ra, rb) in runs {
                a += last(&ra.node_values(node)) as f64;
                b += last(&rb.node_values(node)) as f64;
            }
            let (a, b) = ((a / n) as f32, (b / n) as f32);
            PairNodeRow {
                node: *node,
                a,
                b,
                diff: b - a,
            }
        })
        .collect();
    let pairs = runs
        .iter()
        .map(|(ra, rb)| {
            let mut attn_a = attention_rows(ra, setup.heads, setup.sink);
            let attn_b = attention_rows(rb, setup.heads, setup.sink);
            PairView {
                tokens_a: ra.ids.iter().map(|&i| token_text(i)).collect(),
                tokens_b: rb.ids.iter().map(|&i| token_text(i)).collect(),
                logit_diff: setup.targets.map(|t| (ra.logit_diff(t), rb.logit_diff(t))),
                attention: attn_b
                    .into_iter()
                    .filter_map(|(h, b)| Some((h, (attn_a.remove(&h)?, b))))
                    .collect(),
            }
        })
        .collect();
    PairsView {
        task: setup.task.to_string(),
        asked: setup.asked,
        skipped: setup.skipped,
        ablations: setup.ablations.to_vec(),
        nodes,
        pairs,
        heads: setup.heads.iter().copied().collect(),
    }
}

/// The heads (layer, head) of every q, k or v node.
pub fn heads_of_qkv_nodes(nodes: &[NodeId], d_head: usize) -> BTreeSet<(usize, usize)> {
    nodes
        .iter()
        .filter(|n| n.site.is_qkv())
        .filter_map(|n| Some((n.layer?, n.index / d_head)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `t` tokens whose node hook `0.attn.q` (width 2) holds `vals` (T, 2) and whose layer-0 pattern
    /// has one head attending uniformly.
    fn run(vals: Vec<f32>, logits: Vec<f32>) -> Recorded {
        let t = vals.len() / 2;
        let mut pattern = vec![0f32; t * t];
        for q in 0..t {
            for k in 0..=q {
                pattern[q * t + k] = 1.0 / (q + 1) as f32;
            }
        }
        Recorded {
            ids: (0..t as u32).collect(),
            last_logits: logits,
            hooks: BTreeMap::from([("0.attn.q".to_string(), (2, vals))]),
            patterns: BTreeMap::from([(0, pattern)]),
        }
    }

    /// Values are read at each prompt's last token and averaged over the pairs; the heads' rows are the last
    /// query's; the logit difference is read on both prompts.
    #[test]
    fn decision_token_values_are_averaged_over_pairs() {
        let node: NodeId = "0.attn.q[1]".parse().unwrap();
        let runs = vec![
            // Pair 1: A has 2 tokens (last row [_, 1]), B has 3 (last row [_, 4]).
            (
                run(vec![9., 9., 0., 1.], vec![1., 0.]),
                run(vec![9., 9., 9., 9., 0., 4.], vec![0., 2.]),
            ),
            // Pair 2: A's last value 3, B's 10.
            (run(vec![0., 3.], vec![1., 0.]), run(vec![0., 10.], vec![0., 1.])),
        ];
        let heads = BTreeSet::from([(0, 0)]);
        let setup = PairsSetup {
            task: "t",
            asked: 3,
            skipped: 1,
            nodes: &[node],
            heads: &heads,
            sink: false,
            targets: Some((0, 1)),
            ablations: &[],
        };
        let v = build(&setup, &runs, |i| format!("<{i}>"));
        assert_eq!(v.nodes.len(), 1);
        assert_eq!((v.nodes[0].a, v.nodes[0].b), (2.0, 7.0));
        assert_eq!(v.nodes[0].diff, 5.0);
        assert_eq!(v.pairs.len(), 2);
        assert_eq!(v.pairs[0].tokens_b, vec!["<0>", "<1>", "<2>"]);
        assert_eq!(v.pairs[0].logit_diff, Some((1.0, -2.0)));
        let (a, b) = &v.pairs[0].attention[&(0, 0)];
        assert_eq!(a.weights, vec![0.5, 0.5]);
        assert_eq!(b.weights.len(), 3);
        assert!((b.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!((v.asked, v.skipped), (3, 1));
    }

    #[test]
    fn heads_come_from_queries_keys_and_values() {
        let nodes: Vec<NodeId> = ["0.attn.q[17]", "1.attn.v[3]", "1.attn.k[40]", "0.mlp.post_act[3]"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(heads_of_qkv_nodes(&nodes, 16), BTreeSet::from([(0, 1), (1, 0), (1, 2)]));
    }
}
