//! circuitscope: a terminal workbench for circuits in weight-sparse transformers.
//!
//! Dependency direction: `cli` → `tui` → `workbench` → `session`, `export`, `circuit`, `analysis` → `model`,
//! `data`, `tokenize` → `circuitscope-kernels`.

pub mod analysis;
pub mod circuit;
pub mod cli;
pub mod data;
pub mod export;
pub mod fsio;
pub mod model;
pub mod optim;
pub mod session;
pub mod tokenize;
pub mod train;
pub mod tui;
pub mod workbench;
