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
/// scan.
pub fn markdown(
    session: &Session,
    circuit: &CircuitFile,
    scan: Option<&ScanIndex>,
    tok: &Tokenizer,
    top_k: usize,
) -> String {
    let exemplars = match scan {
        Some(s) => export::scan_exemplars(s, tok, circuit.node_ids(), top_k),
        None => BTreeMap::new(),
    };
    export::markdown(&ReportInput {
        session,
        circuit,
        exemplars,
        top_k,
    })
}
