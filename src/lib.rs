//! circuitscope: a terminal workbench for circuits in weight-sparse transformers.
//!
//! Dependency direction: `cli` → `model`, `tokenize` → `circuitscope-kernels`.

pub mod analysis;
pub mod circuit;
pub mod cli;
pub mod data;
pub mod export;
pub mod model;
pub mod optim;
pub mod session;
pub mod tokenize;
pub mod train;
pub mod tui;
