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

pub use circuits::{
    composition, direct_path, full_ov, full_qk, layer_circuits, ov_copying_scores, pos_qk, Composition, Embeddings,
    HeadCircuits,
};
pub use factored::{Entry, Factored, TopEntries};
pub use from_gpt::from_gpt;
pub use mat::Mat;
pub use process::{process, ProcessStep};
pub use weights::{FrameworkWeights, HeadWeights, LayerWeights, MlpWeights, Nonlinearities, NormKind, NormParams};

/// Which matrices or vectors do not fit together (the [`FrameworkError::Shape`] cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeProblem {
    /// A matrix of another shape than the model's sizes imply.
    #[error("{what} is {rows}x{cols}, expected {want_rows}x{want_cols}")]
    Matrix {
        /// The weight's name (`W_U`, `blocks.0.heads.3.W_Q`, ...).
        what: String,
        /// Its rows.
        rows: usize,
        /// Its columns.
        cols: usize,
        /// The rows expected.
        want_rows: usize,
        /// The columns expected.
        want_cols: usize,
    },
    /// A vector of another length than the model's sizes imply.
    #[error("{what} has {got} values, expected {want}")]
    Vector {
        /// The vector's name (`b_U`, `blocks.1.b_O`, ...).
        what: String,
        /// Its length.
        got: usize,
        /// The length expected.
        want: usize,
    },
    /// Blocks with different head counts.
    #[error("block {layer} has {heads} heads, block 0 has {first}")]
    HeadCount {
        /// The block.
        layer: usize,
        /// Its head count.
        heads: usize,
        /// Block 0's head count.
        first: usize,
    },
    /// A final residual that is not `d_model` wide.
    #[error("final residual has {got} values, expected d_model {d_model}")]
    FinalResid {
        /// Its length.
        got: usize,
        /// The model width.
        d_model: usize,
    },
    /// Matrix data whose length is not rows × cols.
    #[error("{len} values for a {rows}x{cols} matrix")]
    Data {
        /// Values given.
        len: usize,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// A product of matrices whose inner sizes differ.
    #[error("product of {}x{} and {}x{}", .left.0, .left.1, .right.0, .right.1)]
    Product {
        /// The left matrix's (rows, cols).
        left: (usize, usize),
        /// The right matrix's (rows, cols).
        right: (usize, usize),
    },
    /// Factors of a factored matrix whose inner sizes differ.
    #[error("factors {}x{} and {}x{} do not chain", .left.0, .left.1, .right.0, .right.1)]
    Chain {
        /// The left factor's (rows, cols).
        left: (usize, usize),
        /// The right factor's (rows, cols).
        right: (usize, usize),
    },
    /// A head the model does not have.
    #[error("no head {layer}.{head} in this model")]
    NoHead {
        /// The layer.
        layer: usize,
        /// The head.
        head: usize,
    },
    /// The forward did not record a hook the analysis reads.
    #[error("the forward did not record {hook}")]
    NotRecorded {
        /// The hook.
        hook: String,
    },
}

/// Input a framework analysis cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameworkInput {
    /// A token outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {vocab}")]
    TokenOutsideVocab {
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// `--repeated-tokens` with fewer than two tokens.
    #[error("--repeated-tokens needs at least 2 tokens")]
    RepeatedTokens,
}

/// A model the framework lens cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedModel {
    /// Positional channels concatenated beside the residual stream (`d_pos_emb`).
    #[error(
        "the framework lens reads the residual stream, and a cat-pos-emb model (d_pos_emb set) feeds its \
         positional channels beside it"
    )]
    CatPosEmb,
}

/// A numerical routine that did not converge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumericsProblem {
    /// The eigenvalues of an OV matrix.
    #[error("the eigenvalue iteration did not converge on an OV matrix")]
    Eigenvalues,
}

/// Why a framework analysis could not run.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    /// Matrices or vectors whose shapes do not fit together.
    #[error("framework lens: {0}")]
    Shape(#[source] ShapeProblem),
    /// Input out of range (a token id, a sequence).
    #[error(transparent)]
    Input(#[from] FrameworkInput),
    /// A model this lens cannot read.
    #[error("framework lens: {0}")]
    Unsupported(#[source] UnsupportedModel),
    /// A numerical routine that did not converge.
    #[error("framework lens: {0}")]
    Numerics(#[source] NumericsProblem),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}
