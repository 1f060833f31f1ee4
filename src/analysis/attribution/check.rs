//! How far attribution can be trusted on a task: over a task's minimal pairs, (1) does attribution patching rank
//! the nodes as exact activation patching does, and (2) does each clean prompt's pruned graph, merged over
//! positions, hold the nodes of the task's pruned circuit that matter. `attribute check` runs both.

use std::collections::BTreeSet;

use super::patching::compare;
use super::{build, prune, AttributeError, PruneOptions, TargetSpec, Targets, BLOCK_NODE_SITES};
use crate::circuit::{CircuitFile, NodeId, Site};
use crate::model::Gpt;

/// The circuit nodes that matter: those whose ablation costs more than the circuit's median node.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportantNodes {
    /// At the graph's node sites.
    pub nodes: BTreeSet<NodeId>,
    /// Queries and keys above the median: frozen with the attention patterns, so no graph can hold them.
    pub excluded_qk: usize,
    /// The median ablation delta (raw loss).
    pub median_delta: f64,
}

/// The nodes of `circuit` whose ablation delta is above the median over its nodes that have one.
pub fn important_nodes(circuit: &CircuitFile) -> ImportantNodes {
    let with_delta: Vec<(NodeId, f64)> = circuit
        .nodes
        .iter()
        .filter_map(|n| n.ablated_loss.map(|l| (n.id, l - circuit.losses.circuit)))
        .collect();
    let mut deltas: Vec<f64> = with_delta.iter().map(|&(_, d)| d).collect();
    deltas.sort_by(f64::total_cmp);
    let median_delta = match deltas.len() {
        0 => 0.0,
        n if n % 2 == 1 => deltas[n / 2],
        n => (deltas[n / 2 - 1] + deltas[n / 2]) / 2.0,
    };
    let above = with_delta
        .into_iter()
        .filter(|&(_, d)| d > median_delta)
        .map(|(id, _)| id);
    let (nodes, qk): (BTreeSet<NodeId>, BTreeSet<NodeId>) = above.partition(|id| is_graph_site(id.site));
    ImportantNodes {
        nodes,
        excluded_qk: qk.len(),
        median_delta,
    }
}

fn is_graph_site(site: Site) -> bool {
    BLOCK_NODE_SITES.contains(&site) || site == Site::FinalResid
}

/// One pair's two checks.
#[derive(Debug, Clone, PartialEq)]
pub struct PairCheck {
    /// Tokens in the clean prompt.
    pub tokens: usize,
    /// Spearman of attribution against activation patching (signed, magnitudes) and the nodes compared; `None`
    /// for a one-sided pair (no corrupted prompt) or when no node differs.
    pub spearman: Option<(f64, f64, usize)>,
    /// Nodes the pruned graph keeps.
    pub kept_nodes: usize,
    /// The pruned graph's completeness.
    pub completeness: f64,
    /// The kept graph's channels merged over positions.
    pub channels: BTreeSet<NodeId>,
}

impl PairCheck {
    /// How many of `important` the kept graph holds.
    pub fn recovered(&self, important: &ImportantNodes) -> usize {
        important.nodes.intersection(&self.channels).count()
    }
}

/// Both checks on one pair: `ids` the clean prompt, `corrupt` its counterpart of the same length (if two-sided),
/// `metric` the target token and its alternative, `max_patch` the most nodes compared.
pub fn check_pair(
    model: &Gpt,
    ids: &[u32],
    corrupt: Option<&[u32]>,
    metric: (u32, Option<u32>),
    max_patch: usize,
    opts: PruneOptions,
) -> Result<PairCheck, AttributeError> {
    let targets = Targets::Given(vec![TargetSpec {
        token: metric.0,
        alt: metric.1,
        weight: 1.0,
    }]);
    let g = build(model, ids, &targets)?;
    let p = prune(&g, opts);
    let channels = (0..g.nodes.len())
        .filter(|&i| p.keep_node[i])
        .filter_map(|i| g.nodes[i].channel())
        .collect();
    let spearman = match corrupt {
        Some(c) if max_patch > 0 => {
            let r = compare(model, ids, c, metric, max_patch)?;
            (!r.nodes.is_empty()).then_some((r.spearman, r.spearman_abs, r.nodes.len()))
        }
        _ => None,
    };
    Ok(PairCheck {
        tokens: ids.len(),
        spearman,
        kept_nodes: p.kept_nodes(),
        completeness: p.completeness,
        channels,
    })
}

/// A task's checks over its pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskCheck {
    /// The pairs' checks, in order.
    pub pairs: Vec<PairCheck>,
    /// The circuit's important nodes, when a circuit was given.
    pub important: Option<ImportantNodes>,
}

impl TaskCheck {
    /// Mean and median of the pairs' Spearman (signed, then magnitudes) over the pairs that have one.
    pub fn spearman_summary(&self) -> Option<[(f64, f64); 2]> {
        let signed: Vec<f64> = self.pairs.iter().filter_map(|p| p.spearman.map(|s| s.0)).collect();
        let abs: Vec<f64> = self.pairs.iter().filter_map(|p| p.spearman.map(|s| s.1)).collect();
        (!signed.is_empty()).then(|| [mean_median(&signed), mean_median(&abs)])
    }

    /// The mean per-pair share of the important nodes recovered, and the share recovered by the union of the
    /// pairs' graphs; `None` without a circuit or when it has no important node at the graph's sites.
    pub fn recovery(&self) -> Option<(f64, f64)> {
        let imp = self.important.as_ref().filter(|i| !i.nodes.is_empty())?;
        let n = imp.nodes.len() as f64;
        let per_pair =
            self.pairs.iter().map(|p| p.recovered(imp) as f64 / n).sum::<f64>() / self.pairs.len().max(1) as f64;
        let union: BTreeSet<NodeId> = self.pairs.iter().flat_map(|p| p.channels.iter().copied()).collect();
        Some((per_pair, imp.nodes.intersection(&union).count() as f64 / n))
    }
}

fn mean_median(x: &[f64]) -> (f64, f64) {
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (s.iter().sum::<f64>() / n as f64, median)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::{CircuitNode, ModelRef};

    fn node(site: Site, i: usize, ablated: f64) -> CircuitNode {
        CircuitNode {
            id: NodeId::new(0, site, i),
            ablated_loss: Some(ablated),
        }
    }

    #[test]
    fn important_nodes_are_above_the_median_and_skip_queries_and_keys() {
        let mut c = CircuitFile::new(
            ModelRef {
                fingerprint: "f".into(),
                name: None,
                path: None,
                num_total_nodes: 100,
            },
            "t",
            "test",
        );
        c.losses.circuit = 1.0;
        c.nodes = vec![
            node(Site::MlpPostAct, 1, 1.1),
            node(Site::MlpPostAct, 2, 3.0),
            node(Site::AttnQ, 3, 5.0),
            node(Site::AttnV, 4, 1.5),
            node(Site::AttnResidDelta, 5, 2.0),
            CircuitNode {
                id: NodeId::new(0, Site::MlpActIn, 6),
                ablated_loss: None,
            },
        ];
        // Deltas 0.1, 2.0, 4.0, 0.5, 1.0: median 1.0; above it 2.0 (post_act 2) and 4.0 (a query).
        let imp = important_nodes(&c);
        assert_eq!(imp.median_delta, 1.0);
        assert_eq!(imp.nodes, BTreeSet::from([NodeId::new(0, Site::MlpPostAct, 2)]));
        assert_eq!(imp.excluded_qk, 1);
        let pair = |ids: &[NodeId]| PairCheck {
            tokens: 3,
            spearman: Some((0.5, 0.9, 10)),
            kept_nodes: ids.len(),
            completeness: 1.0,
            channels: ids.iter().copied().collect(),
        };
        let t = TaskCheck {
            pairs: vec![pair(&[NodeId::new(0, Site::MlpPostAct, 2)]), pair(&[])],
            important: Some(imp),
        };
        assert_eq!(t.recovery(), Some((0.5, 1.0)));
        assert_eq!(t.spearman_summary(), Some([(0.5, 0.5), (0.9, 0.9)]));
    }
}
