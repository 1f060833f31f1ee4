//! The ScanIndex on disk: `index.json` (the [`ScanMeta`]) plus three little-endian binary files, read through
//! memory maps so that any node's summary is a few small reads.
//!
//! Every binary file starts with a 32-byte header: an 8-byte magic, then u32 fields (format version first), zero
//! padded. N = nodes (hooks in `meta.hooks` order, channels within a hook), B = `hist_bins`,
//! Q = `quantiles.len()`, E = exemplar slots per node, W = window length (before + 1 + after).
//!
//! - `stats.bin` (magic `CSSCSTAT`, version, N, B, Q): f32 `mean[N]`, `density[N]`, `min[N]`, `max[N]`, `std[N]`,
//!   f32 `quantile_values[N][2Q]` (bottom side for each quantile, then top side), u32 `hist[N][B]` (B equal-width bins
//!   over [min, max] of the node, see [`Histogram`]).
//! - `exemplars.bin` (magic `CSSCEXMP`, version, N, E, W): N × E fixed-size records of 12 + 2W bytes:
//!   u32 start (offset of the window's first token in `tokens.bin`), u16 len (0 = empty slot), u16 pivot,
//!   f32 value (the pivot's exact activation), f16 `acts[W]` (the first `len` used). Activations around the pivot
//!   are f16 to keep the bundled scans small; the pivot's own value is exact. Slots per node: top_k (largest
//!   first), bottom_k (smallest first), then per quantile its bottom-side then top-side samples.
//! - `tokens.bin` (magic `CSSCTOKS`, version, count as u32): u32 token ids of the scanned stream.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::error::{io_err, CorruptScan, Result, ScanError, ScanMetaError, UnknownScanNode};
use super::ScanData;
use crate::circuit::file::{Exemplar, QuantileExemplars};
use crate::circuit::NodeId;
use crate::fsio::{DirWriter, Keep};

/// The newest scan format this build reads and writes: 2 when the scan covers chosen nodes only (its hooks list
/// their channels), 1 otherwise, so that builds before `scan --nodes` still read full scans and refuse the others
/// instead of misreading them.
pub const SCAN_FORMAT_VERSION: u32 = 2;
/// The format of a scan of every node.
pub const SCAN_FORMAT_VERSION_FULL: u32 = 1;
/// The quantiles sampled from both ends of each node's distribution (as the reference viewer shows them).
pub const QUANTILES: [f64; 4] = [0.001, 0.01, 0.1, 0.5];

/// Name of the json meta file ([`ScanMeta`]) in a scan folder.
pub const INDEX_FILE: &str = "index.json";
/// Name of the per-node statistics file (scalars, quantile values, histograms).
pub const STATS_FILE: &str = "stats.bin";
/// Name of the exemplar records file.
pub const EXEMPLARS_FILE: &str = "exemplars.bin";
/// Name of the scanned token stream file (exemplar windows index into it).
pub const TOKENS_FILE: &str = "tokens.bin";

const STATS_MAGIC: &[u8; 8] = b"CSSCSTAT";
const EXEMPLARS_MAGIC: &[u8; 8] = b"CSSCEXMP";
const TOKENS_MAGIC: &[u8; 8] = b"CSSCTOKS";
const HEADER: usize = 32;
/// Per-node f32 statistics before the quantile values: mean, density, min, max, std.
const SCALARS: usize = 5;

/// One hook of the node universe: its nodes are `offset..offset + width` in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEntry {
    /// The hook name, e.g. `0.attn.q`.
    pub name: String,
    /// Channels of the hook in the index (all of them, or the chosen ones).
    pub width: usize,
    /// Index of the hook's first node.
    pub offset: usize,
    /// The hook's channels the index covers, strictly increasing (`scan --nodes`); absent: `0..width`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<usize>>,
}

impl HookEntry {
    /// The hook's channel at position `i` of this entry.
    pub fn channel(&self, i: usize) -> usize {
        self.channels.as_ref().map_or(i, |c| c[i])
    }

    /// The position of the hook's channel `c` in this entry, if the entry covers it.
    pub fn position(&self, c: usize) -> Option<usize> {
        match &self.channels {
            None => (c < self.width).then_some(c),
            Some(list) => list.binary_search(&c).ok(),
        }
    }
}

/// How many exemplars each node keeps and how wide their windows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExemplarLayout {
    /// Exemplars with the largest activations.
    pub top_k: usize,
    /// Exemplars with the smallest activations.
    pub bottom_k: usize,
    /// Samples per quantile and side.
    pub quantile_samples: usize,
    /// Context tokens kept before and after the pivot (clipped to the scanned sequence).
    pub before: usize,
    /// Context tokens kept after the pivot (clipped to the scanned sequence).
    pub after: usize,
}

impl ExemplarLayout {
    /// Tokens in a full window: `before + 1 + after`.
    pub fn window(&self) -> usize {
        self.before + 1 + self.after
    }

    /// Exemplar slots per node: top, bottom, and both sides of every quantile.
    pub fn per_node(&self) -> usize {
        self.top_k + self.bottom_k + 2 * QUANTILES.len() * self.quantile_samples
    }

    /// Bytes of one exemplar record on disk: u32 start, u16 len, u16 pivot, f32 value and an f16 per window token.
    pub fn record_bytes(&self) -> usize {
        12 + 2 * self.window()
    }
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanMeta {
    /// The format this was written in; readers refuse newer versions.
    pub format_version: u32,
    /// [`crate::circuit::file::model_fingerprint`] of the scanned model.
    pub fingerprint: String,
    /// For display only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The corpus spec (`synthetic:SEED`, a path, ...).
    pub corpus: String,
    /// Which split of the corpus was read (`train`).
    pub split: String,
    /// Tokens scanned (every node saw each once).
    pub tokens: u64,
    /// Sequence length the stream was cut into (the model's block size unless asked otherwise).
    pub seq_len: usize,
    /// Number of nodes (the sum of the hooks' widths).
    pub nodes: usize,
    /// The hooks of spec B in node order: per layer attn.act_in, attn.q, attn.k, attn.v, attn.resid_delta,
    /// mlp.act_in, mlp.post_act, mlp.resid_delta; then final_resid.
    pub hooks: Vec<HookEntry>,
    /// Histogram bins per node.
    pub hist_bins: usize,
    /// The quantiles sampled ([`QUANTILES`] when written by this build).
    pub quantiles: Vec<f64>,
    /// Exemplars kept per node and their window.
    pub exemplars: ExemplarLayout,
    /// Byte size of each binary file, by name.
    pub files: BTreeMap<String, u64>,
    /// The SAEs whose features were scanned (`scan --sae`), each a hook entry `<hook>.sae` after the model's
    /// hooks; absent in scans without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saes: Vec<ScanSae>,
}

/// One SAE whose latents a scan holds as nodes `<hook>.sae[i]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSae {
    /// The hook entry of its latents, e.g. `1.resid_mid.sae`.
    pub hook: String,
    /// The SAE folder as given to the scan (for display).
    pub path: String,
    /// [`crate::analysis::sae::Sae::fingerprint`]: which SAE the statistics belong to.
    pub fingerprint: String,
    /// Its latent count (the hook entry's width).
    pub n_latents: usize,
}

impl ScanMeta {
    /// The entry of hook `name`, if it was scanned.
    pub fn hook(&self, name: &str) -> Option<&HookEntry> {
        self.hooks.iter().find(|h| h.name == name)
    }

    /// The scanned SAE whose latents are the hook entry `group` (`1.resid_mid.sae`).
    pub fn sae(&self, group: &str) -> Option<&ScanSae> {
        self.saes.iter().find(|s| s.hook == group)
    }

    fn stats_bytes(&self) -> Option<usize> {
        let per_node = (SCALARS + 2 * self.quantiles.len()).checked_add(self.hist_bins)?;
        HEADER.checked_add(self.nodes.checked_mul(per_node)?.checked_mul(4)?)
    }

    fn exemplars_bytes(&self) -> Option<usize> {
        let rec = self.exemplars.record_bytes();
        HEADER.checked_add(self.nodes.checked_mul(self.exemplars.per_node())?.checked_mul(rec)?)
    }

    fn tokens_bytes(&self) -> Option<usize> {
        HEADER.checked_add(usize::try_from(self.tokens).ok()?.checked_mul(4)?)
    }

    /// Internal consistency, so that reads within the computed sizes cannot go out of bounds.
    fn validate(&self) -> std::result::Result<(), ScanMetaError> {
        if self.format_version == 0 {
            return Err(ScanMetaError::ZeroVersion);
        }
        if self.fingerprint.is_empty() {
            return Err(ScanMetaError::EmptyFingerprint);
        }
        let mut next = 0usize;
        for h in &self.hooks {
            if h.offset != next || h.width == 0 {
                return Err(ScanMetaError::HookLayout {
                    hook: h.name.clone(),
                    offset: h.offset,
                    expected: next,
                    width: h.width,
                });
            }
            if let Some(c) = &h.channels {
                if c.len() != h.width || c.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(ScanMetaError::HookChannels {
                        hook: h.name.clone(),
                        listed: c.len(),
                        width: h.width,
                    });
                }
            }
            next = h.offset.checked_add(h.width).ok_or(ScanMetaError::HookWidthsOverflow)?;
        }
        for sae in &self.saes {
            if self.hook(&sae.hook).map(|h| h.width) != Some(sae.n_latents) {
                return Err(ScanMetaError::SaeEntry {
                    hook: sae.hook.clone(),
                    n_latents: sae.n_latents,
                });
            }
        }
        if next != self.nodes {
            return Err(ScanMetaError::NodeCount {
                hooks: next,
                nodes: self.nodes,
            });
        }
        if self.tokens == 0 || self.tokens > u32::MAX as u64 {
            return Err(ScanMetaError::Tokens(self.tokens));
        }
        if self.hist_bins == 0 || self.hist_bins > 1 << 16 {
            return Err(ScanMetaError::HistBins(self.hist_bins));
        }
        if self.quantiles != QUANTILES {
            return Err(ScanMetaError::Quantiles {
                found: self.quantiles.clone(),
                expected: QUANTILES.to_vec(),
            });
        }
        let l = &self.exemplars;
        if l.window() > u16::MAX as usize || l.per_node() > 1 << 16 {
            return Err(ScanMetaError::ExemplarLayout);
        }
        if self.stats_bytes().is_none() || self.exemplars_bytes().is_none() || self.tokens_bytes().is_none() {
            return Err(ScanMetaError::SizesOverflow);
        }
        Ok(())
    }
}

/// A node's histogram: `counts.len()` equal-width bins over [lo, hi] = [min, max] of the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Lower edge of the first bin (the node's minimum).
    pub lo: f32,
    /// Upper edge of the last bin (the node's maximum).
    pub hi: f32,
    /// Tokens per bin.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// The bin a value falls in (values outside [lo, hi] go to the end bins): floor((v − lo) · bins / (hi − lo))
    /// computed in f32, the top edge in the last bin, everything in bin 0 when hi = lo.
    pub fn bin_of(&self, v: f32) -> usize {
        super::accumulate::hist_bin(v, self.lo, self.hi, self.counts.len())
    }

    /// [start, end) of bin `i`.
    pub fn bin_range(&self, i: usize) -> (f32, f32) {
        let w = (self.hi - self.lo) / self.counts.len().max(1) as f32;
        (self.lo + w * i as f32, self.lo + w * (i + 1) as f32)
    }
}

/// The estimated value of one quantile from both ends (bottom: q of the values lie below it; top: q lie above).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantileValue {
    /// The quantile q, as a fraction.
    pub quantile: f64,
    /// The value with a fraction q of the activations below it.
    pub bottom: f32,
    /// The value with a fraction q of the activations above it.
    pub top: f32,
}

/// Everything the index holds about one node, owned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeScan {
    /// The node.
    pub id: NodeId,
    /// Over all scanned tokens (what mean ablation uses).
    pub mean: f32,
    /// Fraction of tokens with a nonzero activation.
    pub density: f32,
    /// Smallest activation.
    pub min: f32,
    /// Largest activation.
    pub max: f32,
    /// Population standard deviation.
    pub std: f32,
    /// Distribution of the activations over [min, max].
    pub histogram: Histogram,
    /// Largest activations, largest first.
    pub top: Vec<Exemplar>,
    /// Smallest activations, smallest first.
    pub bottom: Vec<Exemplar>,
    /// Per quantile of [`QUANTILES`]: `bottom` holds the values nearest the bottom-side quantile value (the value
    /// with that fraction below it), preferring those at or below it, nearest first; `top` likewise for the
    /// top-side quantile value, preferring those at or above it.
    pub quantiles: Vec<QuantileExemplars>,
    /// The node's value at each quantile of [`QUANTILES`], from both ends.
    pub quantile_values: Vec<QuantileValue>,
}

/// An opened scan: the meta and memory maps of the three binary files.
pub struct ScanIndex {
    dir: PathBuf,
    meta: ScanMeta,
    stats: Mmap,
    exemplars: Mmap,
    tokens: Mmap,
}

impl std::fmt::Debug for ScanIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanIndex")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .finish()
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_f32(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn header(magic: &[u8; 8], fields: &[u32]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(magic);
    for f in fields {
        h.extend_from_slice(&f.to_le_bytes());
    }
    h.resize(HEADER, 0);
    h
}

impl ScanIndex {
    /// `<model_dir>/scan`.
    pub fn default_dir(model_dir: &Path) -> PathBuf {
        model_dir.join("scan")
    }

    /// Opens and checks an index directory: refuses a newer format version, a malformed index.json, or a binary
    /// file whose size or header does not match it.
    pub fn open(dir: &Path) -> Result<ScanIndex> {
        let index_path = dir.join(INDEX_FILE);
        let text = match fs::read_to_string(&index_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ScanError::Missing { dir: dir.to_path_buf() })
            }
            Err(e) => return Err(io_err(&index_path)(e)),
        };
        let corrupt = |path: &Path, reason: CorruptScan| ScanError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| corrupt(&index_path, CorruptScan::NotJson(e)))?;
        // Checked before the full parse, so that a newer index with fields we do not know says "newer".
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt(&index_path, CorruptScan::NoVersion))?;
        if version > SCAN_FORMAT_VERSION as u64 {
            return Err(ScanError::NewerVersion {
                path: index_path,
                found: version.min(u32::MAX as u64) as u32,
                supported: SCAN_FORMAT_VERSION,
            });
        }
        let meta: ScanMeta = serde_json::from_value(value).map_err(|e| corrupt(&index_path, CorruptScan::Schema(e)))?;
        meta.validate().map_err(|reason| ScanError::BadMeta {
            path: index_path.clone(),
            reason,
        })?;
        let n = meta.nodes as u32;
        let l = meta.exemplars;
        let stats = map_checked(
            &dir.join(STATS_FILE),
            meta.stats_bytes().expect("validated"),
            STATS_MAGIC,
            &[
                meta.format_version,
                n,
                meta.hist_bins as u32,
                meta.quantiles.len() as u32,
            ],
        )?;
        let exemplars = map_checked(
            &dir.join(EXEMPLARS_FILE),
            meta.exemplars_bytes().expect("validated"),
            EXEMPLARS_MAGIC,
            &[meta.format_version, n, l.per_node() as u32, l.window() as u32],
        )?;
        let tokens = map_checked(
            &dir.join(TOKENS_FILE),
            meta.tokens_bytes().expect("validated"),
            TOKENS_MAGIC,
            &[meta.format_version, meta.tokens as u32],
        )?;
        Ok(ScanIndex {
            dir: dir.to_path_buf(),
            meta,
            stats,
            exemplars,
            tokens,
        })
    }

    /// [`ScanIndex::open`] and [`ScanIndex::check_model`] in one.
    pub fn open_for(dir: &Path, fingerprint: &str) -> Result<ScanIndex> {
        let idx = Self::open(dir)?;
        idx.check_model(fingerprint)?;
        Ok(idx)
    }

    /// The scan folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed `index.json`.
    pub fn meta(&self) -> &ScanMeta {
        &self.meta
    }

    /// Errs unless the scan was made for the model with this fingerprint.
    pub fn check_model(&self, fingerprint: &str) -> Result<()> {
        if self.meta.fingerprint != fingerprint {
            let made_for = match &self.meta.model_name {
                Some(n) => format!("{n} ({})", self.meta.fingerprint),
                None => self.meta.fingerprint.clone(),
            };
            return Err(ScanError::ModelMismatch {
                path: self.dir.join(INDEX_FILE),
                made_for,
                given: fingerprint.to_string(),
            });
        }
        Ok(())
    }

    fn f32_array(&self, array: usize, node: usize) -> f32 {
        le_f32(&self.stats, HEADER + 4 * (array * self.meta.nodes + node))
    }

    /// The per-channel means of a hook (`0.attn.q`, `final_resid`), for mean ablation.
    pub fn hook_means(&self, hook: &str) -> Option<Vec<f32>> {
        // A scan of chosen channels cannot mean-ablate the others.
        let h = self.meta.hook(hook).filter(|h| h.channels.is_none())?;
        Some((h.offset..h.offset + h.width).map(|i| self.f32_array(0, i)).collect())
    }

    /// The node's position in the index, or why it is not there.
    pub fn node_index(&self, id: &NodeId) -> Result<usize> {
        let hook = id.group();
        let unknown = |problem: UnknownScanNode| ScanError::UnknownNode {
            node: id.to_string(),
            problem,
        };
        let h = self.meta.hook(&hook).ok_or_else(|| {
            if id.is_feature() {
                return unknown(UnknownScanNode::NoSae { hook: id.hook_name() });
            }
            let layers = self
                .meta
                .hooks
                .iter()
                .filter(|h| h.name.ends_with(".attn.act_in"))
                .count();
            unknown(UnknownScanNode::NoHook {
                hook: hook.to_string(),
                layers,
            })
        })?;
        match (h.position(id.index), &h.channels) {
            (Some(p), _) => Ok(h.offset + p),
            (None, None) => Err(unknown(UnknownScanNode::IndexOutOfRange {
                hook: hook.to_string(),
                width: h.width,
            })),
            (None, Some(_)) => Err(unknown(UnknownScanNode::NotChosen {
                hook: hook.to_string(),
                scanned: h.width,
            })),
        }
    }

    /// The node's population standard deviation over the scan, without reading its exemplars.
    pub fn std(&self, id: &NodeId) -> Result<f32> {
        Ok(self.f32_array(4, self.node_index(id)?))
    }

    /// The node's statistics and exemplars.
    pub fn node(&self, id: &NodeId) -> Result<NodeScan> {
        let i = self.node_index(id)?;
        let m = &self.meta;
        let nq = m.quantiles.len();
        let stats_path = || self.dir.join(STATS_FILE);
        let (mean, density, min, max, std) = (
            self.f32_array(0, i),
            self.f32_array(1, i),
            self.f32_array(2, i),
            self.f32_array(3, i),
            self.f32_array(4, i),
        );
        let qv_at = HEADER + 4 * (SCALARS * m.nodes + 2 * nq * i);
        let quantile_values = m
            .quantiles
            .iter()
            .enumerate()
            .map(|(q, &quantile)| QuantileValue {
                quantile,
                bottom: le_f32(&self.stats, qv_at + 4 * q),
                top: le_f32(&self.stats, qv_at + 4 * (nq + q)),
            })
            .collect();
        let hist_at = HEADER + 4 * ((SCALARS + 2 * nq) * m.nodes + m.hist_bins * i);
        let counts: Vec<u64> = (0..m.hist_bins)
            .map(|b| le_u32(&self.stats, hist_at + 4 * b) as u64)
            .collect();
        if counts.iter().sum::<u64>() != m.tokens {
            return Err(ScanError::Corrupt {
                path: stats_path(),
                reason: CorruptScan::HistogramSum {
                    node: *id,
                    tokens: m.tokens,
                },
            });
        }

        let l = m.exemplars;
        let rec = l.record_bytes();
        let base = HEADER + i * l.per_node() * rec;
        let mut slots = Vec::with_capacity(l.per_node());
        for s in 0..l.per_node() {
            slots.push(self.exemplar(base + s * rec, id)?);
        }
        let mut it = slots.into_iter();
        let mut take = |k: usize| -> Vec<Exemplar> { it.by_ref().take(k).flatten().collect() };
        let top = take(l.top_k);
        let bottom = take(l.bottom_k);
        let quantiles = m
            .quantiles
            .iter()
            .map(|&quantile| {
                let bottom = take(l.quantile_samples);
                let top = take(l.quantile_samples);
                QuantileExemplars { quantile, bottom, top }
            })
            .collect();
        Ok(NodeScan {
            id: *id,
            mean,
            density,
            min,
            max,
            std,
            histogram: Histogram {
                lo: min,
                hi: max,
                counts,
            },
            top,
            bottom,
            quantiles,
            quantile_values,
        })
    }

    /// One record; None for an empty slot.
    fn exemplar(&self, at: usize, id: &NodeId) -> Result<Option<Exemplar>> {
        let b = &self.exemplars[..];
        let start = le_u32(b, at) as usize;
        let len = u16::from_le_bytes([b[at + 4], b[at + 5]]) as usize;
        let pivot = u16::from_le_bytes([b[at + 6], b[at + 7]]) as usize;
        let value = le_f32(b, at + 8);
        if len == 0 {
            return Ok(None);
        }
        if len > self.meta.exemplars.window() || pivot >= len || start + len > self.meta.tokens as usize {
            return Err(ScanError::Corrupt {
                path: self.dir.join(EXEMPLARS_FILE),
                reason: CorruptScan::ExemplarWindow {
                    node: *id,
                    start,
                    len,
                    pivot,
                },
            });
        }
        let mut acts: Vec<f32> = (0..len)
            .map(|j| half::f16::from_le_bytes([b[at + 12 + 2 * j], b[at + 13 + 2 * j]]).to_f32())
            .collect();
        acts[pivot] = value;
        let tokens = (start..start + len)
            .map(|t| le_u32(&self.tokens, HEADER + 4 * t))
            .collect();
        Ok(Some(Exemplar { tokens, acts, pivot }))
    }

    /// Token ids of the scanned stream in `range` (clipped to it), e.g. to show more context around an exemplar.
    pub fn stream_tokens(&self, range: std::ops::Range<usize>) -> Vec<u32> {
        let end = range.end.min(self.meta.tokens as usize);
        (range.start.min(end)..end)
            .map(|t| le_u32(&self.tokens, HEADER + 4 * t))
            .collect()
    }
}

/// Maps `path`, checking its exact size, magic and header fields.
fn map_checked(path: &Path, size: usize, magic: &[u8; 8], fields: &[u32]) -> Result<Mmap> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let corrupt = |reason: CorruptScan| ScanError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if len != size as u64 {
        return Err(corrupt(CorruptScan::Size {
            len,
            expected: size as u64,
        }));
    }
    // SAFETY: the map is read-only and every read is bounds-checked against the size checked above; a file
    // truncated under us by another process is outside what a reader can defend against, as for every
    // mmap-based loader.
    let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
    if &map[..8] != magic {
        return Err(corrupt(CorruptScan::BadMagic {
            expected: String::from_utf8_lossy(magic).into_owned(),
        }));
    }
    for (k, &want) in fields.iter().enumerate() {
        let got = le_u32(&map, 8 + 4 * k);
        if got != want {
            return Err(corrupt(CorruptScan::HeaderField { field: k, got, want }));
        }
    }
    Ok(map)
}

impl ScanData {
    /// The index.json for this scan of a model with `fingerprint` over `corpus`.
    pub fn meta(&self, fingerprint: &str, model_name: Option<String>, corpus: &str) -> ScanMeta {
        let chosen = self.hooks.iter().any(|h| h.channels.is_some());
        let mut meta = ScanMeta {
            format_version: if chosen {
                SCAN_FORMAT_VERSION
            } else {
                SCAN_FORMAT_VERSION_FULL
            },
            fingerprint: fingerprint.to_string(),
            model_name,
            corpus: corpus.to_string(),
            split: "train".into(),
            tokens: self.tokens.len() as u64,
            seq_len: self.seq_len,
            nodes: self.nodes(),
            hooks: self.hooks.clone(),
            hist_bins: self.hist_bins,
            quantiles: QUANTILES.to_vec(),
            exemplars: self.layout,
            files: BTreeMap::new(),
            saes: self.saes.clone(),
        };
        meta.files = BTreeMap::from([
            (STATS_FILE.to_string(), meta.stats_bytes().unwrap_or(0) as u64),
            (EXEMPLARS_FILE.to_string(), meta.exemplars_bytes().unwrap_or(0) as u64),
            (TOKENS_FILE.to_string(), meta.tokens_bytes().unwrap_or(0) as u64),
        ]);
        meta
    }

    /// Writes the index to `dir` atomically: all files go to a temporary directory beside it, are synced, and
    /// replace `dir` in one rename, so that a crash leaves either the old index or the new one. Refuses to replace
    /// a non-empty directory that is not a scan index.
    pub fn write(&self, dir: &Path, meta: &ScanMeta) -> Result<()> {
        let mine = self.meta(&meta.fingerprint, meta.model_name.clone(), &meta.corpus);
        if mine.nodes != meta.nodes
            || mine.hooks != meta.hooks
            || mine.tokens != meta.tokens
            || mine.exemplars != meta.exemplars
            || mine.hist_bins != meta.hist_bins
            || mine.format_version != meta.format_version
            || mine.saes != meta.saes
        {
            return Err(ScanError::MetaMismatch);
        }
        mine.validate().map_err(ScanError::InvalidMeta)?;
        let (stats, exemplars, tokens) = self.encode(meta);
        let index = serde_json::to_string_pretty(&mine).expect("a scan meta serialises") + "\n";
        replace_dir_atomic(
            dir,
            &[
                (STATS_FILE, &stats),
                (EXEMPLARS_FILE, &exemplars),
                (TOKENS_FILE, &tokens),
                (INDEX_FILE, index.as_bytes()),
            ],
        )
    }

    fn encode(&self, meta: &ScanMeta) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let n = self.nodes();
        let nq = QUANTILES.len();
        let mut stats = header(
            STATS_MAGIC,
            &[meta.format_version, n as u32, self.hist_bins as u32, nq as u32],
        );
        stats.reserve(meta.stats_bytes().unwrap_or(0));
        for arr in [
            &self.mean,
            &self.density,
            &self.min,
            &self.max,
            &self.std,
            &self.quantile_values,
        ] {
            for v in arr.iter() {
                stats.extend_from_slice(&v.to_le_bytes());
            }
        }
        for c in &self.hist {
            stats.extend_from_slice(&c.to_le_bytes());
        }

        let l = self.layout;
        let w = l.window();
        let mut ex = header(
            EXEMPLARS_MAGIC,
            &[meta.format_version, n as u32, l.per_node() as u32, w as u32],
        );
        ex.reserve(meta.exemplars_bytes().unwrap_or(0));
        for r in &self.exemplars {
            ex.extend_from_slice(&r.start.to_le_bytes());
            ex.extend_from_slice(&(r.acts.len() as u16).to_le_bytes());
            ex.extend_from_slice(&r.pivot.to_le_bytes());
            ex.extend_from_slice(&r.value.to_le_bytes());
            for j in 0..w {
                let a = r.acts.get(j).copied().unwrap_or(0.0).clamp(-65504.0, 65504.0);
                ex.extend_from_slice(&half::f16::from_f32(a).to_le_bytes());
            }
        }

        let mut tokens = header(TOKENS_MAGIC, &[meta.format_version, self.tokens.len() as u32]);
        tokens.reserve(4 * self.tokens.len());
        for t in &self.tokens {
            tokens.extend_from_slice(&t.to_le_bytes());
        }
        (stats, ex, tokens)
    }
}

/// Replaces directory `dir` by one holding exactly `files`, in one rename ([`crate::fsio::DirWriter`]).
fn replace_dir_atomic(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    if dir.exists() {
        let is_scan = dir.join(INDEX_FILE).is_file();
        let empty = dir.is_dir() && fs::read_dir(dir).map_err(io_err(dir))?.next().is_none();
        if !dir.is_dir() || !(is_scan || empty) {
            return Err(ScanError::NotAScanDir { dir: dir.to_path_buf() });
        }
    }
    let fsio_err = |e: crate::fsio::FsioError| io_err(dir)(e.into_io());
    let writer = DirWriter::begin(dir, Keep::Nothing).map_err(fsio_err)?;
    for (file, bytes) in files {
        crate::fsio::write_atomic(&writer.path().join(file), bytes).map_err(fsio_err)?;
    }
    writer.commit().map_err(fsio_err)
}
