//! The workbench's view of a scan (`<model dir>/scan/`, the [`ScanIndex`], and any scans of chosen nodes beside
//! it, `<model dir>/scan-*/`): per-hook means for mean ablation and per-node statistics (mean, density,
//! histogram, exemplars at each quantile).
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

/// An opened, fingerprint-checked scan, with the scans of chosen nodes beside it.
pub struct ScanSource {
    index: ScanIndex,
    /// Scans of chosen nodes (`scan --nodes ... --out <model dir>/scan-NAME`), asked in name order for a node
    /// the main scan does not cover.
    chosen: Vec<ScanIndex>,
    /// Why a scan of chosen nodes beside the model was left out (one line each).
    skipped: Vec<String>,
}

impl ScanSource {
    /// Opens `<model_dir>/scan` and every `<model_dir>/scan-*` (scans of chosen nodes) that exist. `Ok(None)`: no
    /// scan; `Err`: a scan that cannot be used (corrupt, newer, or another model's).
    pub fn open(model_dir: &Path, fingerprint: &str) -> Result<Option<ScanSource>, ScanError> {
        let main = Self::open_dir(&ScanIndex::default_dir(model_dir), fingerprint)?;
        let mut beside: Vec<std::path::PathBuf> = std::fs::read_dir(model_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_dir()
                            && p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.starts_with("scan-"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        beside.sort();
        let (mut chosen, mut skipped) = (Vec::new(), Vec::new());
        for dir in beside {
            match ScanIndex::open_for(&dir, fingerprint) {
                Ok(index) => chosen.push(index),
                Err(ScanError::Missing { .. }) => {}
                // One stale scan of chosen nodes must not cost the analyst the main scan.
                Err(e) => skipped.push(e.to_string()),
            }
        }
        Ok(match main {
            Some(mut s) => {
                s.chosen = chosen;
                s.skipped = skipped;
                Some(s)
            }
            None if chosen.is_empty() => None,
            None => {
                let index = chosen.remove(0);
                Some(ScanSource { index, chosen, skipped })
            }
        })
    }

    /// Like [`ScanSource::open`], for one scan directory anywhere.
    pub fn open_dir(dir: &Path, fingerprint: &str) -> Result<Option<ScanSource>, ScanError> {
        match ScanIndex::open_for(dir, fingerprint) {
            Ok(index) => Ok(Some(ScanSource {
                index,
                chosen: Vec::new(),
                skipped: Vec::new(),
            })),
            Err(ScanError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The main index (the model's own scan, or the first scan of chosen nodes when it has none).
    pub fn index(&self) -> &ScanIndex {
        &self.index
    }

    /// Why scans of chosen nodes beside the model were left out, one line each.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Every scan, the main one first.
    fn all(&self) -> impl Iterator<Item = &ScanIndex> {
        std::iter::once(&self.index).chain(&self.chosen)
    }

    /// Every channel's mean at `hook` (for mean ablation); `None` for a hook no scan covers whole.
    pub fn hook_means(&self, hook: &str) -> Option<Vec<f32>> {
        self.all().find_map(|i| i.hook_means(hook))
    }

    /// The node's standard deviation over the scan corpus; None for a node no scan covers.
    pub fn std(&self, id: &NodeId) -> Option<f32> {
        self.all().find_map(|i| i.std(id).ok())
    }

    /// None for a node no scan covers (another layer count, say): the panes then fall back to the circuit file's
    /// exemplars.
    pub fn node(&self, id: &NodeId) -> Option<NodeStats> {
        let s = self.all().find_map(|i| i.node(id).ok())?;
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
