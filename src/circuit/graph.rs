//! The circuit graph: the circuit's nodes, plus the `embed` and `logits` pseudo-nodes, joined by the nonzero
//! weights between them (spec E.9), derived from the model's weights.
//!
//! Edge kinds:
//! - [`EdgeKind::Weight`]: a matrix entry within a block. `attn.act_in[c] → attn.{q,k,v}[j]` via
//!   `c_attn.weight[j (+A, +2A), c]`; `attn.v[j] → attn.resid_delta[c]` via `attn.c_proj.weight[c, j]`;
//!   `mlp.act_in[c] → mlp.post_act[n]` via `c_fc.weight[n, c]`; `mlp.post_act[n] → mlp.resid_delta[c]` via
//!   `mlp.c_proj.weight[c, n]`. The weight is the matrix entry.
//! - [`EdgeKind::Residual`]: a residual write read later on the same channel: `L.*.resid_delta[c]` → every
//!   later sublayer's `act_in[c]` and `final_resid[c]`. Weight 1.0 (the identity of the residual stream; the
//!   norm before each read is treated as channel-wise).
//! - [`EdgeKind::Embed`]: `embed` → `act_in[c]` / `final_resid[c]` when some token (or, for the positional
//!   channels of cat-pos-emb models and for the added positional embedding, some position) writes channel c.
//!   Weight 1.0.
//! - [`EdgeKind::Unembed`]: `final_resid[c]` → `logits` when some token's unembedding row reads channel c.
//!   Weight 1.0.
//! - [`EdgeKind::QkInteraction`]: `attn.q[i]` → `attn.k[j]` of the same layer and head. Not a flow of values:
//!   the two multiply in the attention score (directly when they are the same channel of the head). Weight 1.0.
//!   Path, strongest-path and dominator queries ignore these.
//!
//! Biases are not graph edges (a circuit file's `bias` edges stay in the file). Persist [`GraphNode`]s (node
//! ids), never petgraph indices: a `StableDiGraph` reuses freed slots.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use petgraph::Direction;
use serde::{Deserialize, Serialize};

use super::error::{CircuitError, Result};
use super::file::{CircuitFile, EdgeEnd};
use super::node_id::{NodeId, Site};
use crate::model::weight_names::{self as wn, BlockLinear};
use crate::model::{Checkpoint, Config};

/// A graph vertex: a circuit node or one of the two pseudo-nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GraphNode {
    /// The token (and positional) embedding.
    Embed,
    /// A circuit node.
    Node(NodeId),
    /// The unembedding / logits.
    Logits,
}

impl fmt::Display for GraphNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphNode::Embed => f.write_str("embed"),
            GraphNode::Node(n) => write!(f, "{n}"),
            GraphNode::Logits => f.write_str("logits"),
        }
    }
}

/// How two graph vertices are related; see the module docs for each kind's exact rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EdgeKind {
    /// A nonzero matrix entry within one block; the weight is the entry.
    Weight,
    /// A residual write read later on the same channel (weight 1.0).
    Residual,
    /// From the embedding to a channel some token or position writes (weight 1.0).
    Embed,
    /// From a `final_resid` channel to the logits, when some unembedding row reads it (weight 1.0).
    Unembed,
    /// A query channel to a key channel of the same head: they multiply in the score, values do not flow.
    QkInteraction,
}

impl EdgeKind {
    /// Whether values flow along the edge (everything but q·k interactions).
    pub fn is_flow(self) -> bool {
        self != EdgeKind::QkInteraction
    }
}

/// The data on one graph edge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    /// How the two ends are related.
    pub kind: EdgeKind,
    /// The model weight joining them (1.0 for residual, embed, unembed and q·k edges).
    pub weight: f64,
    /// From the circuit file, when it has this edge (raw loss scale).
    pub ablation_delta: Option<f64>,
}

/// A path through the graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphPath {
    /// The vertices from start to end.
    pub nodes: Vec<GraphNode>,
    /// The edge weights along the path (nodes.len() − 1 of them).
    pub weights: Vec<f64>,
}

impl GraphPath {
    /// Σ log|w| over the edges: the log of the product of the absolute weights.
    pub fn log_strength(&self) -> f64 {
        self.weights.iter().map(|w| w.abs().ln()).sum()
    }

    /// Π |w| over the edges.
    pub fn strength(&self) -> f64 {
        self.weights.iter().map(|w| w.abs()).product()
    }
}

impl fmt::Display for GraphPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nodes.iter().enumerate() {
            if i > 0 {
                write!(f, " -({:.3})-> ", self.weights[i - 1])?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// The circuit's nodes plus `embed` and `logits`, joined by edges derived from the model's weights.
#[derive(Debug, Clone)]
pub struct CircuitGraph {
    /// The petgraph graph; its indices are not stable across edits, so persist [`GraphNode`]s instead.
    pub graph: StableDiGraph<GraphNode, GraphEdge>,
    index: HashMap<GraphNode, NodeIndex>,
}

/// Read-only access to a weight matrix as a dense row-major f32 array.
struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    fn load(ckpt: &Checkpoint, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let t = ckpt
            .require(name, &[rows, cols])?
            .to_dense()?
            .to_dtype(candle_core::DType::F32)?;
        Ok(Matrix {
            rows,
            cols,
            data: t.flatten_all()?.to_vec1()?,
        })
    }

    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }

    fn col_nonzero(&self, c: usize) -> bool {
        c < self.cols && (0..self.rows).any(|r| self.at(r, c) != 0.0)
    }
}

impl CircuitGraph {
    /// An empty graph holding the two pseudo-nodes.
    pub fn new() -> Self {
        let mut g = CircuitGraph {
            graph: StableDiGraph::new(),
            index: HashMap::new(),
        };
        g.add_node(GraphNode::Embed);
        g.add_node(GraphNode::Logits);
        g
    }

    /// Adds a vertex (no-op if present).
    pub fn add_node(&mut self, n: GraphNode) -> NodeIndex {
        if let Some(&i) = self.index.get(&n) {
            return i;
        }
        let i = self.graph.add_node(n);
        self.index.insert(n, i);
        i
    }

    /// Adds (or replaces) the edge `from → to` of this kind.
    pub fn add_edge(&mut self, from: GraphNode, to: GraphNode, kind: EdgeKind, weight: f64) -> EdgeIndex {
        let (a, b) = (self.add_node(from), self.add_node(to));
        if let Some(e) = self
            .graph
            .edges_connecting(a, b)
            .find(|e| e.weight().kind == kind)
            .map(|e| e.id())
        {
            self.graph[e].weight = weight;
            return e;
        }
        self.graph.add_edge(
            a,
            b,
            GraphEdge {
                kind,
                weight,
                ablation_delta: None,
            },
        )
    }

    /// Derives the graph of `circuit`'s nodes from the model's weights, attaching the file's edge ablation
    /// deltas where it has them.
    pub fn build(circuit: &CircuitFile, cfg: &Config, ckpt: &Checkpoint) -> Result<Self> {
        let mut g = Self::from_weights(&circuit.node_ids(), cfg, ckpt)?;
        for e in &circuit.edges {
            if let (EdgeEnd::Node(s), EdgeEnd::Node(t), Some(d)) = (e.source, e.target, e.ablation_delta) {
                if let (Some(&a), Some(&b)) = (g.index.get(&GraphNode::Node(s)), g.index.get(&GraphNode::Node(t))) {
                    let ids: Vec<EdgeIndex> = g.graph.edges_connecting(a, b).map(|e| e.id()).collect();
                    for id in ids {
                        g.graph[id].ablation_delta = Some(d);
                    }
                }
            }
        }
        Ok(g)
    }

    /// Derives the graph of `nodes` from the model's weights (see the module docs for the edges).
    pub fn from_weights(nodes: &[NodeId], cfg: &Config, ckpt: &Checkpoint) -> Result<Self> {
        for n in nodes {
            n.check(cfg).map_err(CircuitError::NodeOutsideModel)?;
        }
        let mut g = CircuitGraph::new();
        let mut sorted: Vec<NodeId> = nodes.to_vec();
        sorted.sort_by_key(|n| n.forward_order());
        sorted.dedup();
        for n in &sorted {
            g.add_node(GraphNode::Node(*n));
        }
        let (d, din, a, f, v) = (
            cfg.d_model,
            cfg.d_model_in(),
            cfg.attn_width(),
            cfg.d_mlp,
            cfg.vocab_size,
        );
        let at = |layer: usize, site: Site| -> Vec<usize> {
            sorted
                .iter()
                .filter(|n| n.layer == Some(layer) && n.site == site)
                .map(|n| n.index)
                .collect()
        };
        let node = |layer: usize, site: Site, i: usize| GraphNode::Node(NodeId::new(layer, site, i));
        for l in 0..cfg.n_layer {
            let attn_in = at(l, Site::AttnActIn);
            let (qs, ks, vs) = (at(l, Site::AttnQ), at(l, Site::AttnK), at(l, Site::AttnV));
            let attn_out = at(l, Site::AttnResidDelta);
            if !attn_in.is_empty() && (!qs.is_empty() || !ks.is_empty() || !vs.is_empty()) {
                let w = Matrix::load(ckpt, &wn::linear_weight(l, BlockLinear::AttnQkv), 3 * a, din)?;
                for &c in &attn_in {
                    for (site, off, js) in [(Site::AttnQ, 0, &qs), (Site::AttnK, a, &ks), (Site::AttnV, 2 * a, &vs)] {
                        for &j in js {
                            let x = w.at(j + off, c);
                            if x != 0.0 {
                                g.add_edge(
                                    node(l, Site::AttnActIn, c),
                                    node(l, site, j),
                                    EdgeKind::Weight,
                                    x as f64,
                                );
                            }
                        }
                    }
                }
            }
            if !vs.is_empty() && !attn_out.is_empty() {
                let w = Matrix::load(ckpt, &wn::linear_weight(l, BlockLinear::AttnOut), d, a)?;
                for &j in &vs {
                    for &c in &attn_out {
                        let x = w.at(c, j);
                        if x != 0.0 {
                            g.add_edge(
                                node(l, Site::AttnV, j),
                                node(l, Site::AttnResidDelta, c),
                                EdgeKind::Weight,
                                x as f64,
                            );
                        }
                    }
                }
            }
            for &i in &qs {
                for &j in &ks {
                    if i / cfg.d_head == j / cfg.d_head {
                        g.add_edge(
                            node(l, Site::AttnQ, i),
                            node(l, Site::AttnK, j),
                            EdgeKind::QkInteraction,
                            1.0,
                        );
                    }
                }
            }
            let mlp_in = at(l, Site::MlpActIn);
            let post = at(l, Site::MlpPostAct);
            let mlp_out = at(l, Site::MlpResidDelta);
            if !mlp_in.is_empty() && !post.is_empty() {
                let w = Matrix::load(ckpt, &wn::linear_weight(l, BlockLinear::MlpIn), f, din)?;
                for &c in &mlp_in {
                    for &n in &post {
                        let x = w.at(n, c);
                        if x != 0.0 {
                            g.add_edge(
                                node(l, Site::MlpActIn, c),
                                node(l, Site::MlpPostAct, n),
                                EdgeKind::Weight,
                                x as f64,
                            );
                        }
                    }
                }
            }
            if !post.is_empty() && !mlp_out.is_empty() {
                let w = Matrix::load(ckpt, &wn::linear_weight(l, BlockLinear::MlpOut), d, f)?;
                for &n in &post {
                    for &c in &mlp_out {
                        let x = w.at(c, n);
                        if x != 0.0 {
                            g.add_edge(
                                node(l, Site::MlpPostAct, n),
                                node(l, Site::MlpResidDelta, c),
                                EdgeKind::Weight,
                                x as f64,
                            );
                        }
                    }
                }
            }
        }
        // Residual links: a write at (layer, sublayer) reaches every later read of the same channel.
        let reads: Vec<NodeId> = sorted
            .iter()
            .copied()
            .filter(|n| matches!(n.site, Site::AttnActIn | Site::MlpActIn | Site::FinalResid))
            .collect();
        for w in sorted
            .iter()
            .filter(|n| matches!(n.site, Site::AttnResidDelta | Site::MlpResidDelta))
        {
            for r in &reads {
                if r.index == w.index && r.forward_order() > w.forward_order() {
                    g.add_edge(GraphNode::Node(*w), GraphNode::Node(*r), EdgeKind::Residual, 1.0);
                }
            }
        }
        // Embedding → reads.
        if !reads.is_empty() {
            let wte = Matrix::load(ckpt, wn::WTE, v, d)?;
            let pos_width = cfg.d_pos_emb.unwrap_or(d);
            let wpe = match ckpt.get(wn::WPE) {
                Some(_) => Some(Matrix::load(ckpt, wn::WPE, cfg.block_size, pos_width)?),
                None => None,
            };
            let writes = |c: usize| -> bool {
                if c < d {
                    wte.col_nonzero(c) || (cfg.d_pos_emb.is_none() && wpe.as_ref().is_some_and(|p| p.col_nonzero(c)))
                } else {
                    wpe.as_ref().is_some_and(|p| p.col_nonzero(c - d))
                }
            };
            for r in &reads {
                if writes(r.index) {
                    g.add_edge(GraphNode::Embed, GraphNode::Node(*r), EdgeKind::Embed, 1.0);
                }
            }
        }
        // final_resid → logits.
        let finals: Vec<usize> = sorted
            .iter()
            .filter(|n| n.site == Site::FinalResid)
            .map(|n| n.index)
            .collect();
        if !finals.is_empty() {
            let name = if ckpt.get(wn::LM_HEAD).is_some() {
                wn::LM_HEAD
            } else {
                wn::WTE
            };
            let head = Matrix::load(ckpt, name, v, d)?;
            for c in finals {
                if head.col_nonzero(c) {
                    g.add_edge(
                        GraphNode::Node(NodeId::final_resid(c)),
                        GraphNode::Logits,
                        EdgeKind::Unembed,
                        1.0,
                    );
                }
            }
        }
        Ok(g)
    }

    /// Number of vertices, pseudo-nodes included.
    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    /// Number of edges of every kind.
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// Number of edges per kind, keyed by the kind's name (e.g. `"Weight"`).
    pub fn edge_counts_by_kind(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for e in self.graph.edge_weights() {
            *out.entry(format!("{:?}", e.kind)).or_insert(0) += 1;
        }
        out
    }

    /// Whether `n` is a vertex of the graph.
    pub fn contains(&self, n: &GraphNode) -> bool {
        self.index.contains_key(n)
    }

    fn idx(&self, n: &GraphNode) -> Result<NodeIndex> {
        self.index
            .get(n)
            .copied()
            .ok_or_else(|| CircuitError::NotInCircuit { node: *n })
    }

    /// Every edge as (source, target, edge).
    pub fn edges(&self) -> Vec<(GraphNode, GraphNode, GraphEdge)> {
        let mut out: Vec<_> = self
            .graph
            .edge_references()
            .map(|e| (self.graph[e.source()], self.graph[e.target()], *e.weight()))
            .collect();
        out.sort_by_key(|a| (a.0, a.1));
        out
    }

    fn neighbors(&self, n: &GraphNode, dir: Direction) -> Result<Vec<(GraphNode, GraphEdge)>> {
        let i = self.idx(n)?;
        let mut out: Vec<_> = self
            .graph
            .edges_directed(i, dir)
            .map(|e| {
                let other = if dir == Direction::Outgoing {
                    e.target()
                } else {
                    e.source()
                };
                (self.graph[other], *e.weight())
            })
            .collect();
        out.sort_by_key(|a| a.0);
        Ok(out)
    }

    /// Sources of edges into `n`, with the edges.
    pub fn in_neighbors(&self, n: &GraphNode) -> Result<Vec<(GraphNode, GraphEdge)>> {
        self.neighbors(n, Direction::Incoming)
    }

    /// Targets of edges out of `n`, with the edges.
    pub fn out_neighbors(&self, n: &GraphNode) -> Result<Vec<(GraphNode, GraphEdge)>> {
        self.neighbors(n, Direction::Outgoing)
    }

    /// Flow edges out of `i` (no q·k interactions), with nonzero weight.
    fn flow_out(&self, i: NodeIndex) -> impl Iterator<Item = (NodeIndex, f64)> + '_ {
        self.graph
            .edges_directed(i, Direction::Outgoing)
            .filter(|e| e.weight().kind.is_flow() && e.weight().weight != 0.0)
            .map(|e| (e.target(), e.weight().weight))
    }

    /// Every simple path `from → to` along flow edges with at most `max_edges` edges, at most `limit` of them
    /// (depth first, in node order), so that dense circuits cannot explode.
    pub fn paths(&self, from: &GraphNode, to: &GraphNode, max_edges: usize, limit: usize) -> Result<Vec<GraphPath>> {
        let (s, t) = (self.idx(from)?, self.idx(to)?);
        let mut out = Vec::new();
        let mut stack_nodes = vec![s];
        let mut stack_w: Vec<f64> = Vec::new();
        self.dfs_paths(t, max_edges, limit, &mut stack_nodes, &mut stack_w, &mut out);
        Ok(out)
    }

    fn dfs_paths(
        &self,
        t: NodeIndex,
        max_edges: usize,
        limit: usize,
        nodes: &mut Vec<NodeIndex>,
        weights: &mut Vec<f64>,
        out: &mut Vec<GraphPath>,
    ) {
        let cur = *nodes.last().expect("the path starts with `from`");
        if cur == t {
            out.push(GraphPath {
                nodes: nodes.iter().map(|&i| self.graph[i]).collect(),
                weights: weights.clone(),
            });
            return;
        }
        if weights.len() >= max_edges {
            return;
        }
        let mut next: Vec<(NodeIndex, f64)> = self.flow_out(cur).collect();
        next.sort_by_key(|(i, _)| self.graph[*i]);
        for (n, w) in next {
            if out.len() >= limit {
                return;
            }
            if nodes.contains(&n) {
                continue;
            }
            nodes.push(n);
            weights.push(w);
            self.dfs_paths(t, max_edges, limit, nodes, weights, out);
            nodes.pop();
            weights.pop();
        }
    }

    /// Flow-edge topological order (the graph is acyclic: every edge goes forward in the computation).
    fn topo(&self) -> Result<Vec<NodeIndex>> {
        let mut indeg: HashMap<NodeIndex, usize> = self.graph.node_indices().map(|i| (i, 0)).collect();
        for i in self.graph.node_indices() {
            for (t, _) in self.flow_out(i) {
                *indeg.get_mut(&t).expect("edge target is a node") += 1;
            }
        }
        let mut ready: Vec<NodeIndex> = indeg.iter().filter(|(_, &d)| d == 0).map(|(&i, _)| i).collect();
        ready.sort_by_key(|&i| std::cmp::Reverse(self.graph[i]));
        let mut order = Vec::new();
        while let Some(i) = ready.pop() {
            order.push(i);
            for (t, _) in self.flow_out(i) {
                let d = indeg.get_mut(&t).expect("edge target is a node");
                *d -= 1;
                if *d == 0 {
                    ready.push(t);
                }
            }
        }
        if order.len() != self.graph.node_count() {
            return Err(CircuitError::FlowCycle);
        }
        Ok(order)
    }

    /// The path `from → to` along flow edges with the largest product of |weights| (equivalently the largest
    /// Σ log|w|), by dynamic programming over the topological order. None if `to` is unreachable.
    ///
    /// Residual, embedding and unembedding links weigh 1.0, so a direct `embed → final_resid → logits` link
    /// often wins; [`Self::strongest_weighted_path`] asks for a path through at least one weight edge.
    pub fn strongest_path(&self, from: &GraphNode, to: &GraphNode) -> Result<Option<GraphPath>> {
        self.strongest_path_impl(from, to, false)
    }

    /// [`Self::strongest_path`] among the paths that cross at least one [`EdgeKind::Weight`] edge.
    pub fn strongest_weighted_path(&self, from: &GraphNode, to: &GraphNode) -> Result<Option<GraphPath>> {
        self.strongest_path_impl(from, to, true)
    }

    fn strongest_path_impl(&self, from: &GraphNode, to: &GraphNode, need_weight: bool) -> Result<Option<GraphPath>> {
        let (s, t) = (self.idx(from)?, self.idx(to)?);
        // State: (vertex, whether a weight edge was crossed) → (score, back pointer to the previous state).
        type State = (NodeIndex, bool);
        let mut best: HashMap<State, (f64, Option<(State, f64)>)> = HashMap::new();
        best.insert((s, false), (0.0, None));
        for i in self.topo()? {
            for used in [false, true] {
                let Some(&(score, _)) = best.get(&(i, used)) else {
                    continue;
                };
                for e in self.graph.edges_directed(i, Direction::Outgoing) {
                    let (kind, w) = (e.weight().kind, e.weight().weight);
                    if !kind.is_flow() || w == 0.0 {
                        continue;
                    }
                    let next = (e.target(), used || kind == EdgeKind::Weight);
                    let cand = score + w.abs().ln();
                    if best.get(&next).is_none_or(|(b, _)| cand > *b) {
                        best.insert(next, (cand, Some(((i, used), w))));
                    }
                }
            }
        }
        let end = if need_weight {
            Some((t, true)).filter(|k| best.contains_key(k))
        } else {
            [(t, false), (t, true)]
                .into_iter()
                .filter(|k| best.contains_key(k))
                .max_by(|a, b| best[a].0.total_cmp(&best[b].0))
        };
        let Some(mut cur) = end else {
            return Ok(None);
        };
        let (mut nodes, mut weights) = (vec![self.graph[t]], Vec::new());
        while let Some((prev, w)) = best[&cur].1 {
            nodes.push(self.graph[prev.0]);
            weights.push(w);
            cur = prev;
        }
        nodes.reverse();
        weights.reverse();
        Ok(Some(GraphPath { nodes, weights }))
    }

    /// The nodes that every flow path `from → to` passes through (excluding `from` and `to`), in path order:
    /// the dominators of `to` in the graph rooted at `from`. None if `to` is unreachable.
    pub fn dominators(&self, from: &GraphNode, to: &GraphNode) -> Result<Option<Vec<GraphNode>>> {
        let (s, t) = (self.idx(from)?, self.idx(to)?);
        let flow = self.graph.filter_map(
            |_, n| Some(*n),
            |_, e| (e.kind.is_flow() && e.weight != 0.0).then_some(*e),
        );
        let doms = petgraph::algo::dominators::simple_fast(&flow, s);
        let Some(iter) = doms.dominators(t) else {
            return Ok(None);
        };
        let mut out: Vec<GraphNode> = iter.filter(|&i| i != s && i != t).map(|i| flow[i]).collect();
        out.reverse();
        Ok(Some(out))
    }

    /// The largest |weight| over `Weight` edges (the scale of the viewer's edge-strength slider).
    pub fn max_abs_weight(&self) -> f64 {
        self.graph
            .edge_weights()
            .filter(|e| e.kind == EdgeKind::Weight)
            .map(|e| e.weight.abs())
            .fold(0.0, f64::max)
    }

    /// A copy without the `Weight` edges whose |weight| is below `min_abs` (other kinds are kept). Vertices are
    /// kept, so node ids stay valid.
    pub fn filter_by_strength(&self, min_abs: f64) -> CircuitGraph {
        let graph = self.graph.filter_map(
            |_, n| Some(*n),
            |_, e| (e.kind != EdgeKind::Weight || e.weight.abs() >= min_abs).then_some(*e),
        );
        CircuitGraph {
            graph,
            index: self.index.clone(),
        }
    }

    /// [`Self::filter_by_strength`] at a fraction (0..=1) of [`Self::max_abs_weight`], like the viewer's slider.
    pub fn filter_by_relative_strength(&self, frac: f64) -> CircuitGraph {
        self.filter_by_strength(frac * self.max_abs_weight())
    }

    /// The circuit nodes (no pseudo-nodes), in forward order.
    pub fn circuit_nodes(&self) -> Vec<NodeId> {
        let set: HashSet<NodeId> = self
            .index
            .keys()
            .filter_map(|n| match n {
                GraphNode::Node(id) => Some(*id),
                _ => None,
            })
            .collect();
        let mut v: Vec<NodeId> = set.into_iter().collect();
        v.sort_by_key(|n| n.forward_order());
        v
    }
}

impl Default for CircuitGraph {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> GraphNode {
        GraphNode::Node(s.parse().unwrap())
    }

    /// embed → a → b → logits (weights 2, 3, 1) and embed → c → b (weights 1, 10): strongest goes through c.
    #[test]
    fn hand_made_queries() {
        let mut g = CircuitGraph::new();
        let (a, b, c) = (n("0.mlp.act_in[1]"), n("0.mlp.post_act[2]"), n("0.attn.act_in[1]"));
        let fin = n("final_resid[0]");
        g.add_edge(GraphNode::Embed, a, EdgeKind::Embed, 2.0);
        g.add_edge(a, b, EdgeKind::Weight, 3.0);
        g.add_edge(GraphNode::Embed, c, EdgeKind::Embed, 1.0);
        g.add_edge(c, b, EdgeKind::Weight, -10.0);
        g.add_edge(b, fin, EdgeKind::Weight, 0.5);
        g.add_edge(fin, GraphNode::Logits, EdgeKind::Unembed, 1.0);
        let paths = g.paths(&GraphNode::Embed, &GraphNode::Logits, 10, 100).unwrap();
        assert_eq!(paths.len(), 2);
        assert!(g
            .paths(&GraphNode::Embed, &GraphNode::Logits, 3, 100)
            .unwrap()
            .is_empty());
        let best = g
            .strongest_path(&GraphNode::Embed, &GraphNode::Logits)
            .unwrap()
            .unwrap();
        assert_eq!(best.nodes, vec![GraphNode::Embed, c, b, fin, GraphNode::Logits]);
        assert!((best.strength() - 5.0).abs() < 1e-12);
        let doms = g.dominators(&GraphNode::Embed, &GraphNode::Logits).unwrap().unwrap();
        assert_eq!(doms, vec![b, fin]);
        let filtered = g.filter_by_strength(5.0);
        let best = filtered.strongest_path(&GraphNode::Embed, &GraphNode::Logits).unwrap();
        assert!(best.is_none());
        assert_eq!(g.in_neighbors(&b).unwrap().len(), 2);
        assert_eq!(g.out_neighbors(&GraphNode::Embed).unwrap().len(), 2);
        assert!(g.in_neighbors(&n("1.mlp.act_in[0]")).is_err());
    }
}
