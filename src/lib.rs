//! circuitscope: a terminal workbench for circuits in weight-sparse transformers.
//!
//! Dependency direction (floors; see `docs/architecture.md`): `cli` → `tui` → `workbench` → `export`, `train` →
//! `session`, `analysis` → `circuit` → `model`, `data`, `tokenize`, `optim` → `fsio`, `circuitscope-kernels`.

#![warn(missing_docs)]

pub mod analysis;
pub mod circuit;
// The CLI's doc comments are clap's `--help` text, read in a terminal, not rustdoc: `HOOK[i]` and
// `<task>.json` there are literal text, not links or HTML.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
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
