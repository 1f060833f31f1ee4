//! The workbench layer, without a UI: [`open()`] loads a model, a circuit, its scan and a session once; the
//! [`protocol`] is what a UI sends and receives; the [`Engine`] answers it, synchronously or on a worker thread
//! ([`spawn`]). The TUI, the CLI, the example-session generator and the tests all go through here.
//!
//! Nothing here imports ratatui or `crate::tui`.

pub mod attribution;
pub mod auto_labels;
pub mod engine;
pub mod heads;
pub mod open;
pub mod pairs;
pub mod protocol;
pub mod report;
pub mod scan_source;

pub use auto_labels::AutoLabel;
pub use engine::{spawn, Engine, EngineError};
pub use open::{model_tokenizer, open, task_description, task_names, OpenError, OpenOptions, Opened};
pub use protocol::{
    Ablation, AblationKind, AttnPattern, AttnRow, AttrEdgeRow, AttrNodeRow, AttrTarget, AttributionView, BridgeRunView,
    EmbeddingView, HeadRow, HeadsView, NodeDetail, NodeStats, PairNodeRow, PairView, PairsView, QuantileView, Reply,
    Request, RunSummary, SweepPoint, SweepResult, SweepStop, TaskView, TokenActs, WpeWindow, EMBED_BINS, WPE_WINDOW,
};
pub use scan_source::ScanSource;

#[cfg(test)]
mod tests {
    /// The layer's rule (ARCHITECTURE.md): no UI crate and no `tui` module anywhere in it.
    #[test]
    fn the_workbench_imports_no_ui() {
        let sources = [
            ("attribution.rs", include_str!("attribution.rs")),
            ("auto_labels.rs", include_str!("auto_labels.rs")),
            ("engine.rs", include_str!("engine.rs")),
            ("heads.rs", include_str!("heads.rs")),
            ("open.rs", include_str!("open.rs")),
            ("pairs.rs", include_str!("pairs.rs")),
            ("protocol.rs", include_str!("protocol.rs")),
            ("report.rs", include_str!("report.rs")),
            ("scan_source.rs", include_str!("scan_source.rs")),
        ];
        let banned = [concat!("rata", "tui"), concat!("crate::", "tui")];
        for (name, text) in sources {
            for b in banned {
                assert!(!text.contains(b), "src/workbench/{name} mentions `{b}`");
            }
        }
    }
}
