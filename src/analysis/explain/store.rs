//! The explanations file, `explanations.json` in the scan folder: versioned, tied to the model's fingerprint and
//! to the scan it was built from, one entry per node keyed by its id (stable key order, diff-friendly), written
//! atomically through [`crate::fsio`]. A rescan replaces the scan folder and so drops stale explanations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{CorruptExplanations, ExplainError, Result};
use super::{ExplainOptions, NodeExplanation};
use crate::analysis::scan::ScanMeta;
use crate::circuit::NodeId;

/// The newest explanations format this build reads and writes.
pub const EXPLAIN_FORMAT_VERSION: u32 = 1;
/// Name of the explanations file in a scan folder.
pub const EXPLANATIONS_FILE: &str = "explanations.json";

/// The scan the patterns were built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRef {
    /// The scan's corpus spec.
    pub corpus: String,
    /// Tokens it scanned.
    pub tokens: u64,
}

/// The held-out text the explanations were scored on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutRef {
    /// The corpus spec.
    pub corpus: String,
    /// Always `held_out`: never the split the exemplars came from.
    pub split: String,
    /// Tokens scored.
    pub tokens: usize,
    /// Sequence length they were cut into.
    pub seq_len: usize,
}

/// Every explanation made for one model's scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationsFile {
    /// The format this was written in; readers refuse newer versions.
    pub format_version: u32,
    /// The model's fingerprint ([`crate::circuit::file::model_fingerprint`]).
    pub fingerprint: String,
    /// For display only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The scan the exemplars came from.
    pub scan: ScanRef,
    /// Where the scores were measured.
    pub held_out: HeldOutRef,
    /// The options the explanations were made with.
    pub options: ExplainOptions,
    /// Explanations by node.
    pub nodes: BTreeMap<NodeId, NodeExplanation>,
}

impl ExplanationsFile {
    /// The explanations file of the scan in `scan_dir`.
    pub fn path_in(scan_dir: &Path) -> PathBuf {
        scan_dir.join(EXPLANATIONS_FILE)
    }

    /// Reads and checks a file (version before anything else, so that a newer file says "newer").
    pub fn load(path: &Path) -> Result<ExplanationsFile> {
        let text = std::fs::read_to_string(path).map_err(|source| ExplainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let corrupt = |problem: CorruptExplanations| ExplainError::Corrupt {
            path: path.to_path_buf(),
            problem,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| corrupt(CorruptExplanations::NotJson(e)))?;
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt(CorruptExplanations::NoVersion))?;
        if version > EXPLAIN_FORMAT_VERSION as u64 {
            return Err(ExplainError::NewerVersion {
                path: path.to_path_buf(),
                found: version.min(u32::MAX as u64) as u32,
                supported: EXPLAIN_FORMAT_VERSION,
            });
        }
        let file: ExplanationsFile =
            serde_json::from_value(value).map_err(|e| corrupt(CorruptExplanations::Fields(e)))?;
        for (id, e) in &file.nodes {
            if e.correlation.is_some_and(|c| !(-1.001..=1.001).contains(&c)) {
                return Err(corrupt(CorruptExplanations::Correlation {
                    node: *id,
                    value: e.correlation,
                }));
            }
        }
        Ok(file)
    }

    /// [`ExplanationsFile::load`], then errs unless it was made for the model with `fingerprint`.
    pub fn load_for(path: &Path, fingerprint: &str) -> Result<ExplanationsFile> {
        let file = Self::load(path)?;
        file.check_model(path, fingerprint)?;
        Ok(file)
    }

    /// Errs unless the file was made for the model with `fingerprint`.
    pub fn check_model(&self, path: &Path, fingerprint: &str) -> Result<()> {
        if self.fingerprint != fingerprint {
            let made_for = match &self.model_name {
                Some(n) => format!("{n} ({})", self.fingerprint),
                None => self.fingerprint.clone(),
            };
            return Err(ExplainError::ModelMismatch {
                path: path.to_path_buf(),
                made_for,
                given: fingerprint.to_string(),
            });
        }
        Ok(())
    }

    /// Whether the file was built from this scan (same corpus and token count) with these options and held-out
    /// text, so that its entries can be kept beside new ones.
    pub fn compatible(&self, scan: &ScanMeta, held_out: &HeldOutRef, options: &ExplainOptions) -> bool {
        self.scan.corpus == scan.corpus
            && self.scan.tokens == scan.tokens
            && &self.held_out == held_out
            && &self.options == options
    }

    /// Writes the file atomically (pretty JSON, nodes in id order).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ExplainError::Corrupt {
            path: path.to_path_buf(),
            problem: CorruptExplanations::Serialise(e),
        })? + "\n";
        crate::fsio::write_atomic(path, text.as_bytes()).map_err(|e| ExplainError::Io {
            path: path.to_path_buf(),
            source: e.into_io(),
        })
    }
}
