//! Activation scans: per node of spec B (the 8 per-layer hook locations and `final_resid`), its mean (for mean
//! ablation), density, min/max/std, histogram, top and bottom exemplars and samples at the 0.1%, 1%, 10% and 50%
//! quantiles from both ends, each with its context window. Stored as the [`ScanIndex`] (see [`index`] for the
//! file format).
//!
//! Two passes over the tokens, memory bounded by one batch of activations plus a fixed state per node:
//! pass 1 accumulates moments, min/max, density, a log-scale histogram (for quantile estimates, ~1.6% relative
//! resolution) and the top/bottom exemplars; pass 2 fills the display histogram over [min, max] and, for each
//! quantile, keeps the values nearest its estimate, preferring the tail's side.
//!
//! Cost per pass: one forward over the tokens plus a few operations per (token, node); channels are spread over
//! rayon's threads.
//!
//! With SAEs ([`scan_with_saes`]), each SAE's latents are nodes too (`1.resid_mid.sae[i]`, a hook entry
//! `<hook>.sae` after the model's hooks): every batch, the SAE encodes its hook's recorded activations and the
//! code is accumulated like any hook's channels. An SAE adds one encode per batch and pass.

mod accumulate;
pub mod error;
pub mod index;

use std::collections::HashSet;

use candle_core::{Device, Tensor};

use crate::analysis::sae::Sae;
use crate::circuit::node_id::{sae_group, Site};
use crate::circuit::NodeId;
use crate::model::{Config, Gpt, Hooks};
use accumulate::{feed, logbin, BatchView, Candidate, Pass1, Pass2, Selector};
pub use error::{CorruptScan, Result, ScanError, ScanMetaError, UnknownScanNode};
pub use index::{
    ExemplarLayout, Histogram, HookEntry, NodeScan, QuantileValue, ScanIndex, ScanMeta, ScanSae, QUANTILES,
    SCAN_FORMAT_VERSION,
};

/// Tokens `scan` reads by default: the bundled 2-layer model scans them in seconds on 2 cores.
pub const DEFAULT_SCAN_TOKENS: usize = 262_144;

/// How a scan reads the corpus and what it keeps per node.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Length of the sequences the token stream is cut into; None = the model's block size.
    pub seq_len: Option<usize>,
    /// Tokens per forward pass (rounded to whole sequences); bounds the activation memory.
    pub batch_tokens: usize,
    /// Histogram bins per node.
    pub hist_bins: usize,
    /// How many exemplars each node keeps and how wide their windows are.
    pub layout: ExemplarLayout,
}

impl Default for ScanOptions {
    /// Sized so that the bundled models' scans stay a few MB each.
    fn default() -> Self {
        ScanOptions {
            seq_len: None,
            batch_tokens: 4096,
            hist_bins: 64,
            layout: ExemplarLayout {
                top_k: 8,
                bottom_k: 8,
                quantile_samples: 2,
                before: 16,
                after: 4,
            },
        }
    }
}

/// Reported after every batch.
#[derive(Debug, Clone, Copy)]
pub struct ScanProgress {
    /// 1 or 2.
    pub pass: u8,
    /// Tokens done in this pass.
    pub tokens_done: usize,
    /// Tokens the pass reads in all.
    pub tokens_total: usize,
}

/// One exemplar slot as the scan produced it (f32 activations; `acts` empty for an empty slot).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExemplarRec {
    /// Offset of the window's first token in the scanned stream.
    pub start: u32,
    /// Position of the pivot token within the window.
    pub pivot: u16,
    /// The node's activation at the pivot.
    pub value: f32,
    /// The node's activations over the window.
    pub acts: Vec<f32>,
}

impl From<Candidate> for ExemplarRec {
    fn from(c: Candidate) -> Self {
        ExemplarRec {
            start: c.start,
            pivot: c.pivot,
            value: c.value,
            acts: c.acts,
        }
    }
}

/// A finished scan in memory; [`ScanData::write`] stores it as a [`ScanIndex`]. Per-node arrays are in node
/// order (see [`node_hooks`]).
#[derive(Debug, Clone)]
pub struct ScanData {
    /// The hooks scanned, in node order.
    pub hooks: Vec<HookEntry>,
    /// The scanned token stream.
    pub tokens: Vec<u32>,
    /// Length of the sequences the stream was cut into.
    pub seq_len: usize,
    /// Histogram bins per node.
    pub hist_bins: usize,
    /// Exemplars kept per node and their window.
    pub layout: ExemplarLayout,
    /// (nodes) mean activation over all tokens.
    pub mean: Vec<f32>,
    /// (nodes) fraction of tokens with a nonzero activation.
    pub density: Vec<f32>,
    /// (nodes) smallest activation.
    pub min: Vec<f32>,
    /// (nodes) largest activation.
    pub max: Vec<f32>,
    /// (nodes) population standard deviation.
    pub std: Vec<f32>,
    /// (nodes, 2·QUANTILES): the bottom-side quantile values, then the top-side ones.
    pub quantile_values: Vec<f32>,
    /// (nodes, hist_bins)
    pub hist: Vec<u32>,
    /// (nodes, layout.per_node()): top, bottom, then per quantile bottom side and top side.
    pub exemplars: Vec<ExemplarRec>,
    /// The SAEs whose latents are among the nodes (their hook entries follow the model's).
    pub saes: Vec<ScanSae>,
}

impl ScanData {
    /// Number of nodes scanned (the sum of the hooks' widths).
    pub fn nodes(&self) -> usize {
        self.mean.len()
    }
}

/// The hooks of spec B's node universe for `cfg`, in node order, with their offsets.
pub fn node_hooks(cfg: &Config) -> Vec<HookEntry> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut push = |name: String, width: usize| {
        out.push(HookEntry {
            name,
            width,
            offset,
            channels: None,
        });
        offset += width;
    };
    for l in 0..cfg.n_layer {
        for site in Site::ALL.into_iter().filter(|s| *s != Site::FinalResid) {
            push(
                site.hook(l).to_string(),
                site.width(cfg).expect("Site::ALL are the model's sites"),
            );
        }
    }
    push(Site::FinalResid.name().to_string(), cfg.d_model);
    out
}

/// Batches of the stream: (first token, sequences, sequence length). Whole sequences first, then the remainder as
/// one shorter sequence.
fn batches(n: usize, seq_len: usize, batch_tokens: usize) -> Vec<(usize, usize, usize)> {
    let per = (batch_tokens / seq_len).max(1);
    let full = n / seq_len;
    let mut out = Vec::new();
    let mut s = 0;
    while s < full {
        let k = per.min(full - s);
        out.push((s * seq_len, k, seq_len));
        s += k;
    }
    if !n.is_multiple_of(seq_len) {
        out.push((full * seq_len, 1, n % seq_len));
    }
    out
}

/// What both passes read.
struct Passes<'a> {
    model: &'a Gpt,
    tokens: &'a [u32],
    /// The model's node hooks.
    hooks: &'a [HookEntry],
    /// Each SAE with the hook entry of its latents.
    saes: &'a [(HookEntry, &'a Sae)],
    seq_len: usize,
    opts: &'a ScanOptions,
}

/// Runs the forward over every batch and feeds each node hook's activations to `accs`.
fn run_pass<A: accumulate::Accumulator>(
    p: &Passes,
    accs: &mut [A],
    pass: u8,
    progress: &mut dyn FnMut(ScanProgress),
) -> Result<()> {
    let Passes {
        model,
        tokens,
        hooks,
        saes,
        seq_len,
        opts,
    } = *p;
    let names: HashSet<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
    let sae_hooks: Vec<String> = saes.iter().map(|(_, sae)| sae.hook().to_string()).collect();
    let pattern = hooks
        .iter()
        .map(|h| h.name.as_str())
        .chain(sae_hooks.iter().map(String::as_str))
        .map(|h| regex::escape(h) + "$")
        .collect::<Vec<_>>()
        .join("|");
    let mut done = 0;
    for (start, seqs, t) in batches(tokens.len(), seq_len, opts.batch_tokens) {
        let ids = &tokens[start..start + seqs * t];
        let input = Tensor::from_slice(ids, (seqs, t), &Device::Cpu)?;
        let mut rec = Hooks::recording(&pattern)?;
        // An SAE's hook stays whole: the SAE reads all of it.
        for h in hooks.iter().filter(|h| !sae_hooks.contains(&h.name)) {
            if let Some(channels) = &h.channels {
                rec.record_channels(&h.name, channels);
            }
        }
        model.forward(&input, &mut rec)?;
        // SAEs first: their hook may also be a node hook, which the loop below takes out of the recording.
        for ((entry, sae), hook) in saes.iter().zip(&sae_hooks) {
            let act = rec
                .recorded
                .get(hook)
                .ok_or_else(|| ScanError::NotRecorded { hook: hook.clone() })?;
            // (seqs, t, d_in) → z (seqs·t, n_latents), rows in token order as the node hooks' are.
            let z = sae.encode(act).map_err(|source| ScanError::Sae {
                hook: hook.clone(),
                source: Box::new(source),
            })?;
            let data: Vec<f32> = z.flatten_all()?.to_vec1()?;
            let view = BatchView {
                data: &data,
                width: entry.width,
                t,
                token_base: start,
                before: opts.layout.before,
                after: opts.layout.after,
            };
            feed(&mut accs[entry.offset..entry.offset + entry.width], &view);
        }
        for h in hooks {
            let act = rec
                .recorded
                .remove(&h.name)
                .ok_or_else(|| ScanError::NotRecorded { hook: h.name.clone() })?;
            // (rows, width): a hook of chosen channels is recorded at those channels only, unless an SAE reads it.
            let act = match &h.channels {
                Some(ch) if sae_hooks.contains(&h.name) => {
                    let idx: Vec<u32> = ch.iter().map(|&c| c as u32).collect();
                    act.index_select(&Tensor::from_vec(idx, ch.len(), &Device::Cpu)?, act.rank() - 1)?
                }
                _ => act,
            };
            let data: Vec<f32> = act.flatten_all()?.to_vec1()?;
            if data.len() != seqs * t * h.width {
                return Err(ScanError::RecordedSize {
                    hook: h.name.clone(),
                    got: data.len(),
                    rows: seqs * t,
                    width: h.width,
                });
            }
            let view = BatchView {
                data: &data,
                width: h.width,
                t,
                token_base: start,
                before: opts.layout.before,
                after: opts.layout.after,
            };
            feed(&mut accs[h.offset..h.offset + h.width], &view);
        }
        debug_assert!(rec.recorded.keys().all(|k| !names.contains(k.as_str())));
        done += ids.len();
        progress(ScanProgress {
            pass,
            tokens_done: done,
            tokens_total: tokens.len(),
        });
    }
    Ok(())
}

/// Scans `tokens` (one stream, cut into sequences of `opts.seq_len` or the block size) with `model`.
pub fn scan(
    model: &Gpt,
    tokens: &[u32],
    opts: &ScanOptions,
    progress: &mut dyn FnMut(ScanProgress),
) -> Result<ScanData> {
    scan_with_saes(model, tokens, opts, &[], progress)
}

/// [`scan`], with the latents of each of `saes` (an SAE, checked against the model by the caller with
/// [`Sae::check_model`], and its folder as the user gave it) scanned as nodes `<hook>.sae[i]`, at most one SAE
/// per hook.
pub fn scan_with_saes(
    model: &Gpt,
    tokens: &[u32],
    opts: &ScanOptions,
    saes: &[(&Sae, &str)],
    progress: &mut dyn FnMut(ScanProgress),
) -> Result<ScanData> {
    scan_chosen(model, tokens, opts, saes, None, progress)
}

/// The hooks of `only` (model nodes, not features), each listing its chosen channels, in node order; and for
/// every chosen node its index in the full universe of `full` (which seeds its exemplar sampling, so that a
/// node's scan does not depend on which other nodes were chosen).
fn chosen_hooks(full: &[HookEntry], only: &[NodeId]) -> Result<(Vec<HookEntry>, Vec<usize>)> {
    if only.is_empty() {
        return Err(ScanError::NoChosenNodes);
    }
    let mut by_hook: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for id in only {
        let bad = |problem: String| ScanError::ChosenNode {
            node: id.to_string(),
            problem,
        };
        if id.is_feature() {
            return Err(bad(
                "an SAE feature; scan features with --sae DIR (all of that SAE's latents)".into(),
            ));
        }
        let name = id.group();
        let (h, entry) = full
            .iter()
            .enumerate()
            .find(|(_, h)| h.name == name)
            .ok_or_else(|| bad(format!("the model has no hook `{name}`")))?;
        if id.index >= entry.width {
            return Err(bad(format!(
                "index out of range (`{name}` has {} channels)",
                entry.width
            )));
        }
        by_hook.entry(h).or_default().push(id.index);
    }
    let (mut hooks, mut global, mut offset) = (Vec::new(), Vec::new(), 0);
    for (h, mut channels) in by_hook {
        channels.sort_unstable();
        channels.dedup();
        global.extend(channels.iter().map(|c| full[h].offset + c));
        hooks.push(HookEntry {
            name: full[h].name.clone(),
            width: channels.len(),
            offset,
            channels: Some(channels),
        });
        offset += hooks.last().map_or(0, |e| e.width);
    }
    Ok((hooks, global))
}

/// [`scan_with_saes`], over the model nodes `only` when given (same statistics and exemplars as in a scan of
/// every node; the index lists each hook's chosen channels).
pub fn scan_chosen(
    model: &Gpt,
    tokens: &[u32],
    opts: &ScanOptions,
    saes: &[(&Sae, &str)],
    only: Option<&[NodeId]>,
    progress: &mut dyn FnMut(ScanProgress),
) -> Result<ScanData> {
    let cfg = &model.config;
    if tokens.is_empty() {
        return Err(ScanError::NoTokens);
    }
    if tokens.len() > u32::MAX as usize {
        return Err(ScanError::TooManyTokens(tokens.len()));
    }
    if let Some((pos, &id)) = tokens.iter().enumerate().find(|(_, &id)| id as usize >= cfg.vocab_size) {
        return Err(ScanError::TokenOutOfVocab {
            id,
            pos,
            vocab: cfg.vocab_size,
        });
    }
    let seq_len = opts.seq_len.unwrap_or(cfg.block_size);
    if seq_len == 0 || seq_len > cfg.block_size {
        return Err(ScanError::SeqLen {
            seq_len,
            block_size: cfg.block_size,
        });
    }
    if opts.hist_bins == 0 || opts.layout.window() > u16::MAX as usize {
        return Err(ScanError::BadLayout {
            hist_bins: opts.hist_bins,
            window: opts.layout.window(),
        });
    }
    let l = opts.layout;
    let hooks = node_hooks(cfg);
    let full_nodes = hooks.last().map_or(0, |h| h.offset + h.width);
    let (hooks, mut global) = match only {
        None => (hooks, (0..full_nodes).collect::<Vec<usize>>()),
        Some(ids) => chosen_hooks(&hooks, ids)?,
    };
    let mut n_nodes = hooks.last().map_or(0, |h| h.offset + h.width);
    let mut sae_seen = 0;
    let mut sae_entries: Vec<(HookEntry, &Sae)> = Vec::with_capacity(saes.len());
    let mut scan_saes = Vec::with_capacity(saes.len());
    for &(sae, path) in saes {
        let name = sae_group(sae.hook());
        if sae_entries.iter().any(|(e, _)| e.name == name) {
            return Err(ScanError::DuplicateSaeHook {
                hook: sae.hook().to_string(),
            });
        }
        let width = sae.config.n_latents;
        scan_saes.push(ScanSae {
            hook: name.clone(),
            path: path.to_string(),
            fingerprint: sae.fingerprint().map_err(|source| ScanError::Sae {
                hook: sae.hook().to_string(),
                source: Box::new(source),
            })?,
            n_latents: width,
        });
        sae_entries.push((
            HookEntry {
                name,
                width,
                offset: n_nodes,
                channels: None,
            },
            sae,
        ));
        // An SAE's latents are numbered after the whole model's nodes, as in a scan of every node.
        global.extend((0..width).map(|j| full_nodes + sae_seen + j));
        sae_seen += width;
        n_nodes += width;
    }
    let all_hooks: Vec<HookEntry> = hooks
        .iter()
        .cloned()
        .chain(sae_entries.iter().map(|(e, _)| e.clone()))
        .collect();
    let n = tokens.len();

    let mut p1: Vec<Pass1> = global.iter().map(|&g| Pass1::new(g, l.top_k, l.bottom_k)).collect();
    let passes = Passes {
        model,
        tokens,
        hooks: &hooks,
        saes: &sae_entries,
        seq_len,
        opts,
    };
    run_pass(&passes, &mut p1, 1, progress)?;

    let nq = QUANTILES.len();
    let mut data = ScanData {
        hooks: all_hooks,
        tokens: tokens.to_vec(),
        seq_len,
        hist_bins: opts.hist_bins,
        layout: l,
        mean: Vec::with_capacity(n_nodes),
        density: Vec::with_capacity(n_nodes),
        min: Vec::with_capacity(n_nodes),
        max: Vec::with_capacity(n_nodes),
        std: Vec::with_capacity(n_nodes),
        quantile_values: Vec::with_capacity(n_nodes * 2 * nq),
        hist: Vec::new(),
        exemplars: Vec::with_capacity(n_nodes * l.per_node()),
        saes: scan_saes,
    };
    let mut p2 = Vec::with_capacity(n_nodes);
    let mut extremes = Vec::with_capacity(n_nodes);
    for (node, a) in p1.into_iter().enumerate() {
        let mean = a.sum / n as f64;
        let var = (a.sumsq / n as f64 - mean * mean).max(0.0);
        data.mean.push(mean as f32);
        data.density.push((a.nnz as f64 / n as f64) as f32);
        data.min.push(a.min);
        data.max.push(a.max);
        data.std.push(var.sqrt() as f32);
        let last = (n - 1) as f64;
        let bottoms: Vec<f32> = QUANTILES
            .iter()
            .map(|q| logbin::value_at_rank(&a.loghist, q * last, a.min, a.max))
            .collect();
        let tops: Vec<f32> = QUANTILES
            .iter()
            .map(|q| logbin::value_at_rank(&a.loghist, (1.0 - q) * last, a.min, a.max))
            .collect();
        data.quantile_values.extend(&bottoms);
        data.quantile_values.extend(&tops);
        let margin = |t: f32| t.abs() / 64.0 + 1e-6 * (a.max - a.min);
        let mut targets = [(0.0, false, 0.0); accumulate::SELECTORS];
        let mut selectors = Vec::with_capacity(accumulate::SELECTORS);
        for q in 0..nq {
            targets[2 * q] = (bottoms[q], false, margin(bottoms[q]));
            targets[2 * q + 1] = (tops[q], true, margin(tops[q]));
            selectors.push(Selector::new(l.quantile_samples, global[node], 10 + 2 * q as u64));
            selectors.push(Selector::new(l.quantile_samples, global[node], 11 + 2 * q as u64));
        }
        p2.push(Pass2::new(a.min, a.max, opts.hist_bins, targets, selectors));
        extremes.push((a.top.into_sorted(), a.bottom.into_sorted()));
        debug_assert_eq!(node + 1, extremes.len());
    }

    run_pass(&passes, &mut p2, 2, progress)?;

    data.hist.reserve(n_nodes * opts.hist_bins);
    let slots = |v: Vec<Candidate>, k: usize, out: &mut Vec<ExemplarRec>| {
        let got = v.len();
        out.extend(v.into_iter().map(ExemplarRec::from));
        out.extend((got..k).map(|_| ExemplarRec::default()));
    };
    for (a, (top, bottom)) in p2.into_iter().zip(extremes) {
        data.hist.extend(&a.hist);
        slots(top, l.top_k, &mut data.exemplars);
        slots(bottom, l.bottom_k, &mut data.exemplars);
        for sel in a.selectors {
            slots(sel.into_sorted(), l.quantile_samples, &mut data.exemplars);
        }
    }
    Ok(data)
}
