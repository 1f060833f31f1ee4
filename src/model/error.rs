//! Errors of the engine. Every variant names the file (and tensor) it is about, so that the CLI can print one
//! line that tells the user what is wrong and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid config: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: missing required tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{path}: tensor `{name}`: {msg}")]
    BadTensor { path: PathBuf, name: String, msg: String },
    #[error("{path}: not a readable checkpoint: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error(
        "no model found in {path}: expected config.json or beeg_config.json beside model.safetensors or final_model.pt"
    )]
    NoModel { path: PathBuf },
    #[error("prompt has {len} tokens but the model's context (block_size) is {block_size}; shorten it or truncate")]
    TooLong { len: usize, block_size: usize },
    #[error("token id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, pos: usize, vocab: usize },
    #[error("hook `{name}`: {msg}")]
    Hook { name: String, msg: String },
    #[error("invalid hook regex `{pattern}`: {msg}")]
    HookRegex { pattern: String, msg: String },
    #[error(transparent)]
    Kernel(#[from] circuitscope_kernels::CsrError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}
