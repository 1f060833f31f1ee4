//! The workbench's view of the explanations `circuitscope explain` stored beside the scan
//! (`<model dir>/scan/explanations.json`): per circuit node its sentence and score as owned strings and numbers,
//! read once at open, never recomputed.

use std::collections::BTreeMap;
use std::path::Path;

use crate::analysis::explain::{ExplainError, ExplanationsFile};
use crate::analysis::scan::ScanIndex;
use crate::circuit::NodeId;

/// One node's automatic explanation, as the UI shows it until the analyst writes a label.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoLabel {
    /// The sentence, e.g. `fires on "[[" after "= "`.
    pub text: String,
    /// Correlation of predicted and real activations on held-out text.
    pub correlation: Option<f32>,
    /// Precision of "fires" (the main side's).
    pub precision: Option<f32>,
    /// Recall of "fires".
    pub recall: Option<f32>,
    /// `corr 0.93 · P 0.91 R 0.88`.
    pub score: String,
}

/// The explanations of `nodes` stored in `<model_dir>/scan/`: empty when there is no file, an error when the
/// file is corrupt, newer, or another model's.
pub fn load(
    model_dir: &Path,
    fingerprint: &str,
    nodes: impl IntoIterator<Item = NodeId>,
) -> Result<BTreeMap<NodeId, AutoLabel>, ExplainError> {
    let path = ExplanationsFile::path_in(&ScanIndex::default_dir(model_dir));
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let file = ExplanationsFile::load_for(&path, fingerprint)?;
    Ok(nodes
        .into_iter()
        .filter_map(|n| {
            let e = file.nodes.get(&n).filter(|e| !e.explanation.is_empty())?;
            let side = e.main_side();
            Some((
                n,
                AutoLabel {
                    text: e.explanation.clone(),
                    correlation: e.correlation,
                    precision: side.and_then(|s| s.fires.precision),
                    recall: side.and_then(|s| s.fires.recall),
                    score: e.score_line(),
                },
            ))
        })
        .collect())
}
