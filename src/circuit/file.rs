//! The circuit file: one JSON document that holds what pruning produces (spec E.10) and what the reference
//! viewer's `viz_data.pt` carries (spec F.2), so that our pruner and the import write the same thing.
//!
//! **Loss scale.** Every loss in the file is a *raw* task loss on the reference's scale, which is twice the
//! per-side contrast loss (the two-sided loss of spec D.2 sums both sides). The reference viewer halves them for
//! display ("loss before pruning = loss/2"); use [`halved`], [`Losses::halved`], [`CircuitNode::delta_halved`]
//! and [`BlockLoss::delta_halved`] for display.
//!
//! Written pretty-printed with a stable key order (every object's keys sorted), arrays of numbers on one line,
//! atomically (temp file, fsync, rename). Floats read back exactly when they have at most 15 significant digits
//! (imported f32 values are stored with their shortest f32 decimal for this reason); longer f64s may move by an
//! ulp, since serde_json's default float parser is not exact for them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{io_err, CircuitError, CircuitJsonProblem, InvalidCircuit, Result};
use super::node_id::{split_indexed, NodeId, NodeIdError};
use crate::model::{Checkpoint, Config};

/// The newest circuit-file format this build reads and writes.
pub const CIRCUIT_FORMAT_VERSION: u32 = 2;

/// The version a circuit without removed edges is written as, so that readers of version 1 still open it;
/// removed edges change what the circuit means, so a file with them says version 2 and older readers refuse it.
pub const CIRCUIT_FORMAT_BASE_VERSION: u32 = 1;

/// A raw (2×) loss halved for display, as the reference viewer shows it.
pub fn halved(raw: f64) -> f64 {
    raw / 2.0
}

/// The model a circuit was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    /// [`model_fingerprint`] of the weights.
    pub fingerprint: String,
    /// For display only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For display only (where the model was when the circuit was made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Number of pruning nodes of the model ([`Config::num_nodes`]).
    pub num_total_nodes: usize,
}

/// Raw task losses (2× scale, see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Losses {
    /// The full (unpruned) model.
    pub full: f64,
    /// The circuit: every node outside it mean-ablated.
    pub circuit: f64,
    /// The circuit after logit calibration (spec E.6), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<f64>,
    /// Filled by `circuit check`: the circuit alone (same as `circuit`, measured on held-out pairs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sufficiency: Option<f64>,
    /// Filled by `circuit check`: the model with only the circuit ablated (inverse pruning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub necessity: Option<f64>,
    /// Task accuracy of the full model, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_accuracy: Option<f64>,
    /// Task accuracy of the circuit, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_accuracy: Option<f64>,
    /// Filled by `circuit check`: accuracy of the circuit alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sufficiency_accuracy: Option<f64>,
    /// Filled by `circuit check`: accuracy with the circuit ablated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub necessity_accuracy: Option<f64>,
    /// Filled by `circuit check`: held-out pairs behind the sufficiency and necessity numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_pairs: Option<usize>,
}

impl Losses {
    /// Every loss halved for display (accuracies unchanged).
    pub fn halved(&self) -> Losses {
        Losses {
            full: halved(self.full),
            circuit: halved(self.circuit),
            calibrated: self.calibrated.map(halved),
            sufficiency: self.sufficiency.map(halved),
            necessity: self.necessity.map(halved),
            full_accuracy: self.full_accuracy,
            circuit_accuracy: self.circuit_accuracy,
            sufficiency_accuracy: self.sufficiency_accuracy,
            necessity_accuracy: self.necessity_accuracy,
            check_pairs: self.check_pairs,
        }
    }
}

/// One node of a circuit, with its importance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitNode {
    /// Which model channel the node is.
    pub id: NodeId,
    /// Raw loss of the circuit with this node also ablated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ablated_loss: Option<f64>,
}

impl CircuitNode {
    /// The node's importance for display: (ablated − circuit) / 2, on the halved scale throughout (the reference
    /// viewer mixes a halved and a raw loss here; this does not).
    pub fn delta_halved(&self, losses: &Losses) -> Option<f64> {
        self.ablated_loss.map(|l| halved(l - losses.circuit))
    }
}

/// A sublayer, `<layer>.attn` or `<layer>.mlp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId {
    /// Block index, 0-based.
    pub layer: usize,
    /// True for the MLP sublayer, false for attention.
    pub mlp: bool,
}

impl BlockId {
    /// The block a (non-final) node belongs to.
    pub fn of(node: &NodeId) -> Option<BlockId> {
        node.layer.map(|layer| BlockId {
            layer,
            mlp: !node.site.is_attn(),
        })
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.layer, if self.mlp { "mlp" } else { "attn" })
    }
}

/// A string that is not a block id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid block `{input}` (expected e.g. `0.attn` or `1.mlp`)")]
pub struct BlockIdError {
    /// The string as given.
    pub input: String,
}

impl FromStr for BlockId {
    type Err = BlockIdError;
    fn from_str(s: &str) -> std::result::Result<Self, BlockIdError> {
        let err = || BlockIdError { input: s.to_string() };
        let (l, kind) = s.split_once('.').ok_or_else(err)?;
        let layer = l.parse().map_err(|_| err())?;
        let mlp = match kind {
            "attn" => false,
            "mlp" => true,
            _ => return Err(err()),
        };
        Ok(BlockId { layer, mlp })
    }
}

impl Serialize for BlockId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BlockId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The loss when a whole sublayer's circuit nodes are ablated at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockLoss {
    /// The sublayer.
    pub block: BlockId,
    /// Raw loss of the circuit with this whole block ablated.
    pub ablated_loss: f64,
}

impl BlockLoss {
    /// (ablated − circuit) / 2. The reference viewer shows `ablated − circuit/2`, mixing scales.
    pub fn delta_halved(&self, losses: &Losses) -> f64 {
        halved(self.ablated_loss - losses.circuit)
    }
}

/// One end of an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EdgeEnd {
    /// A circuit node.
    Node(NodeId),
    /// The bias of the target's linear layer (`bias`).
    Bias,
    /// The token embedding (`embed`), or one token's row of it (`embed[17]`).
    Embed(Option<u32>),
    /// The positional embedding (`pos_embed`).
    PosEmbed,
    /// The unembedding / logits (`unembed`), or one token's logit (`unembed[17]`).
    Unembed(Option<u32>),
}

impl fmt::Display for EdgeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeEnd::Node(n) => write!(f, "{n}"),
            EdgeEnd::Bias => f.write_str("bias"),
            EdgeEnd::Embed(None) => f.write_str("embed"),
            EdgeEnd::Embed(Some(t)) => write!(f, "embed[{t}]"),
            EdgeEnd::PosEmbed => f.write_str("pos_embed"),
            EdgeEnd::Unembed(None) => f.write_str("unembed"),
            EdgeEnd::Unembed(Some(t)) => write!(f, "unembed[{t}]"),
        }
    }
}

/// A string that is not an edge end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeEndError {
    /// `embed[..]` or `unembed[..]` with something other than a token id inside.
    #[error("invalid edge end `{input}`: the token id is not a number")]
    TokenId {
        /// The string as given.
        input: String,
    },
    /// Neither a pseudo-node nor a node id.
    #[error("{0}; other edge ends are `bias`, `embed`, `embed[TOKEN]`, `pos_embed`, `unembed`, `unembed[TOKEN]`")]
    NotANode(NodeIdError),
}

impl FromStr for EdgeEnd {
    type Err = EdgeEndError;
    fn from_str(s: &str) -> std::result::Result<Self, EdgeEndError> {
        let token = |idx: &str| {
            idx.parse::<u32>()
                .map_err(|_| EdgeEndError::TokenId { input: s.to_string() })
        };
        match s {
            "bias" => return Ok(EdgeEnd::Bias),
            "embed" => return Ok(EdgeEnd::Embed(None)),
            "pos_embed" => return Ok(EdgeEnd::PosEmbed),
            "unembed" => return Ok(EdgeEnd::Unembed(None)),
            _ => {}
        }
        match split_indexed(s) {
            Some(("embed", idx)) => Ok(EdgeEnd::Embed(Some(token(idx)?))),
            Some(("unembed", idx)) => Ok(EdgeEnd::Unembed(Some(token(idx)?))),
            _ => s.parse::<NodeId>().map(EdgeEnd::Node).map_err(EdgeEndError::NotANode),
        }
    }
}

impl Serialize for EdgeEnd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EdgeEnd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// An edge between two circuit nodes (or a bias/embedding end), as stored in the circuit file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitEdge {
    /// Where the edge starts (the upstream end).
    pub source: EdgeEnd,
    /// Where the edge ends (the downstream end).
    pub target: EdgeEnd,
    /// The model weight joining them (the reference's `pair_data_connections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Loss change when this edge is ablated (the reference's `pair_data`, raw scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ablation_delta: Option<f64>,
}

/// Activations of the circuit's nodes on the task's pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSamples {
    /// (2N, T) token ids, zero right-padded as the reference; rows 0..N are class 1, N..2N class 2.
    pub tokens: Vec<Vec<u32>>,
    /// Node → (2N, T) activations, aligned with `tokens`.
    pub acts: BTreeMap<NodeId, Vec<Vec<f32>>>,
}

/// One pretraining document around a position whose activation falls in a quantile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    /// The document's token ids around the pivot.
    pub tokens: Vec<u32>,
    /// The node's activation at each token.
    pub acts: Vec<f32>,
    /// The position whose activation falls in the quantile.
    pub pivot: usize,
}

/// The exemplars of one quantile (0.001, 0.01, 0.1, 0.5): from the bottom and from the top of the distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileExemplars {
    /// The quantile, as a fraction (e.g. 0.01).
    pub quantile: f64,
    /// Exemplars from the bottom `quantile` of the activation distribution.
    pub bottom: Vec<Exemplar>,
    /// Exemplars from the top `quantile` of the activation distribution.
    pub top: Vec<Exemplar>,
}

/// A circuit file: the nodes a pruning run (or an import) kept for one task, with losses, edges and exemplars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitFile {
    /// The format this was written in; readers refuse newer versions.
    pub format_version: u32,
    /// The model (fingerprint, name) the circuit was found in.
    pub model: ModelRef,
    /// The task's name (e.g. `single_double_quote`).
    pub task: String,
    /// Where the circuit came from: `prune`, `import:viz_data.pt`, ...
    pub source: String,
    /// Losses of the full model, the circuit and the calibrated circuit.
    pub losses: Losses,
    /// In forward order.
    pub nodes: Vec<CircuitNode>,
    /// Per-sublayer ablation losses, in forward order.
    #[serde(default)]
    pub blocks: Vec<BlockLoss>,
    /// Edges between circuit nodes, with weights and ablation deltas where known.
    #[serde(default)]
    pub edges: Vec<CircuitEdge>,
    /// The pruning run's settings as given, kept verbatim for reproducibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_config: Option<serde_json::Value>,
    /// (iteration, loss) of the pruning search.
    #[serde(default)]
    pub loss_curve: Vec<(usize, f64)>,
    /// The circuit nodes' activations on the task's pairs, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_samples: Option<TaskSamples>,
    /// Pretraining exemplars per node, one entry per quantile (imported circuits carry the reference's here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemplars: Option<BTreeMap<NodeId, Vec<QuantileExemplars>>>,
    /// Weight edges between circuit nodes taken out of the circuit (`circuit minimize`): each is mean-ablated
    /// (its weight removed, the source's mean times it added to the target's bias) whenever the circuit runs alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_edges: Vec<RemovedEdge>,
    /// What `circuit minimize` removed and the loss after each removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimize: Option<serde_json::Value>,
}

/// A weight edge removed from a circuit: `source → target`, both circuit nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedEdge {
    /// The upstream node.
    pub source: NodeId,
    /// The downstream node.
    pub target: NodeId,
}

impl CircuitFile {
    /// An empty circuit for `model`, to be filled in.
    pub fn new(model: ModelRef, task: impl Into<String>, source: impl Into<String>) -> Self {
        CircuitFile {
            format_version: CIRCUIT_FORMAT_BASE_VERSION,
            model,
            task: task.into(),
            source: source.into(),
            losses: Losses::default(),
            nodes: Vec::new(),
            blocks: Vec::new(),
            edges: Vec::new(),
            prune_config: None,
            loss_curve: Vec::new(),
            task_samples: None,
            exemplars: None,
            removed_edges: Vec::new(),
            minimize: None,
        }
    }

    /// Reads a circuit file, refusing newer format versions.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_json_str(&text).map_err(|e| match e {
            FromJsonError::Newer(found) => CircuitError::NewerVersion {
                path: path.to_path_buf(),
                found,
                supported: CIRCUIT_FORMAT_VERSION,
            },
            FromJsonError::Bad(problem) => CircuitError::Json {
                path: path.to_path_buf(),
                problem,
            },
        })
    }

    fn from_json_str(text: &str) -> std::result::Result<Self, FromJsonError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| FromJsonError::Bad(e.into()))?;
        let version = value
            .get("format_version")
            .ok_or(FromJsonError::Bad(CircuitJsonProblem::MissingVersion))?
            .as_u64()
            .ok_or(FromJsonError::Bad(CircuitJsonProblem::VersionNotInteger))?;
        if version > CIRCUIT_FORMAT_VERSION as u64 {
            return Err(FromJsonError::Newer(version.min(u32::MAX as u64) as u32));
        }
        serde_json::from_value(value).map_err(|e| FromJsonError::Bad(e.into()))
    }

    /// The file's text: pretty JSON with arrays of scalars on one line.
    pub fn to_json_string(&self) -> Result<String> {
        let mut value = serde_json::to_value(self).map_err(|e| self.invalid(InvalidCircuit::Serialise(e)))?;
        // The version says what a reader must understand: only removed edges need version 2.
        value["format_version"] = if self.removed_edges.is_empty() {
            CIRCUIT_FORMAT_BASE_VERSION
        } else {
            CIRCUIT_FORMAT_VERSION
        }
        .into();
        let mut out = String::new();
        write_pretty(&value, 0, &mut out);
        out.push('\n');
        Ok(out)
    }

    /// Writes atomically ([`crate::fsio::write_atomic`]; a link is written through).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_json_string()?;
        crate::fsio::write_atomic(path, text.as_bytes()).map_err(|e| io_err(path)(e.into_io()))
    }

    fn invalid(&self, reason: InvalidCircuit) -> CircuitError {
        CircuitError::Invalid {
            circuit: self.task.clone(),
            reason: Box::new(reason),
        }
    }

    /// Checks that every node id (in nodes, edges, blocks, samples, exemplars) exists in a model of config `cfg`,
    /// and that token ids fit its vocabulary.
    pub fn validate(&self, cfg: &Config) -> Result<()> {
        if self.format_version > CIRCUIT_FORMAT_VERSION {
            return Err(self.invalid(InvalidCircuit::NewerVersion {
                found: self.format_version,
                supported: CIRCUIT_FORMAT_VERSION,
            }));
        }
        if self.model.num_total_nodes != cfg.num_nodes() {
            return Err(self.invalid(InvalidCircuit::NodeCount {
                made_for: self.model.num_total_nodes,
                model: cfg.num_nodes(),
            }));
        }
        let check = |n: &NodeId, section: &'static str| {
            n.check(cfg)
                .map_err(|error| self.invalid(InvalidCircuit::NodeOutsideModel { section, error }))
        };
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            check(&n.id, "nodes")?;
            if !seen.insert(n.id) {
                return Err(self.invalid(InvalidCircuit::DuplicateNode { node: n.id }));
            }
        }
        for b in &self.blocks {
            if b.block.layer >= cfg.n_layer {
                return Err(self.invalid(InvalidCircuit::NoSuchBlock {
                    block: b.block,
                    n_layer: cfg.n_layer,
                }));
            }
        }
        for e in &self.edges {
            for end in [&e.source, &e.target] {
                match end {
                    EdgeEnd::Node(n) => check(n, "edges")?,
                    EdgeEnd::Embed(Some(t)) | EdgeEnd::Unembed(Some(t)) if *t as usize >= cfg.vocab_size => {
                        return Err(self.invalid(InvalidCircuit::EdgeToken {
                            end: *end,
                            token: *t,
                            vocab: cfg.vocab_size,
                        }))
                    }
                    _ => {}
                }
            }
        }
        let members: std::collections::HashSet<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        for e in &self.removed_edges {
            for n in [&e.source, &e.target] {
                if !members.contains(n) {
                    return Err(self.invalid(InvalidCircuit::RemovedEdgeEnd {
                        from: e.source,
                        to: e.target,
                        node: *n,
                    }));
                }
            }
        }
        let check_tokens = |toks: &[u32], section: &'static str| -> Result<()> {
            match toks.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                Some(&token) => Err(self.invalid(InvalidCircuit::Token {
                    section,
                    token,
                    vocab: cfg.vocab_size,
                })),
                None => Ok(()),
            }
        };
        if let Some(ts) = &self.task_samples {
            for row in &ts.tokens {
                check_tokens(row, "task_samples")?;
            }
            let (rows, cols) = (ts.tokens.len(), ts.tokens.first().map_or(0, Vec::len));
            for (n, acts) in &ts.acts {
                check(n, "task_samples")?;
                if acts.len() != rows || acts.iter().any(|r| r.len() != cols) {
                    return Err(self.invalid(InvalidCircuit::SampleShape { node: *n, rows, cols }));
                }
            }
        }
        if let Some(ex) = &self.exemplars {
            for (n, qs) in ex {
                check(n, "exemplars")?;
                for e in qs.iter().flat_map(|q| q.bottom.iter().chain(&q.top)) {
                    check_tokens(&e.tokens, "exemplars")?;
                    if e.acts.len() != e.tokens.len() || e.pivot >= e.tokens.len().max(1) {
                        return Err(self.invalid(InvalidCircuit::ExemplarShape {
                            node: *n,
                            tokens: e.tokens.len(),
                            acts: e.acts.len(),
                            pivot: e.pivot,
                        }));
                    }
                }
            }
        }
        Ok(())
    }

    /// Refuses a model whose fingerprint differs from the one the circuit was made for.
    pub fn check_model(&self, fingerprint: &str) -> Result<()> {
        if self.model.fingerprint != fingerprint {
            let made_for = match &self.model.name {
                Some(n) => format!("{n} ({})", self.model.fingerprint),
                None => self.model.fingerprint.clone(),
            };
            return Err(CircuitError::ModelMismatch {
                circuit: self.task.clone(),
                made_for,
                given: fingerprint.to_string(),
            });
        }
        Ok(())
    }

    /// The node ids, in file order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The node with id `id`, if it is in the circuit.
    pub fn node(&self, id: &NodeId) -> Option<&CircuitNode> {
        self.nodes.iter().find(|n| n.id == *id)
    }

    /// Nodes grouped by block (`final_resid` nodes under None), in forward order.
    pub fn nodes_by_block(&self) -> BTreeMap<Option<BlockId>, Vec<&CircuitNode>> {
        let mut out: BTreeMap<Option<BlockId>, Vec<&CircuitNode>> = BTreeMap::new();
        for n in &self.nodes {
            out.entry(BlockId::of(&n.id)).or_default().push(n);
        }
        // None sorts first in a BTreeMap; callers that want final_resid last iterate with `.rev()` on that key.
        out
    }
}

enum FromJsonError {
    Newer(u32),
    Bad(CircuitJsonProblem),
}

/// Pretty JSON: one object key per line, arrays of scalars on one line, other arrays one item per line.
fn write_pretty(v: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    let pad = |n: usize, out: &mut String| out.extend(std::iter::repeat_n("  ", n));
    match v {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            for (i, (k, x)) in map.iter().enumerate() {
                pad(indent + 1, out);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_pretty(x, indent + 1, out);
                if i + 1 < map.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            pad(indent, out);
            out.push('}');
        }
        Value::Array(items) if items.iter().any(|x| x.is_object() || x.is_array()) => {
            let all_scalar_rows = items.iter().all(|x| {
                x.as_array()
                    .is_some_and(|r| r.iter().all(|y| !y.is_object() && !y.is_array()))
            });
            out.push_str("[\n");
            for (i, x) in items.iter().enumerate() {
                pad(indent + 1, out);
                if all_scalar_rows {
                    out.push_str(&x.to_string());
                } else {
                    write_pretty(x, indent + 1, out);
                }
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            pad(indent, out);
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The architecture fields of a config that the fingerprint covers (not training-only switches such as dropout,
/// flash or grad_checkpointing).
fn architecture_json(cfg: &Config) -> String {
    let mut arch = serde_json::json!({
        "block_size": cfg.block_size,
        "vocab_size": cfg.vocab_size,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "d_head": cfg.d_head,
        "d_model": cfg.d_model,
        "d_mlp": cfg.d_mlp,
        "bias": cfg.bias,
        "ln_bias": cfg.ln_bias,
        "rms_norm": cfg.rms_norm,
        "residual_activation_type": cfg.residual_activation_type,
        "activation_type": cfg.activation_type,
        "afrac": cfg.afrac,
        "afrac_loctypes": cfg.afrac_loctypes,
        "tied_unembed": cfg.tied_unembed,
        "enable_bigram_table": cfg.enable_bigram_table,
        "d_pos_emb": cfg.d_pos_emb,
        "sinusoidal_cat_pos_emb": cfg.sinusoidal_cat_pos_emb,
        "sink": cfg.sink,
    });
    // GPT-2's attention-scale switches enter only when they differ from the reference's fixed choice, so that
    // the fingerprints of models made before they existed stay the same.
    if !cfg.scale_attn_weights || cfg.scale_attn_by_inverse_layer_idx {
        arch["scale_attn_weights"] = cfg.scale_attn_weights.into();
        arch["scale_attn_by_inverse_layer_idx"] = cfg.scale_attn_by_inverse_layer_idx.into();
    }
    arch.to_string()
}

/// The model's identity: sha256 (hex, first 16 characters) over the config's architecture fields and every
/// tensor's name, shape and f32 values in name order. Dense and CSR storage, and .pt and safetensors, of the same
/// weights give the same fingerprint (−0.0 counts as 0.0 and NaNs are canonical, since CSR drops zeros).
pub fn model_fingerprint(ckpt: &Checkpoint, cfg: &Config) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"circuitscope-model-fingerprint-v1\n");
    h.update(architecture_json(cfg).as_bytes());
    for (name, stored) in &ckpt.tensors {
        let t = stored.to_dense()?.to_dtype(candle_core::DType::F32)?;
        h.update(b"\n");
        h.update(name.as_bytes());
        h.update(format!("{:?}", t.dims()).as_bytes());
        let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
        let mut buf = Vec::with_capacity(values.len() * 4);
        for v in values {
            let v = if v == 0.0 {
                0.0f32
            } else if v.is_nan() {
                f32::NAN
            } else {
                v
            };
            buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        h.update(&buf);
    }
    let digest = h.finalize();
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_ends_round_trip() {
        for s in [
            "2.attn.v[44]",
            "bias",
            "embed",
            "embed[17]",
            "pos_embed",
            "unembed",
            "unembed[3]",
            "final_resid[1]",
        ] {
            let e: EdgeEnd = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
        }
        assert!("embed[x]".parse::<EdgeEnd>().is_err());
        assert!("2.attn.y[1]".parse::<EdgeEnd>().is_err());
        assert_eq!("1.mlp".parse::<BlockId>().unwrap().to_string(), "1.mlp");
        assert!("1.foo".parse::<BlockId>().is_err());
    }

    #[test]
    fn pretty_keeps_number_rows_inline() {
        let v = serde_json::json!({"a": [1, 2, 3], "b": [[1, 2], [3, 4]], "c": [{"x": 1}]});
        let mut s = String::new();
        write_pretty(&v, 0, &mut s);
        assert!(s.contains("\"a\": [1,2,3]"), "{s}");
        assert!(s.contains("    [1,2],\n"), "{s}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
    }

    #[test]
    fn unreadable_circuit_json_names_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let cause = |text: &str| {
            std::fs::write(&path, text).unwrap();
            match CircuitFile::load(&path) {
                Err(CircuitError::Json { problem, .. }) => problem,
                other => panic!("{:?}", other.err()),
            }
        };
        assert!(matches!(cause("{\"nodes\": []}"), CircuitJsonProblem::MissingVersion));
        assert!(matches!(
            cause("{\"format_version\": -1}"),
            CircuitJsonProblem::VersionNotInteger
        ));
        match cause("not json") {
            CircuitJsonProblem::Json(e) => assert!(e.is_syntax()),
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, "{\"format_version\": 1}").unwrap();
        let e = CircuitFile::load(&path).unwrap_err();
        assert!(matches!(
            &e,
            CircuitError::Json {
                problem: CircuitJsonProblem::Json(_),
                ..
            }
        ));
        assert!(
            e.to_string().contains(": not a valid circuit file: missing field"),
            "{e}"
        );
    }
}
