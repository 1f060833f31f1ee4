//! circuitscope: a terminal workbench for circuits in weight-sparse transformers.
//!
//! Dependency direction: `cli` → `model`, `tokenize` → `circuitscope-kernels`.

pub mod circuit;
pub mod cli;
pub mod model;
pub mod tokenize;
