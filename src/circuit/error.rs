//! Errors of circuit files, the circuit graph and imports. Each names the file (or the circuit) and what is
//! wrong, on one line.

use std::path::PathBuf;

use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum CircuitError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid circuit file: {msg}")]
    Json { path: PathBuf, msg: String },
    #[error(
        "{path}: format_version {found} is newer than this circuitscope reads ({supported}); upgrade circuitscope"
    )]
    NewerVersion { path: PathBuf, found: u32, supported: u32 },
    #[error("{path}: not a readable viz_data.pt: {msg}")]
    Pickle { path: PathBuf, msg: String },
    #[error("{path}: unexpected viz_data.pt structure at `{at}`: {msg}")]
    Structure { path: PathBuf, at: String, msg: String },
    #[error("circuit `{circuit}`: {msg}")]
    Invalid { circuit: String, msg: String },
    #[error("circuit `{circuit}` was made for model {made_for}, not {given}")]
    ModelMismatch {
        circuit: String,
        made_for: String,
        given: String,
    },
    #[error("circuit graph: {0}")]
    Graph(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

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
