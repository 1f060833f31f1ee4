//! The workbench's view of a scan (`<model dir>/scan/`): per-hook means for mean ablation and per-node
//! statistics (mean, density, histogram, exemplars at each quantile).
//!
//! A small adapter so that the UI depends on owned summaries only and works (with fewer panes filled) when a
//! model has no scan.

use std::path::Path;

use crate::circuit::{NodeId, QuantileExemplars};

/// One node's statistics over the scan corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStats {
    pub mean: f32,
    pub density: f32,
    pub min: f32,
    pub max: f32,
    pub std: f32,
    /// (lo, hi, counts) over equal-width bins.
    pub histogram: Option<(f32, f32, Vec<u64>)>,
    pub quantiles: Vec<QuantileExemplars>,
}

/// Until `analysis::scan` lands this finds no scan; the panes that need one say so.
pub struct ScanSource {
    _private: (),
}

impl ScanSource {
    /// Opens `<model_dir>/scan` when it exists. `Ok(None)`: no scan; `Err`: a scan that cannot be used (message
    /// for the status bar).
    pub fn open(_model_dir: &Path, _fingerprint: &str) -> Result<Option<ScanSource>, String> {
        Ok(None)
    }

    pub fn hook_means(&self, _hook: &str) -> Option<Vec<f32>> {
        None
    }

    pub fn node(&self, _id: &NodeId) -> Option<NodeStats> {
        None
    }
}
