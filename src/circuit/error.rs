//! Errors of circuit files, the circuit graph and imports. Each names the file (or the circuit) and what is
//! wrong, on one line.

use std::path::PathBuf;

use crate::circuit::{BlockId, BlockIdError, EdgeEnd, NodeCheckError, NodeId};
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
    #[error("{path}: not a valid circuit file: {problem}")]
    Json {
        /// The circuit file.
        path: PathBuf,
        /// What is wrong with the json.
        #[source]
        problem: CircuitJsonProblem,
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
        /// What the torch zip reader said (boxed: it keeps every circuit `Result` small).
        #[source]
        problem: Box<ZipProblem>,
    },
    /// A `viz_data.pt` unpickled, but its contents are not laid out as the reference writes them.
    #[error("{path}: unexpected viz_data.pt structure at `{at}`: {problem}")]
    Structure {
        /// The viz_data.pt file.
        path: PathBuf,
        /// Path of keys to the offending value, e.g. `importances[3]`.
        at: String,
        /// What was expected there (boxed: it keeps every circuit `Result` small).
        #[source]
        problem: Box<VizProblem>,
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

/// Why a circuit file's json is not a circuit (the `problem` of [`CircuitError::Json`]).
#[derive(Debug, thiserror::Error)]
pub enum CircuitJsonProblem {
    /// The text is not json, or does not have the circuit's fields and types.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The object has no `format_version`.
    #[error("missing `format_version`")]
    MissingVersion,
    /// `format_version` is not a non-negative integer.
    #[error("`format_version` is not a non-negative integer")]
    VersionNotInteger,
}

/// The architecture numbers a viz_data.pt payload is compared on: (n_layer, d_model, n_head, d_head, d_mlp,
/// vocab_size, d_pos_emb).
pub type PayloadShape = (usize, usize, usize, usize, usize, usize, Option<usize>);

/// What is unexpected in a `viz_data.pt` (the `problem` of [`CircuitError::Structure`]). `found` fields name the
/// Python type that was there instead.
#[derive(Debug, thiserror::Error)]
pub enum VizProblem {
    /// A tensor was expected.
    #[error("expected a tensor, found a {found}")]
    ExpectedTensor {
        /// The Python type found.
        found: &'static str,
    },
    /// A one-element tensor was expected.
    #[error("expected a scalar tensor, found {count} values")]
    ScalarTensor {
        /// The tensor's element count.
        count: usize,
    },
    /// A number was expected.
    #[error("expected a number, found a {found}")]
    ExpectedNumber {
        /// The Python type found.
        found: &'static str,
    },
    /// A non-negative integer (an index or count) was expected.
    #[error("expected a non-negative integer, found {value}")]
    NotAnIndex {
        /// The number found.
        value: f64,
    },
    /// An integer tensor was expected; its values have fractions.
    #[error("expected integers, found fractional values")]
    FractionalValues,
    /// Integers (a tensor, list or tuple) were expected.
    #[error("expected integers, found a {found}")]
    ExpectedIntegers {
        /// The Python type found.
        found: &'static str,
    },
    /// Numbers (a tensor, list or tuple) were expected.
    #[error("expected numbers, found a {found}")]
    ExpectedNumbers {
        /// The Python type found.
        found: &'static str,
    },
    /// A token id does not fit in u32.
    #[error("token id {token} is out of range")]
    TokenOutOfRange {
        /// The token id.
        token: i64,
    },
    /// A dict was expected.
    #[error("expected a dict, found a {found}")]
    ExpectedDict {
        /// The Python type found.
        found: &'static str,
    },
    /// A list or tuple was expected.
    #[error("expected a list or tuple, found a {found}")]
    ExpectedSeq {
        /// The Python type found.
        found: &'static str,
    },
    /// A dict key was expected to be a string.
    #[error("expected a string key, found a {found}")]
    ExpectedStrKey {
        /// The Python type found.
        found: &'static str,
    },
    /// A location name that is no node location of the model.
    #[error("`{loc}` is not a node location (expected e.g. `0.attn.q`, `1.mlp.post_act`, `final_resid`)")]
    NotALocation {
        /// The location as written.
        loc: String,
    },
    /// A required key is absent.
    #[error("missing key `{key}`")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// The payload's `beeg_model_config` describes another architecture than the target model.
    #[error(
        "the payload was made for a model with (n_layer, d_model, n_head, d_head, d_mlp, vocab_size, d_pos_emb) = {payload:?}, but the given model has {model:?}"
    )]
    ConfigMismatch {
        /// The payload's numbers (boxed, as `model`: two of them would make every circuit error large).
        payload: Box<PayloadShape>,
        /// The target model's numbers.
        model: Box<PayloadShape>,
    },
    /// A negative channel index in `circuit_data`.
    #[error("negative channel index {index}")]
    NegativeChannel {
        /// The index.
        index: i64,
    },
    /// `ch_interv_losses` names a location `circuit_data` does not have.
    #[error("location not in circuit_data")]
    LocationNotInCircuit,
    /// `ch_interv_losses` has another count of losses than the location has kept nodes.
    #[error("{losses} losses for {nodes} kept nodes in circuit_data")]
    LossCount {
        /// Losses given.
        losses: usize,
        /// Nodes kept at the location.
        nodes: usize,
    },
    /// A `layer_interv_losses` key is not a block name.
    #[error(transparent)]
    BlockName(#[from] BlockIdError),
    /// A `pair_data` entry does not have its four parts.
    #[error("expected [W, src_names, tgt_names, (src, tgt)], found {found} items")]
    PairArity {
        /// Items found.
        found: usize,
    },
    /// A `pair_data` entry's locations are not a pair.
    #[error("expected a (source, target) location pair")]
    ExpectedLocationPair,
    /// A `pair_data` entry's location is not a string.
    #[error("{end} location is not a string")]
    LocationNotString {
        /// `source` or `target`.
        end: &'static str,
    },
    /// A `pair_data` matrix is not shaped by its source and target names.
    #[error("matrix shape {shape:?} does not match {sources} source and {targets} target names")]
    PairShape {
        /// The matrix's shape.
        shape: Vec<usize>,
        /// Source names given.
        sources: usize,
        /// Target names given.
        targets: usize,
    },
    /// `task_samples` is not a (tokens, activations) pair.
    #[error("expected (tokens, {{location: {{channel: acts}}}})")]
    ExpectedTaskSamples,
    /// The task samples' tokens are not a matrix.
    #[error("tokens have shape {shape:?}, expected (2N, T)")]
    TokenShape {
        /// The tokens' shape.
        shape: Vec<usize>,
    },
    /// The task samples' tokens are not integers.
    #[error("tokens are not integers")]
    TokensNotIntegers,
    /// A node's task-sample activations are not shaped like the tokens.
    #[error("activations have shape {acts:?}, tokens {tokens:?}")]
    ActivationShape {
        /// The activations' shape.
        acts: Vec<usize>,
        /// The tokens' shape.
        tokens: Vec<usize>,
    },
    /// An exemplar quantile is not a (bottom, top) pair.
    #[error("expected (bottom_list, top_list)")]
    ExpectedQuantileSides,
    /// An exemplar is not a (tokens, acts, pos) triple.
    #[error("expected (tokens, acts, pos)")]
    ExpectedExemplar,
    /// An exemplar's activations do not match its tokens, or its position is outside them.
    #[error("{tokens} tokens, {acts} activations, position {pivot}")]
    ExemplarShape {
        /// Tokens in the exemplar.
        tokens: usize,
        /// Activations in the exemplar.
        acts: usize,
        /// The exemplar's position.
        pivot: usize,
    },
    /// An `all_loss` entry is not an (iteration, loss) pair.
    #[error("expected (iteration, loss)")]
    ExpectedLossPoint,
    /// The imported circuit does not fit the model (boxed: a [`CircuitError`] inside a [`CircuitError`]).
    #[error(transparent)]
    Invalid(Box<CircuitError>),
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
            TorchZipError::Format { path, problem } => CircuitError::Pickle {
                path,
                problem: Box::new(problem),
            },
        }
    }
}
