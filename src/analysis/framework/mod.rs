//! The framework lens (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"): heads read
//! through their QK and OV circuits, composition between heads, the copying score, head detectors, induction
//! loss and direct logit attribution, computed as TransformerLens computes them.
//!
//! Everything reads [`FrameworkWeights`], one struct of per-head matrices that each model family fills in
//! ([`from_gpt()`] for our weight-sparse GPT); [`process()`] applies TransformerLens' weight processing to it.
//! Analyses that need activations (detectors, DLA, channel terms) take recorded patterns and vectors, so that
//! this module never runs a model itself.

pub mod channels;
pub mod circuits;
pub mod detect;
pub mod dla;
pub mod eigen;
pub mod factored;
pub mod from_gpt;
pub mod mat;
pub mod process;
pub mod weights;

pub use circuits::{composition, direct_path, full_ov, full_qk, ov_copying_scores, pos_qk, Composition};
pub use factored::{Entry, Factored};
pub use from_gpt::from_gpt;
pub use mat::Mat;
pub use process::{process, ProcessStep};
pub use weights::{FrameworkWeights, HeadWeights, LayerWeights, MlpWeights, Nonlinearities, NormKind, NormParams};

/// Why a framework analysis could not run.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    /// Matrices or vectors whose shapes do not fit together.
    #[error("framework lens: {0}")]
    Shape(String),
    /// Input out of range (a token id, a sequence).
    #[error("{0}")]
    Input(String),
    /// A model this lens cannot read.
    #[error("framework lens: {0}")]
    Unsupported(String),
    /// A numerical routine that did not converge.
    #[error("framework lens: {0}")]
    Numerics(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}
