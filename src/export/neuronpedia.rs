//! Attribution graphs as Neuronpedia's graph JSON (the format circuit-tracer writes and Neuronpedia's graph UI
//! reads: `metadata`, `qParams` with pinned ids and supernodes, `nodes`, `links`), and back.
//!
//! Node ids are ours (`1.mlp.post_act[98]@12`, `embed@3`, `logit[41]@7`), used as both `node_id` and `jsNodeId`,
//! so that a file round-trips; `feature` is the channel (or token), `layer` the block (`"E"` for embeddings,
//! `"Lgt"` for logits) and `ctx_idx` the position. Each node also carries its `bias`, so that an imported graph's
//! inputs can be summed again. [`check_schema`] checks a document against the fields and types Neuronpedia's
//! schema (`apps/webapp/app/api/graph/graph-schema.json`) requires.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::analysis::attribution::{AttrNode, AttributionGraph, NodeKind, PruneOptions, Pruned};
use crate::circuit::PositionedNode;

/// The version of our fields inside the file's metadata.
pub const GRAPH_FORMAT_VERSION: u32 = 1;

/// A graph file: Neuronpedia's four top-level parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphFile {
    /// What the graph is of.
    pub metadata: Metadata,
    /// The saved view: pinned nodes and supernodes.
    #[serde(rename = "qParams")]
    pub q_params: QParams,
    /// The kept nodes.
    pub nodes: Vec<GraphNode>,
    /// The kept edges.
    pub links: Vec<Link>,
}

/// The graph's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// A short name of the graph.
    pub slug: String,
    /// The model (Neuronpedia's model id).
    pub scan: String,
    /// The prompt's tokens as text.
    pub prompt_tokens: Vec<String>,
    /// The prompt.
    pub prompt: String,
    /// The node threshold the graph was pruned with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_threshold: Option<f32>,
    /// Who made it and with what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
    /// How the targets were chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_settings: Option<Value>,
    /// The pruning thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruning_settings: Option<PruningSettings>,
    /// Our own fields (absent in files from other tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuitscope: Option<Extras>,
}

/// The thresholds a graph was pruned with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PruningSettings {
    /// Node influence share kept.
    pub node_threshold: f32,
    /// Edge influence share kept.
    pub edge_threshold: f32,
}

/// circuitscope's fields in the metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    /// [`GRAPH_FORMAT_VERSION`].
    pub format_version: u32,
    /// The prompt's token ids.
    pub token_ids: Vec<u32>,
    /// The model's number of blocks.
    pub n_layer: usize,
    /// The kept graph's completeness (see [`Pruned::completeness`]).
    pub completeness: f64,
    /// The share of node influence the kept nodes carry.
    pub node_influence_kept: f64,
    /// Nodes and edges of the unpruned graph.
    pub full_nodes: usize,
    /// Edges of the unpruned graph.
    pub full_edges: usize,
}

/// The saved view of the graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    /// Pinned node ids.
    #[serde(rename = "pinnedIds", default)]
    pub pinned_ids: Vec<String>,
    /// Supernodes: each `[name, node_id, node_id, ...]`.
    #[serde(default)]
    pub supernodes: Vec<Vec<String>>,
    /// Which links the view shows (`both`).
    #[serde(rename = "linkType", default, skip_serializing_if = "Option::is_none")]
    pub link_type: Option<String>,
    /// The selected node.
    #[serde(rename = "clickedId", default, skip_serializing_if = "Option::is_none")]
    pub clicked_id: Option<String>,
    /// The subgraph's positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sg_pos: Option<String>,
}

/// One node in Neuronpedia's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    /// Our node id.
    pub node_id: String,
    /// The channel index, or the token of an embedding or logit; null for positions.
    pub feature: Option<u64>,
    /// The block number, `"E"` for embeddings, `"Lgt"` for logits.
    pub layer: Value,
    /// The token position.
    pub ctx_idx: usize,
    /// `embedding`, `logit`, or the channel's site (`mlp.post_act`, ...).
    pub feature_type: String,
    /// The UI's id (ours again).
    #[serde(rename = "jsNodeId")]
    pub js_node_id: String,
    /// The label (the session's, or the token's text).
    pub clerp: String,
    /// Influence on the targets.
    #[serde(default)]
    pub influence: Option<f64>,
    /// The node's activation on the prompt.
    #[serde(default)]
    pub activation: Option<f64>,
    /// The part of its input from no node (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<f64>,
    /// Whether the node is a target logit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_target_logit: Option<bool>,
    /// A target logit's weight (its probability for default targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_prob: Option<f64>,
}

/// One edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The source's node id.
    pub source: String,
    /// The target's node id.
    pub target: String,
    /// The edge weight.
    pub weight: f64,
}

/// What a graph file needs beyond the graph.
pub struct ExportInfo<'a> {
    /// The file's slug.
    pub slug: String,
    /// The model's name.
    pub scan: String,
    /// The prompt.
    pub prompt: String,
    /// Each token's text.
    pub prompt_tokens: Vec<String>,
    /// A label for a node id (the session's), if any.
    pub label: &'a dyn Fn(&AttrNode) -> String,
    /// The thresholds used.
    pub opts: PruneOptions,
    /// The default targets' settings (max logits, probability covered), when they were used.
    pub top: Option<(usize, f32)>,
    /// Pinned node ids.
    pub pinned: Vec<String>,
    /// Supernodes `[name, ids...]`.
    pub supernodes: Vec<Vec<String>>,
}

fn layer_value(n: &AttrNode, n_layer: usize) -> Value {
    match &n.kind {
        NodeKind::Embedding { .. } | NodeKind::Position | NodeKind::Bigram { .. } => Value::from("E"),
        NodeKind::Logit { .. } => Value::from("Lgt"),
        NodeKind::Channel { node } => Value::from(node.layer.unwrap_or(n_layer)),
    }
}

fn feature_type(n: &AttrNode) -> String {
    match &n.kind {
        NodeKind::Embedding { .. } => "embedding".into(),
        NodeKind::Position => "positional embedding".into(),
        NodeKind::Bigram { .. } => "bigram table".into(),
        NodeKind::Logit { .. } => "logit".into(),
        NodeKind::Channel { node } => node.site.name().into(),
    }
}

/// The kept part of `g` as a graph file.
pub fn to_file(g: &AttributionGraph, p: &Pruned, info: ExportInfo) -> GraphFile {
    let nodes = g
        .nodes
        .iter()
        .enumerate()
        .filter(|&(i, _)| p.keep_node[i])
        .map(|(i, n)| {
            let logit = matches!(n.kind, NodeKind::Logit { .. });
            GraphNode {
                node_id: n.id(),
                feature: match &n.kind {
                    NodeKind::Embedding { token } | NodeKind::Bigram { token } => Some(*token as u64),
                    NodeKind::Logit { token, .. } => Some(*token as u64),
                    NodeKind::Channel { node } => Some(node.index as u64),
                    NodeKind::Position => None,
                },
                layer: layer_value(n, g.n_layer),
                ctx_idx: n.pos,
                feature_type: feature_type(n),
                js_node_id: n.id(),
                clerp: (info.label)(n),
                influence: Some(p.influence[i]),
                activation: Some(n.activation as f64),
                bias: Some(n.bias as f64),
                is_target_logit: logit.then_some(true),
                token_prob: logit.then(|| n.target_weight() as f64),
            }
        })
        .collect();
    let links = g
        .edges
        .iter()
        .zip(&p.keep_edge)
        .filter(|(_, &k)| k)
        .map(|(e, _)| Link {
            source: g.nodes[e.src as usize].id(),
            target: g.nodes[e.dst as usize].id(),
            weight: e.weight as f64,
        })
        .collect();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0);
    GraphFile {
        metadata: Metadata {
            slug: info.slug,
            scan: info.scan,
            prompt_tokens: info.prompt_tokens,
            prompt: info.prompt,
            node_threshold: Some(info.opts.node_threshold),
            info: Some(serde_json::json!({
                "generator": {
                    "name": "circuitscope attribute",
                    "version": env!("CARGO_PKG_VERSION"),
                },
                "create_time_ms": now_ms,
            })),
            generation_settings: info
                .top
                .map(|(max, cover)| serde_json::json!({ "max_n_logits": max, "desired_logit_prob": cover })),
            pruning_settings: Some(PruningSettings {
                node_threshold: info.opts.node_threshold,
                edge_threshold: info.opts.edge_threshold,
            }),
            circuitscope: Some(Extras {
                format_version: GRAPH_FORMAT_VERSION,
                token_ids: g.ids.clone(),
                n_layer: g.n_layer,
                completeness: p.completeness,
                node_influence_kept: p.node_influence_kept,
                full_nodes: g.nodes.len(),
                full_edges: g.edges.len(),
            }),
        },
        q_params: QParams {
            pinned_ids: info.pinned,
            supernodes: info.supernodes,
            link_type: Some("both".into()),
            clicked_id: None,
            sg_pos: None,
        },
        nodes,
        links,
    }
}

/// Checks `doc` against what Neuronpedia's graph schema requires: the four top-level parts; the metadata's
/// `slug`, `scan`, `prompt` (strings) and `prompt_tokens` (strings); `qParams.pinnedIds` strings and
/// `supernodes` an array; each node's `node_id`, `jsNodeId`, `feature_type`, `clerp` (strings), `feature`
/// (integer or null), `layer` (string or integer), `ctx_idx` (integer), `influence` and `activation` (number or
/// null when present); each link's `source`, `target` (strings) and `weight` (number). The first problem is the
/// error, with its path.
pub fn check_schema(doc: &Value) -> Result<(), String> {
    let obj = |v: &Value, at: &str| -> Result<(), String> {
        v.is_object()
            .then_some(())
            .ok_or_else(|| format!("{at}: not an object"))
    };
    let field = |v: &'_ Value, at: &str, key: &str| -> Result<Value, String> {
        v.get(key).cloned().ok_or_else(|| format!("{at}: missing `{key}`"))
    };
    let string = |v: &Value, at: &str| -> Result<(), String> {
        v.is_string().then_some(()).ok_or_else(|| format!("{at}: not a string"))
    };
    let int = |v: &Value| v.is_u64() || v.is_i64();
    obj(doc, "the document")?;
    let meta = field(doc, "the document", "metadata")?;
    obj(&meta, "metadata")?;
    for k in ["slug", "scan", "prompt"] {
        string(&field(&meta, "metadata", k)?, &format!("metadata.{k}"))?;
    }
    let toks = field(&meta, "metadata", "prompt_tokens")?;
    let toks = toks.as_array().ok_or("metadata.prompt_tokens: not an array")?;
    for (i, t) in toks.iter().enumerate() {
        string(t, &format!("metadata.prompt_tokens[{i}]"))?;
    }
    if let Some(nt) = meta.get("node_threshold") {
        nt.is_number()
            .then_some(())
            .ok_or("metadata.node_threshold: not a number")?;
    }
    let q = field(doc, "the document", "qParams")?;
    obj(&q, "qParams")?;
    if let Some(p) = q.get("pinnedIds") {
        let p = p.as_array().ok_or("qParams.pinnedIds: not an array")?;
        for (i, x) in p.iter().enumerate() {
            string(x, &format!("qParams.pinnedIds[{i}]"))?;
        }
    }
    if let Some(s) = q.get("supernodes") {
        s.is_array().then_some(()).ok_or("qParams.supernodes: not an array")?;
    }
    for k in ["linkType", "clickedId", "sg_pos"] {
        if let Some(v) = q.get(k) {
            string(v, &format!("qParams.{k}"))?;
        }
    }
    let nodes = field(doc, "the document", "nodes")?;
    let nodes = nodes.as_array().ok_or("nodes: not an array")?;
    for (i, n) in nodes.iter().enumerate() {
        let at = format!("nodes[{i}]");
        obj(n, &at)?;
        for k in ["node_id", "jsNodeId", "feature_type", "clerp"] {
            string(&field(n, &at, k)?, &format!("{at}.{k}"))?;
        }
        let f = field(n, &at, "feature")?;
        (int(&f) || f.is_null())
            .then_some(())
            .ok_or(format!("{at}.feature: not an integer or null"))?;
        let l = field(n, &at, "layer")?;
        (int(&l) || l.is_string())
            .then_some(())
            .ok_or(format!("{at}.layer: not a string or integer"))?;
        int(&field(n, &at, "ctx_idx")?)
            .then_some(())
            .ok_or(format!("{at}.ctx_idx: not an integer"))?;
        for k in ["influence", "activation"] {
            if let Some(v) = n.get(k) {
                (v.is_number() || v.is_null())
                    .then_some(())
                    .ok_or(format!("{at}.{k}: not a number or null"))?;
            }
        }
    }
    let links = field(doc, "the document", "links")?;
    let links = links.as_array().ok_or("links: not an array")?;
    for (i, l) in links.iter().enumerate() {
        let at = format!("links[{i}]");
        obj(l, &at)?;
        for k in ["source", "target"] {
            string(&field(l, &at, k)?, &format!("{at}.{k}"))?;
        }
        field(l, &at, "weight")?
            .is_number()
            .then_some(())
            .ok_or(format!("{at}.weight: not a number"))?;
    }
    Ok(())
}

/// Reads a graph file's text: checked against the schema, then every link's ends and every pinned or
/// supernode id must be nodes of the file.
pub fn parse(text: &str) -> Result<GraphFile, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    check_schema(&doc)?;
    let file: GraphFile = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    if let Some(x) = &file.metadata.circuitscope {
        if x.format_version > GRAPH_FORMAT_VERSION {
            return Err(format!(
                "graph format version {} is newer than this circuitscope reads ({GRAPH_FORMAT_VERSION})",
                x.format_version
            ));
        }
    }
    let ids: std::collections::HashSet<&str> = file.nodes.iter().map(|n| n.node_id.as_str()).collect();
    for (i, l) in file.links.iter().enumerate() {
        for end in [&l.source, &l.target] {
            if !ids.contains(end.as_str()) {
                return Err(format!("links[{i}]: `{end}` is not a node of the graph"));
            }
        }
    }
    for id in file
        .q_params
        .pinned_ids
        .iter()
        .chain(file.q_params.supernodes.iter().flat_map(|s| s.iter().skip(1)))
    {
        if !ids.contains(id.as_str()) {
            return Err(format!("qParams: `{id}` is not a node of the graph"));
        }
    }
    Ok(file)
}

impl GraphFile {
    /// Each node's input in the file: its bias plus its kept incoming links (what the kept graph explains of
    /// it), by node id.
    pub fn inputs(&self) -> std::collections::HashMap<String, f64> {
        let mut sum: std::collections::HashMap<String, f64> = self
            .nodes
            .iter()
            .map(|n| (n.node_id.clone(), n.bias.unwrap_or(0.0)))
            .collect();
        for l in &self.links {
            *sum.entry(l.target.clone()).or_default() += l.weight;
        }
        sum
    }

    /// The positioned channel of a node id, for channel nodes.
    pub fn channel(id: &str) -> Option<PositionedNode> {
        id.parse().ok()
    }
}
