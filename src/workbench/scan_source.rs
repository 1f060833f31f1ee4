//! The workbench's view of a scan (`<model dir>/scan/`, the [`ScanIndex`]): per-hook means for mean ablation and
//! per-node statistics (mean, density, histogram, exemplars at each quantile).
//!
//! A small adapter so that the UI depends on owned summaries only and works (with fewer panes filled) when a
//! model has no scan.

use std::path::Path;

use crate::analysis::scan::{ScanError, ScanIndex};
use crate::circuit::{NodeId, QuantileExemplars};

/// One node's statistics over the scan corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStats {
    /// Mean activation.
    pub mean: f32,
    /// Fraction of tokens where the node is nonzero.
    pub density: f32,
    /// Smallest activation.
    pub min: f32,
    /// Largest activation.
    pub max: f32,
    /// Standard deviation.
    pub std: f32,
    /// (lo, hi, counts) over equal-width bins.
    pub histogram: Option<(f32, f32, Vec<u64>)>,
    /// Outermost first: the scan's top/bottom exemplars as quantile 0, then its quantiles in order.
    pub quantiles: Vec<QuantileExemplars>,
}

/// An opened, fingerprint-checked scan.
pub struct ScanSource {
    index: ScanIndex,
}

impl ScanSource {
    /// Opens `<model_dir>/scan` when it exists. `Ok(None)`: no scan; `Err`: a scan that cannot be used (corrupt,
    /// newer, or another model's).
    pub fn open(model_dir: &Path, fingerprint: &str) -> Result<Option<ScanSource>, ScanError> {
        Self::open_dir(&ScanIndex::default_dir(model_dir), fingerprint)
    }

    /// Like [`ScanSource::open`], for a scan directory anywhere.
    pub fn open_dir(dir: &Path, fingerprint: &str) -> Result<Option<ScanSource>, ScanError> {
        match ScanIndex::open_for(dir, fingerprint) {
            Ok(index) => Ok(Some(ScanSource { index })),
            Err(ScanError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The underlying index.
    pub fn index(&self) -> &ScanIndex {
        &self.index
    }

    /// Every channel's mean at `hook` (for mean ablation); `None` for a hook the scan lacks.
    pub fn hook_means(&self, hook: &str) -> Option<Vec<f32>> {
        self.index.hook_means(hook)
    }

    /// The node's standard deviation over the scan corpus; None for a node the scan does not cover.
    pub fn std(&self, id: &NodeId) -> Option<f32> {
        self.index.std(id).ok()
    }

    /// None for a node the scan does not cover (another layer count, say): the panes then fall back to the
    /// circuit file's exemplars.
    pub fn node(&self, id: &NodeId) -> Option<NodeStats> {
        let s = self.index.node(id).ok()?;
        let mut quantiles = Vec::with_capacity(s.quantiles.len() + 1);
        if !s.top.is_empty() || !s.bottom.is_empty() {
            quantiles.push(QuantileExemplars {
                quantile: 0.0,
                bottom: s.bottom,
                top: s.top,
            });
        }
        quantiles.extend(s.quantiles);
        Some(NodeStats {
            mean: s.mean,
            density: s.density,
            min: s.min,
            max: s.max,
            std: s.std,
            histogram: Some((s.histogram.lo, s.histogram.hi, s.histogram.counts)),
            quantiles,
        })
    }
}
