//! Errors of explaining nodes and of the explanations file; each says what and where on one line.

use std::path::PathBuf;

use crate::circuit::NodeId;
use crate::model::ModelError;

/// Why nodes could not be explained, or an explanations file not read or written.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// Reading or writing the explanations file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The explanations file is not what this build writes.
    #[error("{path}: corrupt explanations file: {msg}; rerun `circuitscope explain`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The explanations file was written by a newer build.
    #[error("{path}: format_version {found} is newer than this circuitscope reads ({supported}); upgrade circuitscope or rerun `circuitscope explain`")]
    NewerVersion {
        /// The file.
        path: PathBuf,
        /// The `format_version` in it.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The explanations belong to another model's weights.
    #[error("{path}: these explanations were made for model {made_for}, not {given}; rerun `circuitscope explain`")]
    ModelMismatch {
        /// The file.
        path: PathBuf,
        /// The fingerprint recorded in the file.
        made_for: String,
        /// The fingerprint of the model given.
        given: String,
    },
    /// A forward pass did not record a hook it was asked to.
    #[error("hook `{hook}` was not recorded by the forward pass")]
    NotRecorded {
        /// The hook.
        hook: String,
    },
    /// A query had no tokens.
    #[error("node {node}: an empty token sequence cannot be probed")]
    EmptyQuery {
        /// The node asked about.
        node: NodeId,
    },
    /// There is no held-out text to score on.
    #[error("no held-out tokens to score the explanations on")]
    NoHeldOut,
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The scan index failed.
    #[error(transparent)]
    Scan(#[from] crate::analysis::scan::ScanError),
}

/// Results of this module.
pub type Result<T> = std::result::Result<T, ExplainError>;
