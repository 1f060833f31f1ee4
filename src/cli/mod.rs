//! One module per subcommand; `main.rs` only parses and dispatches.

pub mod attribute;
pub mod bench;
pub mod bench_tui;
pub mod bridge;
pub mod circuit;
pub mod common;
pub mod convert;
pub mod corpus;
pub mod eval;
pub mod explain;
pub mod export;
pub mod heads;
pub mod open;
pub mod prune;
pub mod prune_search;
pub mod run;
pub mod sae;
pub mod scan;
pub mod session;
pub mod steer;
pub mod synth;
pub mod tasks;
pub mod tokenize;
pub mod tokenizer_train;
pub mod train;
