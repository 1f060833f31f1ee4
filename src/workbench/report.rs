//! The markdown report of a session: what the TUI's `:export`, `circuitscope export` and the example-session
//! generator all write.

use std::collections::BTreeMap;

use crate::analysis::scan::ScanIndex;
use crate::circuit::CircuitFile;
use crate::export::{self, ReportInput};
use crate::session::Session;
use crate::tokenize::Tokenizer;

/// Top exemplars per labeled node in the workbench's report.
pub const TOP_EXEMPLARS: usize = 3;

/// The session's markdown report, with the scan's `top_k` top exemplars of every circuit node when there is a
/// scan, and of the session's annotated SAE features when `features_scanned` (the scan ran the SAE they belong
/// to).
pub fn markdown(
    session: &Session,
    circuit: &CircuitFile,
    scan: Option<&ScanIndex>,
    tok: &Tokenizer,
    top_k: usize,
    features_scanned: bool,
) -> String {
    let features = session
        .annotations
        .keys()
        .copied()
        .filter(|n| features_scanned && n.is_feature());
    let exemplars = match scan {
        Some(s) => export::scan_exemplars(s, tok, circuit.node_ids().into_iter().chain(features), top_k),
        None => BTreeMap::new(),
    };
    export::markdown(&ReportInput {
        session,
        circuit,
        exemplars,
        top_k,
    })
}
