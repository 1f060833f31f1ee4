//! Errors of the engine. Every variant names the file (and tensor) it is about, so that the CLI can print one
//! line that tells the user what is wrong and where.

use std::path::PathBuf;

/// Everything that can go wrong while loading a checkpoint or running the engine.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or mapping a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The config json is unreadable or describes an impossible model.
    #[error("{path}: invalid config: {source}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: super::config::ConfigError,
    },
    /// A tensor the config requires is absent from the weights file.
    #[error("{path}: missing required tensor `{name}`")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The state-dict name of the missing tensor.
        name: String,
    },
    /// A tensor's shape disagrees with what the config implies.
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// The state-dict name of the tensor.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape stored in the file.
        got: Vec<usize>,
    },
    /// A tensor is present but unusable (dtype, non-finite values, broken CSR parts, contradictions).
    #[error("{path}: tensor `{name}`: {msg}")]
    BadTensor {
        /// The weights file.
        path: PathBuf,
        /// The state-dict name of the tensor.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The file is not a checkpoint this build can read (bad header, zip or pickle).
    #[error("{path}: not a readable checkpoint: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The directory holds no config plus weights file.
    #[error(
        "no model found in {path}: expected config.json or beeg_config.json beside model.safetensors or final_model.pt"
    )]
    NoModel {
        /// The directory searched.
        path: PathBuf,
    },
    /// A prompt is longer than the model's context.
    #[error("prompt has {len} tokens but the model's context (block_size) is {block_size}; shorten it or truncate")]
    TooLong {
        /// Tokens in the prompt.
        len: usize,
        /// The model's `block_size`.
        block_size: usize,
    },
    /// A token id is not below the vocabulary size.
    #[error("token id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange {
        /// The offending token id.
        id: u32,
        /// Its position in the prompt (0-based).
        pos: usize,
        /// The model's `vocab_size`.
        vocab: usize,
    },
    /// A hook name or intervention does not fit the model (unknown site, channel out of range).
    #[error("hook `{name}`: {msg}")]
    Hook {
        /// The hook name as given.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A hook-selection pattern is not a valid regex.
    #[error("invalid hook regex `{pattern}`: {msg}")]
    HookRegex {
        /// The pattern as given.
        pattern: String,
        /// The regex parser's complaint.
        msg: String,
    },
    /// A CSR kernel refused its input (invalid matrix or mismatched shapes).
    #[error(transparent)]
    Kernel(#[from] circuitscope_kernels::CsrError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The engine's result type; the error defaults to [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}
