//! Attribution graphs: why one prompt gives one token, node by node, exactly.
//!
//! With the attention patterns, the norms' scales and every AbsTopK selection frozen at their values on the
//! prompt, the model is linear between its nodes: the active channels of the node sites at each position
//! (`1.mlp.post_act[98]@12`), the token and positional embeddings, the bigram table's row, and the target
//! logits. An edge s → t is s's activation times the one linear step from s to t (a weight; through attention,
//! the attention weight between the two positions times the value's output weight; through the residual
//! stream, the frozen norm's gain over its scale). So each node's input is exactly the sum of its incoming
//! edges plus its bias ([`AttributionGraph::inputs`]): there is no replacement model and no error node.
//!
//! Queries and keys are frozen with the patterns, so they carry no edge and are not nodes. [`build()`] makes the
//! graph, [`prune()`] keeps what carries the target's influence (circuit-tracer's algorithm), [`target`] picks the
//! logits to explain, [`patching`] sets attribution patching beside activation patching on a minimal pair, and
//! [`check`] measures both over a task's pairs against its pruned circuit.

pub mod build;
pub mod check;
pub mod patching;
pub mod prune;
pub mod target;

pub use build::{build, AttrNode, AttributionGraph, Edge, NodeKind};

use crate::circuit::Site;

/// The node sites of a block that are graph nodes, in forward order (queries and keys are frozen with the
/// attention patterns, so they are not nodes).
pub const BLOCK_NODE_SITES: [Site; 6] = [
    Site::AttnActIn,
    Site::AttnV,
    Site::AttnResidDelta,
    Site::MlpActIn,
    Site::MlpPostAct,
    Site::MlpResidDelta,
];
pub use prune::{prune, PruneOptions, Pruned};
pub use target::{TargetSpec, Targets};

use crate::model::ModelError;

/// A part of a model that attribution graphs cannot freeze into linear steps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedModel {
    /// Positional channels concatenated beside the residual stream (`d_pos_emb`).
    #[error("a cat-pos-emb model (d_pos_emb set) feeds positional channels beside the residual stream")]
    CatPosEmb,
}

/// Why a prompt, a target or a recorded run cannot be attributed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttributeInput {
    /// An empty prompt.
    #[error("the prompt has no tokens")]
    EmptyPrompt,
    /// Attribution patching's prompts are empty or of different lengths.
    #[error("attribution patching needs two prompts of the same non-zero length, got {clean} and {corrupt} tokens")]
    PromptLengths {
        /// Tokens in the clean prompt.
        clean: usize,
        /// Tokens in the corrupted prompt.
        corrupt: usize,
    },
    /// An explicit target list that is empty.
    #[error("no target logit given")]
    NoTarget,
    /// A target token outside the vocabulary.
    #[error("target token {token} is outside the vocabulary of {vocab}")]
    TargetOutsideVocab {
        /// The token.
        token: u32,
        /// The model's vocabulary size.
        vocab: usize,
    },
    /// Default targets with an impossible probability share or count.
    #[error("the default targets need a probability share in (0, 1] and at least one logit, got {cover} and {max}")]
    DefaultTargets {
        /// The share asked for.
        cover: f32,
        /// The most targets asked for.
        max: usize,
    },
    /// Patched-in values that are not shaped like the clean run's.
    #[error("the corrupted values of `{hook}` do not match the clean run's shape")]
    CorruptShape {
        /// The hook.
        hook: String,
    },
    /// The forward did not record a hook the graph needs.
    #[error("the forward pass did not record `{hook}`")]
    NotRecorded {
        /// The hook.
        hook: String,
    },
    /// The forward did not record a layer's attention pattern.
    #[error("the forward pass did not record {layer}.attn.pattern")]
    PatternNotRecorded {
        /// The layer.
        layer: usize,
    },
    /// A recorded hook without the position asked for.
    #[error("`{hook}` has no position {pos}")]
    NoPosition {
        /// The hook.
        hook: String,
        /// The position asked for.
        pos: usize,
    },
}

/// Why an attribution graph could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AttributeError {
    /// The forward pass or reading the weights failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model has a part this graph cannot freeze into linear steps.
    #[error("attribution graphs do not support this model: {0}")]
    Unsupported(#[source] UnsupportedModel),
    /// A target, prompt or recording is not usable.
    #[error(transparent)]
    Input(#[from] AttributeInput),
    /// A graph file is not a graph this tool can read.
    #[error("{path}: {msg}")]
    GraphFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
}
