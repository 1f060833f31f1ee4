//! Errors of scans and scan indexes. Each names the file (or the node) and what is wrong, on one line.

use std::path::PathBuf;

use crate::model::ModelError;

/// Why a scan could not be run, written or read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading or writing a scan file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The folder holds no `index.json`.
    #[error("{dir}: no scan index here (no index.json); run `circuitscope scan --model MODEL_DIR` first")]
    Missing {
        /// The folder searched.
        dir: PathBuf,
    },
    /// The scan was written by a newer build.
    #[error("{path}: format_version {found} is newer than this circuitscope reads ({supported}); upgrade circuitscope or rescan")]
    NewerVersion {
        /// The `index.json`.
        path: PathBuf,
        /// The `format_version` in it.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A scan file is truncated, has a bad header or disagrees with `index.json`.
    #[error("{path}: corrupt scan index: {msg}; rescan with `circuitscope scan`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The scan belongs to another model's weights.
    #[error("{path}: this scan was made for model {made_for}, not {given}; rescan with `circuitscope scan`")]
    ModelMismatch {
        /// The `index.json`.
        path: PathBuf,
        /// The fingerprint recorded in the scan.
        made_for: String,
        /// The fingerprint of the model given.
        given: String,
    },
    /// A node asked for is not among the scanned hooks or channels.
    #[error("node `{node}` is not in this scan: {msg}")]
    UnknownNode {
        /// The node id as given.
        node: String,
        /// Why it is not there.
        msg: String,
    },
    /// The output folder exists and is not a scan, so it is not replaced.
    #[error("{dir}: exists and is not a scan index; refusing to replace it (choose another --out)")]
    NotAScanDir {
        /// The output folder.
        dir: PathBuf,
    },
    /// The scan's inputs or results are inconsistent (no tokens, a hook not recorded, a meta that does not fit); the
    /// message says which.
    #[error("scan: {0}")]
    Invalid(String),
    /// Running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result of scan operations; the error defaults to [`ScanError`].
pub type Result<T, E = ScanError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ScanError {
    let path = path.into();
    move |source| ScanError::Io { path, source }
}
