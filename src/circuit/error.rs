//! Errors of circuit files, the circuit graph and imports. Each names the file (or the circuit) and what is
//! wrong, on one line.

use std::path::PathBuf;

use crate::circuit::{BlockId, EdgeEnd, NodeCheckError, NodeId};
use crate::model::torch_pickle::ZipProblem;
use crate::model::ModelError;

/// Why a circuit could not be read, imported, checked or turned into a graph.
#[derive(Debug, thiserror::Error)]
pub enum CircuitError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The circuit (or viz_data.pt) file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid circuit json.
    #[error("{path}: not a valid circuit file: {msg}")]
    Json {
        /// The circuit file.
        path: PathBuf,
        /// The json parser's message.
        msg: String,
    },
    /// The file was written by a newer build.
    #[error(
        "{path}: format_version {found} is newer than this circuitscope reads ({supported}); upgrade circuitscope"
    )]
    NewerVersion {
        /// The circuit file.
        path: PathBuf,
        /// The `format_version` in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A reference `viz_data.pt` could not be unpickled.
    #[error("{path}: not a readable viz_data.pt: {problem}")]
    Pickle {
        /// The viz_data.pt file.
        path: PathBuf,
        /// What the torch zip reader said.
        #[source]
        problem: ZipProblem,
    },
    /// A `viz_data.pt` unpickled, but its contents are not laid out as the reference writes them.
    #[error("{path}: unexpected viz_data.pt structure at `{at}`: {msg}")]
    Structure {
        /// The viz_data.pt file.
        path: PathBuf,
        /// Path of keys to the offending value, e.g. `importances[3]`.
        at: String,
        /// What was expected there.
        msg: String,
    },
    /// The circuit's content is inconsistent with itself or with the model (unknown node, token outside the
    /// vocabulary, mismatched shapes).
    #[error("circuit `{circuit}`: {reason}")]
    Invalid {
        /// The circuit's task name or file, as displayed.
        circuit: String,
        /// What is wrong with it (boxed: the reasons carry node ids, and every circuit `Result` pays for the
        /// largest variant).
        reason: Box<InvalidCircuit>,
    },
    /// The circuit was made for another model's weights.
    #[error("circuit `{circuit}` was made for model {made_for}, not {given}")]
    ModelMismatch {
        /// The circuit's task name or file, as displayed.
        circuit: String,
        /// The fingerprint recorded in the circuit.
        made_for: String,
        /// The fingerprint of the model given.
        given: String,
    },
    /// A node of the graph does not exist in the model.
    #[error("circuit graph: {0}")]
    NodeOutsideModel(#[source] NodeCheckError),
    /// A query named a node that is not a vertex of the graph.
    #[error("circuit graph: `{node}` is not in the circuit")]
    NotInCircuit {
        /// The node asked for.
        node: crate::circuit::GraphNode,
    },
    /// The flow edges (residual and weight edges in forward order) loop, so no forward order exists.
    #[error("circuit graph: the flow edges contain a cycle")]
    FlowCycle,
    /// Loading or reading the model's weights failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// What is inconsistent in a circuit (the `reason` of [`CircuitError::Invalid`]).
#[derive(Debug, thiserror::Error)]
pub enum InvalidCircuit {
    /// The file's `format_version` is newer than this build reads.
    #[error("format_version {found} is newer than this circuitscope reads ({supported})")]
    NewerVersion {
        /// The version in the circuit.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The circuit was made for a model with another number of nodes.
    #[error("made for a model with {made_for} nodes, but this model has {model} nodes")]
    NodeCount {
        /// `model.num_total_nodes` in the circuit.
        made_for: usize,
        /// The model's node count.
        model: usize,
    },
    /// A node id in `section` does not exist in the model.
    #[error("{section}: {error}")]
    NodeOutsideModel {
        /// The part of the file holding it (`nodes`, `edges`, `task_samples`, `exemplars`).
        section: &'static str,
        /// Which node, and why it does not exist.
        error: NodeCheckError,
    },
    /// A node is listed twice in `nodes`.
    #[error("nodes: `{node}` is listed twice")]
    DuplicateNode {
        /// The node.
        node: NodeId,
    },
    /// A block ablation names a layer the model does not have.
    #[error("blocks: `{block}` does not exist (the model has {n_layer} layers)")]
    NoSuchBlock {
        /// The block.
        block: BlockId,
        /// The model's layer count.
        n_layer: usize,
    },
    /// An edge's embedding or unembedding end names a token outside the vocabulary.
    #[error("edges: `{end}`: token {token} is outside the vocabulary ({vocab})")]
    EdgeToken {
        /// The edge end.
        end: EdgeEnd,
        /// The token id.
        token: u32,
        /// The model's vocabulary size.
        vocab: usize,
    },
    /// A removed edge has an end that is not a node of the circuit.
    #[error("removed_edges: `{from}` → `{to}`: `{node}` is not a node of the circuit")]
    RemovedEdgeEnd {
        /// The edge's source.
        from: NodeId,
        /// The edge's target.
        to: NodeId,
        /// The end that is not in the circuit.
        node: NodeId,
    },
    /// A token in `section` is outside the vocabulary.
    #[error("{section}: token {token} is outside the vocabulary ({vocab})")]
    Token {
        /// The part of the file holding it (`task_samples`, `exemplars`).
        section: &'static str,
        /// The token id.
        token: u32,
        /// The model's vocabulary size.
        vocab: usize,
    },
    /// A node's task-sample activations are not shaped like the task samples' tokens.
    #[error("task_samples: activations of `{node}` are not {rows}×{cols} like the tokens")]
    SampleShape {
        /// The node.
        node: NodeId,
        /// The number of token rows.
        rows: usize,
        /// The length of the first token row.
        cols: usize,
    },
    /// An exemplar's activations do not match its tokens, or its pivot is outside them.
    #[error("exemplars of `{node}`: {tokens} tokens, {acts} activations, pivot {pivot}")]
    ExemplarShape {
        /// The node.
        node: NodeId,
        /// The exemplar's token count.
        tokens: usize,
        /// The exemplar's activation count.
        acts: usize,
        /// The exemplar's pivot index.
        pivot: usize,
    },
    /// The circuit could not be turned into JSON (a non-finite number in a field that needs one, say).
    #[error("cannot serialise: {0}")]
    Serialise(serde_json::Error),
}

/// Result of circuit operations; the error defaults to [`CircuitError`].
pub type Result<T, E = CircuitError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CircuitError {
    let path = path.into();
    move |source| CircuitError::Io { path, source }
}

impl From<crate::model::torch_pickle::TorchZipError> for CircuitError {
    fn from(e: crate::model::torch_pickle::TorchZipError) -> Self {
        use crate::model::torch_pickle::TorchZipError;
        match e {
            TorchZipError::Io { path, source } => CircuitError::Io { path, source },
            TorchZipError::Format { path, problem } => CircuitError::Pickle { path, problem },
        }
    }
}
