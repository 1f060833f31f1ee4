//! One module per subcommand; `main.rs` only parses and dispatches.

pub mod bench;
pub mod common;
pub mod convert;
pub mod run;
pub mod synth;
pub mod tokenize;
