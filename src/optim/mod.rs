//! Optimisers over named candle variables, shared by the trainer (`train`) and the pruner (`analysis::prune`).
//!
//! It sits on its own floor, below both, so that neither has to import the other (the pruner once imported the
//! trainer's AdamW while the trainer imported `analysis::eval`: a cycle).

pub mod adamw;

pub use adamw::{AdamW, AdamWParams, OptimStateError};
