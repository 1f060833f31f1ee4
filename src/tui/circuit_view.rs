//! The circuit as the UI shows it: the file, its graph, the map's rows and blocks, edges above a threshold and
//! the fuzzy search over ids and labels. Shared by every screen.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::circuit::{BlockId, CircuitFile, CircuitGraph, EdgeKind, GraphEdge, GraphNode, NodeId, Site};
use crate::session::Annotation;

/// One line of the circuit map: the nodes of one site of one block, grouped by head for q/k/v.
#[derive(Debug, Clone)]
pub struct MapRow {
    /// The block the row belongs to (None: the final residual, which is in no block).
    pub block: Option<BlockId>,
    /// The site (hook) whose nodes the row lists.
    pub site: Site,
    /// (head, nodes) groups; head is None outside q/k/v.
    pub groups: Vec<(Option<usize>, Vec<NodeId>)>,
    /// The row's nodes in forward order, as the map's cursor walks them.
    pub nodes: Vec<NodeId>,
}

/// A block header on the map.
#[derive(Debug, Clone)]
pub struct BlockInfo {
    /// The block this header stands above.
    pub block: BlockId,
    /// Halved loss change when the whole block is ablated.
    pub delta: Option<f64>,
    /// How many circuit nodes the block holds.
    pub count: usize,
}

/// The circuit as the UI shows it: the file, its graph, and the map's rows.
pub struct CircuitView {
    /// The circuit file as loaded (nodes, edges, losses, block ablations).
    pub file: CircuitFile,
    /// The circuit's edges as a graph, for the edge lists and following edges.
    pub graph: CircuitGraph,
    /// Where the circuit file was read from (sessions and `:task` are found beside it).
    pub path: PathBuf,
    /// The model's name as the circuit file records it, for the title.
    pub model_name: String,
    /// The model's head size: q/k/v node indices split into (head, channel) with it.
    pub d_head: usize,
    /// The model's block count: TransformerLens-spelled node ids (`blocks.1.hook_resid_post[3]`) need it.
    pub n_layer: usize,
    /// The map's rows in forward order.
    pub rows: Vec<MapRow>,
    /// The map's block headers, in block order (blocks without circuit nodes are absent).
    pub blocks: Vec<BlockInfo>,
    /// The largest |weight| of any edge, the unit of the edge threshold (0 for a circuit without weight edges).
    pub max_weight: f64,
    /// Largest |node delta| (halved), for shading.
    pub max_node_delta: f64,
    pos: HashMap<NodeId, (usize, usize)>,
}

impl CircuitView {
    /// Builds the map's rows and block headers from the file and its graph; `(n_layer, d_head)` come from the model's
    /// config.
    pub fn new(
        file: CircuitFile,
        graph: CircuitGraph,
        path: PathBuf,
        model_name: String,
        (n_layer, d_head): (usize, usize),
    ) -> Self {
        let mut nodes = file.node_ids();
        nodes.sort_by_key(|n| n.forward_order());
        let mut rows: Vec<MapRow> = Vec::new();
        for n in &nodes {
            let block = BlockId::of(n);
            let head = n.head_channel(d_head).map(|(h, _)| h);
            match rows.last_mut() {
                Some(r) if r.block == block && r.site == n.site => {
                    r.nodes.push(*n);
                    match r.groups.last_mut() {
                        Some(g) if g.0 == head => g.1.push(*n),
                        _ => r.groups.push((head, vec![*n])),
                    }
                }
                _ => rows.push(MapRow {
                    block,
                    site: n.site,
                    groups: vec![(head, vec![*n])],
                    nodes: vec![*n],
                }),
            }
        }
        let mut blocks: Vec<BlockInfo> = Vec::new();
        for r in &rows {
            let Some(b) = r.block else { continue };
            match blocks.last_mut() {
                Some(info) if info.block == b => info.count += r.nodes.len(),
                _ => blocks.push(BlockInfo {
                    block: b,
                    delta: file
                        .blocks
                        .iter()
                        .find(|x| x.block == b)
                        .map(|x| x.delta_halved(&file.losses)),
                    count: r.nodes.len(),
                }),
            }
        }
        let mut pos = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            for (j, n) in r.nodes.iter().enumerate() {
                pos.insert(*n, (i, j));
            }
        }
        let max_node_delta = file
            .nodes
            .iter()
            .filter_map(|n| n.delta_halved(&file.losses))
            .map(f64::abs)
            .fold(0.0, f64::max);
        CircuitView {
            max_weight: graph.max_abs_weight(),
            file,
            graph,
            path,
            model_name,
            d_head,
            n_layer,
            rows,
            blocks,
            max_node_delta,
            pos,
        }
    }

    /// The node's (row, column) on the map (None: not in the circuit).
    pub fn position(&self, n: &NodeId) -> Option<(usize, usize)> {
        self.pos.get(n).copied()
    }

    /// The first node on the map in forward order (None: an empty circuit).
    pub fn first_node(&self) -> Option<NodeId> {
        self.rows.first().and_then(|r| r.nodes.first()).copied()
    }

    /// The node's halved importance (loss change when ablated), if the file has it.
    pub fn node_delta(&self, n: &NodeId) -> Option<f64> {
        self.file.node(n).and_then(|c| c.delta_halved(&self.file.losses))
    }

    /// 0..=1 shading of a node by importance.
    pub fn importance(&self, n: &NodeId) -> f32 {
        match self.node_delta(n) {
            Some(d) if self.max_node_delta > 0.0 => (d.abs() / self.max_node_delta) as f32,
            _ => 0.0,
        }
    }

    /// In-edges then out-edges of a node that pass the threshold (a fraction of the largest |weight|; only
    /// weight edges are filtered), strongest first within each.
    pub fn edges(&self, n: &NodeId, threshold: f64) -> Vec<EdgeItem> {
        let g = GraphNode::Node(*n);
        let keep = |e: &GraphEdge| e.kind != EdgeKind::Weight || e.weight.abs() >= threshold * self.max_weight;
        let mut out = Vec::new();
        for (incoming, list) in [
            (true, self.graph.in_neighbors(&g)),
            (false, self.graph.out_neighbors(&g)),
        ] {
            let mut list: Vec<(GraphNode, GraphEdge)> =
                list.unwrap_or_default().into_iter().filter(|(_, e)| keep(e)).collect();
            list.sort_by(|a, b| b.1.weight.abs().total_cmp(&a.1.weight.abs()).then(a.0.cmp(&b.0)));
            out.extend(list.into_iter().map(|(other, edge)| EdgeItem { incoming, other, edge }));
        }
        out
    }

    /// Fuzzy matches of `query` against node ids and labels: best first.
    pub fn search(&self, query: &str, labels: &BTreeMap<NodeId, Annotation>) -> Vec<NodeId> {
        let q = query.trim().to_lowercase();
        let mut scored: Vec<(i64, NodeId)> = self
            .rows
            .iter()
            .flat_map(|r| r.nodes.iter())
            .filter_map(|n| {
                let id = n.to_string().to_lowercase();
                let label = labels.get(n).map(|a| a.label.to_lowercase()).unwrap_or_default();
                let s = fuzzy_score(&q, &id).max(fuzzy_score(&q, &label));
                s.map(|s| (s, *n))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.forward_order().cmp(&b.1.forward_order())));
        scored.into_iter().map(|(_, n)| n).collect()
    }
}

/// Subsequence match score: None if `q` is not a subsequence of `s`; higher for contiguous and early matches,
/// highest for an exact match.
pub fn fuzzy_score(q: &str, s: &str) -> Option<i64> {
    if q.is_empty() {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    if q == s {
        return Some(10_000);
    }
    if let Some(i) = s.find(q) {
        return Some(5_000 - i as i64 - s.len() as i64);
    }
    let mut score = 0i64;
    let mut last: Option<usize> = None;
    let mut it = s.char_indices();
    for qc in q.chars() {
        let (i, _) = it.by_ref().find(|(_, c)| *c == qc)?;
        score += match last {
            Some(l) if i == l + 1 => 10,
            _ => 1,
        };
        last = Some(i);
    }
    Some(score - s.len() as i64)
}

/// One row of a node's edge list: the edge and the node at its other end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeItem {
    /// The edge points into the listed node (`other` is upstream); false: out of it.
    pub incoming: bool,
    /// The node at the other end of the edge (possibly the circuit's end, which cannot be inspected).
    pub other: GraphNode,
    /// The edge itself (kind and weight).
    pub edge: GraphEdge,
}
