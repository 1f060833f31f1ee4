//! The workbench layer, without a UI: [`open`] loads a model, a circuit, its scan and a session once; the
//! [`protocol`] is what a UI sends and receives; the [`Engine`] answers it, synchronously or on a worker thread
//! ([`spawn`]). The TUI, the CLI, the example-session generator and the tests all go through here.
//!
//! Nothing here imports ratatui or `crate::tui`.

pub mod engine;
pub mod open;
pub mod protocol;
pub mod report;
pub mod scan_source;

pub use engine::{spawn, Engine, EngineError};
pub use open::{model_tokenizer, open, OpenError, OpenOptions, Opened};
pub use protocol::{
    Ablation, AblationKind, AttnPattern, EmbeddingView, NodeDetail, NodeStats, QuantileView, Reply, Request,
    RunSummary, SweepPoint, SweepResult, TaskView, TokenActs, WpeWindow, EMBED_BINS, WPE_WINDOW,
};
pub use scan_source::ScanSource;
