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
//! logits to explain, and [`patching`] sets attribution patching beside activation patching on a minimal pair.

pub mod build;
pub mod patching;
pub mod prune;
pub mod target;

pub use build::{build, AttrNode, AttributionGraph, Edge, NodeKind};
pub use prune::{prune, PruneOptions, Pruned};
pub use target::{TargetSpec, Targets};

use crate::model::ModelError;

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
    Unsupported(String),
    /// A target, prompt or threshold is not usable.
    #[error("{0}")]
    Input(String),
    /// A graph file is not a graph this tool can read.
    #[error("{path}: {msg}")]
    GraphFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
}
