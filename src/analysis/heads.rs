//! The framework lens on one of our models (`circuitscope heads`): reads the weights through
//! `analysis::framework` (optionally processed as TransformerLens does) and runs the model on repeated random
//! sequences for the head detectors, sink shares, per-channel q·k terms and the induction loss.

use serde::Serialize;

use super::framework::{
    self as fw, channels, circuits, detect, Composition, Entry, FrameworkError, FrameworkInput, FrameworkWeights,
    ProcessStep, ShapeProblem,
};
use crate::model::{Gpt, HookName, HookSite, Hooks};

/// What `heads` computes and on which sequences.
#[derive(Debug, Clone)]
pub struct HeadsOptions {
    /// Apply TransformerLens' weight processing (the exact steps) before reading the weights.
    pub fold: bool,
    /// Entries per head in the QK/OV top-entry tables and the direct path's.
    pub top: usize,
    /// The sequences the detectors run on; None draws `sequences` repeated random ones.
    pub repeated_tokens: Option<Vec<u32>>,
    /// Number of repeated random sequences when none are given.
    pub sequences: usize,
    /// Length of the random half of each sequence (capped at half the context).
    pub half_len: usize,
    /// Seed of the random sequences and of the composition baseline.
    pub seed: u64,
    /// Random draws behind the composition baseline.
    pub baseline_samples: usize,
    /// Channel-pair terms kept per head.
    pub channel_terms: usize,
    /// The most rows of each vocab × vocab circuit (full OV, full QK, direct path) multiplied out when looking for
    /// its top entries; None: [`auto_top_rows`] of the model's vocabulary.
    pub top_rows: Option<usize>,
}

/// Entries per circuit the default row budget allows: 2048 × 2048, so that every model with a vocabulary of up to
/// 2,048 tokens is scanned completely, and a 50,257-token GPT-2 scans 84 rows per circuit.
pub const AUTO_SCAN_ENTRIES: usize = 2048 * 2048;

/// The default row budget for a vocabulary of `vocab` tokens: `AUTO_SCAN_ENTRIES / vocab` rows, rounded up.
pub fn auto_top_rows(vocab: usize) -> usize {
    AUTO_SCAN_ENTRIES.div_ceil(vocab.max(1))
}

impl Default for HeadsOptions {
    fn default() -> Self {
        HeadsOptions {
            fold: false,
            top: 5,
            repeated_tokens: None,
            sequences: 4,
            half_len: 50,
            seed: 0,
            baseline_samples: 200,
            channel_terms: 5,
            top_rows: None,
        }
    }
}

/// One head's summaries.
#[derive(Debug, Clone, Serialize)]
pub struct HeadSummary {
    /// Layer index.
    pub layer: usize,
    /// Head index within the layer.
    pub head: usize,
    /// Largest entries of the full OV circuit W_E·W_V·W_O·W_U (row: source token, col: promoted token).
    pub ov_top: Vec<Entry>,
    /// How far the OV scan went: whether `ov_top` is exact, else the rows scanned and the bound on the rest.
    pub ov_scan: Scan,
    /// Largest entries of the full QK circuit W_E·W_Q·W_Kᵀ·W_Eᵀ (row: query token, col: key token).
    pub qk_top: Vec<Entry>,
    /// How far the QK scan went.
    pub qk_scan: Scan,
    /// Where the positional QK circuit puts each query's best visible key.
    pub positional: circuits::PositionalPreference,
    /// Σ Re λ / Σ |λ| over the eigenvalues of W_V·W_O (NaN for a zero OV matrix).
    pub ov_copying_score: f32,
    /// The same over the full OV circuit through W_E and W_U.
    pub full_ov_copying_score: f32,
    /// Previous-token detector score.
    pub previous_token: f32,
    /// Duplicate-token detector score.
    pub duplicate_token: f32,
    /// Induction detector score.
    pub induction: f32,
    /// Mean attention weight the sink slot takes (models with sinks).
    pub sink_share: Option<f32>,
    /// The head's learned sink logit (models with sinks).
    pub sink_logit: Option<f32>,
    /// Channels whose q and k weights are both nonzero (the pairs that can score).
    pub live_channels: usize,
    /// The q·k channel pairs that carry the most score on the detector sequences.
    pub channel_terms: Vec<channels::ChannelTerm>,
}

/// Whether a top-entry table is exact, and when not, how much of its matrix was scanned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scan {
    /// True when the table holds the matrix's largest entries (all rows scanned, or the Cauchy-Schwarz bound
    /// proved the unscanned rows cannot enter).
    pub exact: bool,
    /// Rows multiplied out.
    pub rows_scanned: usize,
    /// Rows of the matrix.
    pub rows: usize,
    /// When not exact: no entry of an unscanned row exceeds this.
    pub unscanned_bound: Option<f32>,
}

/// A bounded scan's entries and its [`Scan`].
fn split(t: fw::TopEntries) -> (Vec<Entry>, Scan) {
    let scan = Scan {
        exact: t.exact,
        rows_scanned: t.rows_scanned,
        rows: t.rows,
        unscanned_bound: t.unscanned_bound,
    };
    (t.entries, scan)
}

/// The mean loss on the two halves of the repeated sequences.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InductionLoss {
    /// Mean next-token loss over the first half (nothing to copy yet).
    pub first_half: f32,
    /// Mean next-token loss over the second half (an induction head can copy from the first).
    pub second_half: f32,
}

/// Everything `heads` reports.
#[derive(Debug, Clone)]
pub struct HeadsReport {
    /// The processing steps (empty without `fold`).
    pub processing: Vec<ProcessStep>,
    /// The weights the analyses read (processed when asked).
    pub weights: FrameworkWeights,
    /// Per head, layer-major.
    pub heads: Vec<HeadSummary>,
    /// Q/K/V composition `[L, H, L, H]` and the random baseline.
    pub composition: Composition,
    /// Largest entries of the direct path W_E·W_U (plus the bigram table where the model has one).
    pub direct_path_top: Vec<Entry>,
    /// How far the direct path's scan went (always exact with a bigram table: that path is dense).
    pub direct_path_scan: Scan,
    /// The row budget each circuit's scan ran under.
    pub top_rows: usize,
    /// The sequences the detectors ran on.
    pub detector_tokens: Vec<Vec<u32>>,
    /// Next-token loss per position of the first sequence.
    pub loss_per_token: Vec<f32>,
    /// The induction loss averaged over the sequences that are a half repeated once.
    pub induction_loss: Option<InductionLoss>,
}

/// The direct path as a dense (vocab, vocab) matrix: W_E·W_U, plus the bigram table when present.
pub fn direct_path_matrix(w: &FrameworkWeights, with_bigram: bool) -> Result<fw::Mat, FrameworkError> {
    let mut m = fw::direct_path(w)?.materialise()?;
    if let (true, Some(b)) = (with_bigram, &w.bigram) {
        m.data.iter_mut().zip(&b.data).for_each(|(x, y)| *x += y);
    }
    Ok(m)
}

/// Per-layer recordings of one detector sequence: patterns (H, T, T), queries and keys (T, A), and the logits.
struct SequenceRun {
    patterns: Vec<Vec<f32>>,
    q: Vec<Vec<f32>>,
    k: Vec<Vec<f32>>,
    logits: Vec<f32>,
}

fn run_sequence(model: &Gpt, ids: &[u32]) -> Result<SequenceRun, FrameworkError> {
    let mut hooks = Hooks::recording(r"\d+\.attn\.[qk]$")?;
    hooks.set_record_patterns(".*")?;
    let logits: Vec<f32> = model.forward_ids(ids, &mut hooks)?.flatten_all()?.to_vec1()?;
    let get = |l: usize, site: HookSite| -> Result<Vec<f32>, FrameworkError> {
        let name = HookName::block(l, site).to_string();
        let t = hooks
            .recorded
            .get(&name)
            .ok_or_else(|| FrameworkError::Shape(ShapeProblem::NotRecorded { hook: name.clone() }))?;
        Ok(t.flatten_all()?.to_vec1()?)
    };
    let n = model.config.n_layer;
    Ok(SequenceRun {
        patterns: (0..n)
            .map(|l| get(l, HookSite::AttnPattern))
            .collect::<Result<_, _>>()?,
        q: (0..n).map(|l| get(l, HookSite::AttnQ)).collect::<Result<_, _>>()?,
        k: (0..n).map(|l| get(l, HookSite::AttnK)).collect::<Result<_, _>>()?,
        logits,
    })
}

/// The framework lens on `model`.
pub fn heads(model: &Gpt, opts: &HeadsOptions) -> Result<HeadsReport, FrameworkError> {
    let cfg = &model.config;
    let mut w = fw::from_gpt(model)?;
    let processing = if opts.fold { fw::process(&mut w) } else { Vec::new() };
    let (l_n, h_n, dh) = (w.n_layers(), w.n_heads(), w.d_head());

    let sequences: Vec<Vec<u32>> = match &opts.repeated_tokens {
        Some(ids) => {
            model.check_tokens(ids)?;
            if ids.len() < 2 {
                return Err(FrameworkInput::RepeatedTokens.into());
            }
            vec![ids.clone()]
        }
        None => {
            let half = opts.half_len.min(cfg.block_size / 2).max(1);
            (0..opts.sequences.max(1))
                .map(|s| detect::repeated_random_tokens(cfg.vocab_size, half, opts.seed.wrapping_add(s as u64)))
                .collect()
        }
    };
    let runs = sequences
        .iter()
        .map(|ids| run_sequence(model, ids))
        .collect::<Result<Vec<_>, _>>()?;

    let ov_copy = fw::ov_copying_scores(&w)?;
    let full_copy = circuits::full_ov_copying_scores(&w)?;
    let top_rows = opts.top_rows.unwrap_or_else(|| auto_top_rows(w.vocab()));
    let emb = circuits::Embeddings::new(&w)?;
    let mut heads = Vec::with_capacity(l_n * h_n);
    for l in 0..l_n {
        let circuits_of_layer = circuits::layer_circuits(&w, &emb, l)?;
        for (h, hc) in circuits_of_layer.iter().enumerate() {
            let mut det = [0f32; 3];
            let mut sink = 0f64;
            let mut terms: Vec<channels::ChannelTerm> = Vec::new();
            for (ids, run) in sequences.iter().zip(&runs) {
                let t = ids.len();
                let pat = &run.patterns[l][h * t * t..(h + 1) * t * t];
                for (slot, d) in det.iter_mut().zip(detect::Detector::ALL) {
                    *slot += detect::score(pat, &d.pattern(ids)) / sequences.len() as f32;
                }
                sink += (0..t)
                    .map(|i| (1.0 - pat[i * t..=i * t + i].iter().map(|&p| p as f64).sum::<f64>()).max(0.0))
                    .sum::<f64>()
                    / t as f64
                    / sequences.len() as f64;
                if terms.is_empty() {
                    // The first sequence's terms: channel identities matter, not an average over prompts.
                    terms = channels::channel_terms(&run.q[l], &run.k[l], pat, t, h, dh);
                    terms.truncate(opts.channel_terms);
                }
            }
            let sink_logit = w.layers[l].sink_logit.as_ref().map(|s| s[h]);
            let (ov_top, ov_scan) = split(hc.ov.top_entries_within(opts.top, false, top_rows)?);
            let (qk_top, qk_scan) = split(hc.qk.top_entries_within(opts.top, false, top_rows)?);
            heads.push(HeadSummary {
                layer: l,
                head: h,
                ov_top,
                ov_scan,
                qk_top,
                qk_scan,
                positional: circuits::positional_preference(&fw::pos_qk(&w, l, h)?)?,
                ov_copying_score: ov_copy[l * h_n + h],
                full_ov_copying_score: full_copy[l * h_n + h],
                previous_token: det[0],
                duplicate_token: det[1],
                induction: det[2],
                sink_share: sink_logit.map(|_| sink as f32),
                sink_logit,
                live_channels: channels::live_channels(&w.layers[l].heads[h]).len(),
                channel_terms: terms,
            });
        }
    }
    let composition = fw::composition(&w, opts.baseline_samples, opts.seed)?;
    drop(emb);
    let (direct_path_top, direct_path_scan) = if w.bigram.is_some() {
        let all = Scan {
            exact: true,
            rows_scanned: w.vocab(),
            rows: w.vocab(),
            unscanned_bound: None,
        };
        (
            fw::factored::top_of_dense(&direct_path_matrix(&w, true)?, opts.top, false),
            all,
        )
    } else {
        split(fw::direct_path(&w)?.top_entries_within(opts.top, false, top_rows)?)
    };
    let v = cfg.vocab_size;
    let losses: Vec<Vec<f32>> = sequences
        .iter()
        .zip(&runs)
        .map(|(ids, run)| detect::loss_per_token(&run.logits, v, ids))
        .collect();
    let halves: Vec<(f32, f32)> = losses
        .iter()
        .zip(&sequences)
        .filter_map(|(l, ids)| detect::induction_loss(l, ids))
        .collect();
    let induction_loss = (!halves.is_empty()).then(|| InductionLoss {
        first_half: halves.iter().map(|h| h.0).sum::<f32>() / halves.len() as f32,
        second_half: halves.iter().map(|h| h.1).sum::<f32>() / halves.len() as f32,
    });
    Ok(HeadsReport {
        processing,
        weights: w,
        heads,
        composition,
        direct_path_top,
        direct_path_scan,
        top_rows,
        detector_tokens: sequences,
        loss_per_token: losses.into_iter().next().unwrap_or_default(),
        induction_loss,
    })
}
