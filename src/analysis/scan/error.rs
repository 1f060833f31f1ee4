//! Errors of scans and scan indexes. Each names the file (or the node) and what is wrong, on one line.

use std::path::PathBuf;

use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir}: no scan index here (no index.json); run `circuitscope scan --model MODEL_DIR` first")]
    Missing { dir: PathBuf },
    #[error("{path}: format_version {found} is newer than this circuitscope reads ({supported}); upgrade circuitscope or rescan")]
    NewerVersion { path: PathBuf, found: u32, supported: u32 },
    #[error("{path}: corrupt scan index: {msg}; rescan with `circuitscope scan`")]
    Corrupt { path: PathBuf, msg: String },
    #[error("{path}: this scan was made for model {made_for}, not {given}; rescan with `circuitscope scan`")]
    ModelMismatch {
        path: PathBuf,
        made_for: String,
        given: String,
    },
    #[error("node `{node}` is not in this scan: {msg}")]
    UnknownNode { node: String, msg: String },
    #[error("{dir}: exists and is not a scan index; refusing to replace it (choose another --out)")]
    NotAScanDir { dir: PathBuf },
    #[error("scan: {0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ScanError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ScanError {
    let path = path.into();
    move |source| ScanError::Io { path, source }
}
