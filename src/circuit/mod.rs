//! Circuits: node ids, circuit files, the circuit graph (petgraph) derived from the model's weights, and the
//! import of the reference viewer's `viz_data.pt`.

pub mod error;
pub mod file;
pub mod graph;
pub mod import_viz;
pub mod node_id;
/// The torch zip reader moved to `model` (checkpoints read it too); this keeps the old path working.
pub use crate::model::torch_pickle;

pub use error::{CircuitError, CircuitJsonProblem, InvalidCircuit, PayloadShape, VizProblem};
pub use file::{
    halved, model_fingerprint, BlockId, BlockIdError, BlockLoss, CircuitEdge, CircuitFile, CircuitNode, EdgeEnd,
    EdgeEndError, Exemplar, Losses, ModelRef, QuantileExemplars, RemovedEdge, TaskSamples, CIRCUIT_FORMAT_BASE_VERSION,
    CIRCUIT_FORMAT_VERSION,
};
pub use graph::{CircuitGraph, EdgeKind, GraphEdge, GraphNode, GraphPath};
pub use import_viz::{import_viz_data, ImportTarget};
pub use node_id::{NodeCheckError, NodeId, NodeIdError, NodeIdProblem, PositionedNode, Site};
