//! The Attribution screen's numbers: the pruned attribution graph of the lab's prompt
//! ([`crate::analysis::attribution`]) as owned rows, nodes placed by layer row and position, edges by index.

use crate::analysis::attribution::{AttributionGraph, NodeKind, Pruned};
use crate::circuit::NodeId;

/// Which logits the Attribution screen explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrTarget {
    /// The model's most likely next token at the last position.
    TopLogit,
    /// The task's logit difference, target A − target B (the lab's logit-difference pair).
    TaskPair,
}

/// The node sites of a block that are graph nodes, in forward order: the rows of the screen's grid.
pub use crate::analysis::attribution::BLOCK_NODE_SITES as BLOCK_SITES;

/// The layer row of a node: 0 the embeddings (token, position, bigram), then each block's sites in forward
/// order ([`BLOCK_SITES`]), then `final_resid`, then the logits.
pub fn layer_row(kind: &NodeKind, n_layer: usize) -> usize {
    match kind {
        NodeKind::Embedding { .. } | NodeKind::Position | NodeKind::Bigram { .. } => 0,
        NodeKind::Channel { node } => channel_row(node, n_layer),
        NodeKind::Logit { .. } => logit_row(n_layer),
    }
}

/// The layer row of the logits, the last one.
pub fn logit_row(n_layer: usize) -> usize {
    2 + n_layer * BLOCK_SITES.len()
}

fn channel_row(node: &NodeId, n_layer: usize) -> usize {
    match (node.layer, BLOCK_SITES.iter().position(|s| *s == node.site)) {
        (Some(l), Some(s)) => 1 + l * BLOCK_SITES.len() + s,
        _ => 1 + n_layer * BLOCK_SITES.len(),
    }
}

/// The short names of [`BLOCK_SITES`] in row labels: where each site reads or writes.
const SITE_SHORT: [&str; 6] = ["attn.in", "attn.v", "attn.out", "mlp.in", "mlp.post", "mlp.out"];

/// The name of a layer row, as the screen's row labels show it: `emb`, `L0 attn.v` (`attn.in`, `attn.out`,
/// `mlp.in`, `mlp.post`, `mlp.out` for the `act_in`, `resid_delta` and `post_act` sites), `final`, `logit`.
pub fn row_name(row: usize, n_layer: usize) -> String {
    let per = BLOCK_SITES.len();
    match row {
        0 => "emb".into(),
        r if r <= n_layer * per => {
            let (l, s) = ((r - 1) / per, (r - 1) % per);
            format!("L{l} {}", SITE_SHORT[s])
        }
        r if r == 1 + n_layer * per => "final".into(),
        _ => "logit".into(),
    }
}

/// One kept node.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrNodeRow {
    /// The graph's node id: `1.mlp.post_act[98]@12`, `embed@3`, `logit[41]@7`.
    pub id: String,
    /// The channel, for channel nodes (what the session's labels and the map know).
    pub channel: Option<NodeId>,
    /// Its layer row ([`layer_row`]).
    pub row: usize,
    /// Its token position.
    pub pos: usize,
    /// Its value on the prompt (1 for embeddings, the logit (difference) for targets).
    pub activation: f32,
    /// Its influence on the targets in the full graph.
    pub influence: f32,
    /// What it is for nodes without a channel: the embedded token, the target's tokens.
    pub what: String,
}

/// One kept edge, between two kept nodes (indices into [`AttributionView::nodes`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttrEdgeRow {
    /// The source node.
    pub source: usize,
    /// The target node.
    pub target: usize,
    /// The source's direct contribution to the target's input.
    pub weight: f32,
}

/// The pruned graph of one prompt, as the Attribution screen draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributionView {
    /// The prompt it is of.
    pub text: String,
    /// Its tokens as shown.
    pub tokens: Vec<String>,
    /// The targets, as text (`logit "x" (p=0.41)`, `logit "a" − "b"`).
    pub target: String,
    /// The model's number of blocks (the layer rows are `0..=2 + n_layer * 6`).
    pub n_layer: usize,
    /// The node threshold it was pruned with.
    pub node_threshold: f32,
    /// The edge threshold it was pruned with.
    pub edge_threshold: f32,
    /// Nodes and edges of the full graph.
    pub full: (usize, usize),
    /// The kept graph's completeness.
    pub completeness: f64,
    /// The kept nodes, in forward order.
    pub nodes: Vec<AttrNodeRow>,
    /// The kept edges.
    pub edges: Vec<AttrEdgeRow>,
    /// Time to build and prune, in the engine.
    pub elapsed_ms: f64,
}

/// What a view is computed from besides the graph.
pub struct ViewSetup<'a> {
    /// The prompt.
    pub text: &'a str,
    /// The thresholds.
    pub thresholds: (f32, f32),
    /// Time taken.
    pub elapsed_ms: f64,
}

impl AttributionView {
    /// The view of the kept part of `g`; `token` shows a token id.
    pub fn build(g: &AttributionGraph, p: &Pruned, setup: ViewSetup, token: impl Fn(u32) -> String) -> AttributionView {
        let mut index = vec![usize::MAX; g.nodes.len()];
        let mut nodes = Vec::new();
        for (i, n) in g.nodes.iter().enumerate() {
            if !p.keep_node[i] {
                continue;
            }
            index[i] = nodes.len();
            let what = match &n.kind {
                NodeKind::Embedding { token: t } => format!("token {:?}", token(*t)),
                NodeKind::Position => format!("position {}", n.pos),
                NodeKind::Bigram { token: t } => format!("bigram after {:?}", token(*t)),
                NodeKind::Logit { token: t, alt, weight } => match alt {
                    Some(a) => format!("logit {:?} − {:?}", token(*t), token(*a)),
                    None => format!("logit {:?} (p={weight:.2})", token(*t)),
                },
                NodeKind::Channel { .. } => String::new(),
            };
            nodes.push(AttrNodeRow {
                id: n.id(),
                channel: n.channel(),
                row: layer_row(&n.kind, g.n_layer),
                pos: n.pos,
                activation: n.activation,
                influence: p.influence[i] as f32,
                what,
            });
        }
        let edges = g
            .edges
            .iter()
            .zip(&p.keep_edge)
            .filter(|(e, &k)| k && index[e.src as usize] != usize::MAX && index[e.dst as usize] != usize::MAX)
            .map(|(e, _)| AttrEdgeRow {
                source: index[e.src as usize],
                target: index[e.dst as usize],
                weight: e.weight,
            })
            .collect();
        let target = nodes
            .iter()
            .filter(|n| n.row == logit_row(g.n_layer))
            .map(|n| n.what.clone())
            .collect::<Vec<_>>()
            .join(", ");
        AttributionView {
            text: setup.text.to_string(),
            tokens: g.ids.iter().map(|&t| token(t)).collect(),
            target,
            n_layer: g.n_layer,
            node_threshold: setup.thresholds.0,
            edge_threshold: setup.thresholds.1,
            full: (g.nodes.len(), g.edges.len()),
            completeness: p.completeness,
            nodes,
            edges,
            elapsed_ms: setup.elapsed_ms,
        }
    }

    /// The index of the node with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Node `i`'s edges: incoming then outgoing, strongest (|weight|) first within each; (incoming, edge).
    pub fn edges_of(&self, i: usize) -> Vec<(bool, AttrEdgeRow)> {
        let mut inc: Vec<AttrEdgeRow> = self.edges.iter().filter(|e| e.target == i).copied().collect();
        let mut out: Vec<AttrEdgeRow> = self.edges.iter().filter(|e| e.source == i).copied().collect();
        for v in [&mut inc, &mut out] {
            v.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
        }
        inc.into_iter()
            .map(|e| (true, e))
            .chain(out.into_iter().map(|e| (false, e)))
            .collect()
    }

    /// The edges among a set of nodes (by id), as (source id, target id, weight).
    pub fn edges_among(&self, ids: &[String]) -> Vec<(String, String, f32)> {
        let inside = |i: usize| ids.contains(&self.nodes[i].id);
        self.edges
            .iter()
            .filter(|e| inside(e.source) && inside(e.target))
            .map(|e| {
                (
                    self.nodes[e.source].id.clone(),
                    self.nodes[e.target].id.clone(),
                    e.weight,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_run_from_the_embeddings_through_each_blocks_sites_to_the_logits() {
        let n_layer = 2;
        assert_eq!(layer_row(&NodeKind::Position, n_layer), 0);
        let v: NodeId = "1.attn.v[3]".parse().unwrap();
        assert_eq!(layer_row(&NodeKind::Channel { node: v }, n_layer), 1 + 6 + 1);
        assert_eq!(row_name(8, n_layer), "L1 attn.v");
        assert_eq!(row_name(5, n_layer), "L0 mlp.post");
        let f: NodeId = "final_resid[0]".parse().unwrap();
        assert_eq!(layer_row(&NodeKind::Channel { node: f }, n_layer), 13);
        assert_eq!(row_name(13, n_layer), "final");
        let logit = NodeKind::Logit {
            token: 1,
            alt: None,
            weight: 1.0,
        };
        assert_eq!(layer_row(&logit, n_layer), 14);
        assert_eq!(row_name(14, n_layer), "logit");
        assert_eq!(row_name(0, n_layer), "emb");
    }
}
