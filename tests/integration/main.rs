//! The integration tests, as one crate (one link step instead of one per file). Each module is one area;
//! `cargo test --test integration <module>::` runs one of them.

mod attribution;
mod bundled;
mod circuit;
mod cli;
mod corpus;
mod crash;
mod errors;
mod example_session;
mod explain;
mod framework;
mod fuzz;
mod gpt2;
mod half_precision;
mod hooks;
mod hostile;
mod parity;
mod prune;
mod sae;
mod scan;
mod session;
mod tasks;
mod tokenizer;
mod tokenizer_train;
mod train;
mod tui;
mod workbench;
