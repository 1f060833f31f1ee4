//! Errors of explaining nodes and of the explanations file; each says what and where on one line.

use std::path::PathBuf;

use crate::circuit::NodeId;
use crate::model::ModelError;

/// What is wrong with an explanations file (the `problem` of [`ExplainError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
pub enum CorruptExplanations {
    /// The text is not json.
    #[error("not JSON ({0})")]
    NotJson(#[source] serde_json::Error),
    /// The object has no numeric `format_version`.
    #[error("no format_version")]
    NoVersion,
    /// The json lacks a field or holds a value of the wrong type.
    #[error(transparent)]
    Fields(serde_json::Error),
    /// A node's correlation lies outside [-1, 1].
    #[error("node {node}: correlation {value:?} is not in [-1, 1]")]
    Correlation {
        /// The node.
        node: NodeId,
        /// The correlation stored.
        value: Option<f32>,
    },
    /// The explanations could not be turned into json (a non-finite number, say).
    #[error("cannot serialise ({0})")]
    Serialise(#[source] serde_json::Error),
}

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
    #[error("{path}: corrupt explanations file: {problem}; rerun `circuitscope explain`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: CorruptExplanations,
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
    /// The SAE whose features are explained could not encode its hook.
    #[error("SAE: {0}")]
    Sae(#[source] Box<crate::analysis::sae::SaeError>),
}

/// Results of this module.
pub type Result<T> = std::result::Result<T, ExplainError>;
