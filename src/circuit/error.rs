//! Errors of circuit files, the circuit graph and imports. Each names the file (or the circuit) and what is
//! wrong, on one line.

use std::path::PathBuf;

use crate::circuit::NodeCheckError;
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
    #[error("{path}: not a readable viz_data.pt: {msg}")]
    Pickle {
        /// The viz_data.pt file.
        path: PathBuf,
        /// What the torch zip reader said.
        msg: String,
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
    /// The circuit's content is inconsistent (unknown node, node outside the model, bad loss).
    #[error("circuit `{circuit}`: {msg}")]
    Invalid {
        /// The circuit's task name or file, as displayed.
        circuit: String,
        /// What is wrong with it.
        msg: String,
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
            TorchZipError::Format { path, msg } => CircuitError::Pickle { path, msg },
        }
    }
}
