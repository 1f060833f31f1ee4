//! Sparse autoencoders (issue 16): a dictionary of latents (features) read from one hook's activations.
//!
//! An SAE encodes an activation x (d_in) into a sparse code z = TopK(W_encᵀ(x − b_pre) + b_enc) (ReLU after the
//! TopK; a plain ReLU for the `relu` architecture) and decodes x̂ = W_decᵀz + b_pre. [`Sae`] holds the weights and
//! does the arithmetic; [`SaeConfig`] says where it reads (a [`crate::model::HookName`]) and how it was made;
//! [`train`] fits one with Gao et al. 2024's recipe on activations streamed from a model ([`source`]); [`eval`]
//! measures it, splicing x̂ into the forward through the model's hook interventions.
//!
//! Two formats are read: ours (`sae.json` + `sae.safetensors`) and SAELens's (`cfg.json` +
//! `sae_weights.safetensors`, architectures `topk` and `standard`); ours is written.

mod autoencoder;
mod config;
pub mod eval;
pub mod source;
pub mod train;

pub use autoencoder::{topk_mask, Sae, SAELENS_CONFIG_FILE, SAELENS_WEIGHTS_FILE, SAE_CONFIG_FILE, SAE_WEIGHTS_FILE};
pub use config::{Architecture, SaeConfig, TrainingStats, SAE_FORMAT_VERSION};

use std::path::PathBuf;

/// What can go wrong reading, writing or running an SAE.
#[derive(Debug, thiserror::Error)]
pub enum SaeError {
    /// Reading a file or a folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The folder holds neither our files nor SAELens's.
    #[error("{}: not an SAE folder (expected sae.json + sae.safetensors, or SAELens's cfg.json + sae_weights.safetensors)", path.display())]
    NotAnSae {
        /// The folder.
        path: PathBuf,
    },
    /// A config file is not the json expected, or describes an impossible SAE.
    #[error("{}: {msg}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Reading a weights file (a missing tensor, a wrong shape, non-finite values) or running the model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The SAE does not fit the model or the data it is given.
    #[error("{0}")]
    Mismatch(String),
    /// Writing the SAE or a run file failed.
    #[error(transparent)]
    Write(#[from] crate::fsio::FsioError),
    /// The corpus could not be read.
    #[error(transparent)]
    Corpus(#[from] crate::data::corpus::CorpusError),
    /// Tokenizing the corpus failed.
    #[error(transparent)]
    Tokenize(#[from] crate::tokenize::TokenizeError),
    /// A training run's files disagree with the options given.
    #[error("{}: {msg}", path.display())]
    Run {
        /// The run's folder or file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, SaeError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> SaeError + '_ {
    move |source| SaeError::Io {
        path: path.to_path_buf(),
        source,
    }
}
