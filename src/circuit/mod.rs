//! Circuits: node ids now; the circuit graph and circuit files build on them.

pub mod node_id;

pub use node_id::{NodeId, NodeIdError, Site};
