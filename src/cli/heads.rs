//! `circuitscope heads`: the framework lens on a model's heads: QK/OV circuits through the embeddings, copying
//! score, head detectors on repeated random sequences, sink shares, q·k channel terms, Q/K/V composition
//! against a random baseline, the direct path and the induction loss; `--dump` writes the whole matrices.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use super::common::{load_model, print_json, resolve_tokenizer, token_text};
use crate::analysis::framework::{Composition, Entry};
use crate::analysis::heads::{direct_path_matrix, heads, HeadsOptions, HeadsReport, Scan};
use crate::model::{checkpoint, LoadOptions, Stored};
use crate::tokenize::Tokenizer;

/// Arguments of `circuitscope heads`.
#[derive(clap::Args, Debug)]
pub struct HeadsArgs {
    /// Model directory (config.json + model.safetensors, or beeg_config.json + final_model.pt).
    #[arg(long)]
    pub model: PathBuf,
    /// What loading checks and allows.
    #[command(flatten)]
    pub checks: super::common::LoadChecks,
    /// Process the weights as TransformerLens does first (fold norms, centre writing weights and the
    /// unembedding, fold value biases), each step only where it is exact for this model.
    #[arg(long)]
    pub fold: bool,
    /// The token ids the detectors and the induction loss use, e.g. 5,17,2,5,17,2 (default: repeated random
    /// sequences).
    #[arg(long, value_delimiter = ',')]
    pub repeated_tokens: Option<Vec<u32>>,
    /// Number of repeated random sequences (without --repeated-tokens).
    #[arg(long, default_value_t = 4)]
    pub sequences: usize,
    /// Length of the random half of each sequence (capped at half the context).
    #[arg(long, default_value_t = 50)]
    pub half_len: usize,
    /// Seed of the random sequences and the composition baseline.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Entries per head in the QK/OV tables.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// The most rows of each vocab × vocab circuit multiplied out for its top entries (default: 4,194,304 /
    /// vocab rounded up: every row of a vocabulary up to 2,048 tokens, 84 rows of GPT-2's 50,257). Tables cut
    /// short are marked ≈ and carry a bound on what was left out.
    #[arg(long)]
    pub top_rows: Option<usize>,
    /// Write the whole matrices to this safetensors file (composition_Q/K/V [L,H,L,H], ov_copying_score,
    /// detect_* [L,H], direct_path [vocab,vocab] up to a vocabulary of 8,192 tokens, ...).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// tokenizer.json to use instead of the model directory's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: HeadsArgs) -> Result<()> {
    let model = load_model(&args.model, args.checks.apply(LoadOptions::ALL_DENSE))?;
    let tok = resolve_tokenizer(args.tokenizer.as_deref(), &args.model)?;
    let opts = HeadsOptions {
        fold: args.fold,
        top: args.top,
        repeated_tokens: args.repeated_tokens.clone(),
        sequences: args.sequences,
        half_len: args.half_len,
        seed: args.seed,
        top_rows: args.top_rows,
        ..HeadsOptions::default()
    };
    let report = heads(&model, &opts).with_context(|| format!("heads of {}", args.model.display()))?;
    if let Some(path) = &args.dump {
        dump(path, &report)?;
    }
    if args.json {
        return print_json(&to_json(&report, tok.as_ref(), &args));
    }
    print_text(&report, tok.as_ref(), &args);
    Ok(())
}

fn entries(es: &[Entry], tok: Option<&Tokenizer>, from: &str, to: &str) -> Value {
    Value::Array(
        es.iter()
            .map(|e| {
                json!({
                    from: e.row, to: e.col, "value": e.value,
                    format!("{from}_text"): token_text(tok, e.row as u32),
                    format!("{to}_text"): token_text(tok, e.col as u32),
                })
            })
            .collect(),
    )
}

/// The `n` highest-scoring pairs of each composition kind.
fn top_pairs(c: &Composition, l: usize, h: usize, n: usize) -> Vec<(&'static str, [usize; 4], f32)> {
    let mut out = Vec::new();
    for (kind, scores) in [("Q", &c.q), ("K", &c.k), ("V", &c.v)] {
        let mut idx: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] > 0.0).collect();
        idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        for i in idx.into_iter().take(n) {
            let (la, ha, lb, hb) = (i / (h * l * h), i / (l * h) % h, i / h % l, i % h);
            out.push((kind, [la, ha, lb, hb], scores[i]));
        }
    }
    out
}

fn to_json(r: &HeadsReport, tok: Option<&Tokenizer>, args: &HeadsArgs) -> Value {
    let w = &r.weights;
    let (l, h) = (w.n_layers(), w.n_heads());
    json!({
        "model": args.model.display().to_string(),
        "fold": args.fold,
        "processing": r.processing,
        "n_layers": l,
        "n_heads": h,
        "d_head": w.d_head(),
        "heads": r.heads.iter().map(|s| json!({
            "layer": s.layer,
            "head": s.head,
            "ov_copying_score": s.ov_copying_score,
            "full_ov_copying_score": s.full_ov_copying_score,
            "previous_token": s.previous_token,
            "duplicate_token": s.duplicate_token,
            "induction": s.induction,
            "sink_share": s.sink_share,
            "sink_logit": s.sink_logit,
            "live_channels": s.live_channels,
            "positional": s.positional,
            "ov_top": entries(&s.ov_top, tok, "source", "promoted"),
            "ov_top_scan": s.ov_scan,
            "qk_top": entries(&s.qk_top, tok, "query", "key"),
            "qk_top_scan": s.qk_scan,
            "channel_terms": s.channel_terms,
        })).collect::<Vec<_>>(),
        "composition": {
            "baseline": r.composition.baseline,
            "top": top_pairs(&r.composition, l, h, 10).iter().map(|(k, p, s)| json!({
                "kind": k, "from": [p[0], p[1]], "to": [p[2], p[3]], "score": s,
            })).collect::<Vec<_>>(),
        },
        "direct_path_top": entries(&r.direct_path_top, tok, "current", "next"),
        "direct_path_top_scan": r.direct_path_scan,
        "top_rows": r.top_rows,
        "direct_path_includes_bigram": w.bigram.is_some(),
        "detector_tokens": r.detector_tokens,
        "induction_loss": r.induction_loss,
        "dump": args.dump.as_ref().map(|p| p.display().to_string()),
    })
}

fn print_text(r: &HeadsReport, tok: Option<&Tokenizer>, args: &HeadsArgs) {
    let w = &r.weights;
    let (l, h) = (w.n_layers(), w.n_heads());
    println!(
        "{}: {l} layers x {h} heads of {}{}",
        args.model.display(),
        w.d_head(),
        if args.fold { ", weights processed" } else { "" }
    );
    for s in &r.processing {
        match (&s.note, s.applied) {
            (None, _) => println!("  {}: applied", s.step),
            (Some(n), true) => println!("  {}: applied ({n})", s.step),
            (Some(n), false) => println!("  {}: skipped: {n}", s.step),
        }
    }
    let seqs = r.detector_tokens.len();
    println!(
        "\ndetectors on {seqs} sequence{} of {} tokens; copy = OV copying score, full = through W_E and W_U; \
         pos = most common best key offset of the positional QK circuit (share of queries)",
        if seqs == 1 { "" } else { "s" },
        r.detector_tokens.first().map_or(0, Vec::len)
    );
    println!(
        "  {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>10}  top OV (source→promoted)     top QK (query→key)",
        "head", "copy", "full", "prev", "dup", "induct", "sink", "live", "pos"
    );
    for s in &r.heads {
        let first = |es: &[Entry], scan: &Scan| {
            es.first().map_or("-".to_string(), |e| {
                format!(
                    "{}{:?}→{:?} {:.2}",
                    if scan.exact { "" } else { "≈" },
                    token_text(tok, e.row as u32),
                    token_text(tok, e.col as u32),
                    e.value
                )
            })
        };
        println!(
            "  {:>5} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6} {:>5} {:>10}  {:<28} {}",
            format!("L{}H{}", s.layer, s.head),
            s.ov_copying_score,
            s.full_ov_copying_score,
            s.previous_token,
            s.duplicate_token,
            s.induction,
            s.sink_share.map_or("-".to_string(), |x| format!("{x:.3}")),
            s.live_channels,
            format!("{} ({:.2})", s.positional.offset, s.positional.share),
            first(&s.ov_top, &s.ov_scan),
            first(&s.qk_top, &s.qk_scan),
        );
    }
    let cut: Vec<&Scan> = r
        .heads
        .iter()
        .flat_map(|s| [&s.ov_scan, &s.qk_scan])
        .filter(|c| !c.exact)
        .collect();
    if !cut.is_empty() {
        let bound = cut.iter().filter_map(|c| c.unscanned_bound).fold(0f32, f32::max);
        println!(
            "  ≈: {} of {} tables are the top of the {} rows (of {}) with the largest Cauchy-Schwarz bound, not \
             proven exact; no unscanned entry exceeds its table's bound (largest {bound:.3}); --top-rows scans more",
            cut.len(),
            r.heads.len() * 2,
            r.top_rows,
            w.vocab()
        );
    }
    let b = r.composition.baseline;
    println!(
        "\ncomposition (random baseline {:.4} ± {:.4} over {} draws):",
        b.mean, b.std, b.samples
    );
    for (kind, p, s) in top_pairs(&r.composition, l, h, 3) {
        println!("  {kind}  L{}H{} → L{}H{}  {s:.4}", p[0], p[1], p[2], p[3]);
    }
    let ds = &r.direct_path_scan;
    println!(
        "\ndirect path W_E·W_U{} (current → next){}:",
        if w.bigram.is_some() { " + bigram table" } else { "" },
        match (ds.exact, ds.unscanned_bound) {
            (false, Some(b)) => format!(
                ", ≈ top of the {} of {} rows scanned; no unscanned entry exceeds {b:.3}",
                ds.rows_scanned, ds.rows
            ),
            _ => String::new(),
        }
    );
    for e in &r.direct_path_top {
        println!(
            "  {:?} → {:?}  {:.3}",
            token_text(tok, e.row as u32),
            token_text(tok, e.col as u32),
            e.value
        );
    }
    match r.induction_loss {
        Some(il) => println!(
            "\ninduction loss: first half {:.4}, second half {:.4}",
            il.first_half, il.second_half
        ),
        None => println!("\ninduction loss: the detector sequence is not a half repeated once"),
    }
    if let Some(p) = &args.dump {
        println!("\nwrote {}", p.display());
    }
}

/// The most entries of a dumped direct path (256 MB of f32): GPT-2's 50,257² would be 10 GB, built in memory
/// before it is written.
const MAX_DUMPED_DIRECT_PATH: usize = 1 << 26;

/// Whether the (vocab, vocab) direct path goes into `--dump` (up to a vocabulary of 8,192 tokens).
fn direct_path_fits_a_dump(vocab: usize) -> bool {
    vocab.checked_mul(vocab).is_some_and(|n| n <= MAX_DUMPED_DIRECT_PATH)
}

fn dump(path: &std::path::Path, r: &HeadsReport) -> Result<()> {
    let w = &r.weights;
    let (l, h, v) = (w.n_layers(), w.n_heads(), w.vocab());
    let mut t: BTreeMap<String, Stored> = BTreeMap::new();
    let mut put = |name: &str, data: Vec<f32>, shape: &[usize]| -> Result<()> {
        t.insert(
            name.to_string(),
            Stored::Dense(Tensor::from_vec(data, shape, &Device::Cpu)?),
        );
        Ok(())
    };
    let per_head =
        |f: &dyn Fn(&crate::analysis::heads::HeadSummary) -> f32| r.heads.iter().map(f).collect::<Vec<f32>>();
    put("composition_Q", r.composition.q.clone(), &[l, h, l, h])?;
    put("composition_K", r.composition.k.clone(), &[l, h, l, h])?;
    put("composition_V", r.composition.v.clone(), &[l, h, l, h])?;
    let b = r.composition.baseline;
    put("composition_baseline", vec![b.mean, b.std], &[2])?;
    put("ov_copying_score", per_head(&|s| s.ov_copying_score), &[l, h])?;
    put("full_ov_copying_score", per_head(&|s| s.full_ov_copying_score), &[l, h])?;
    put("detect_previous_token", per_head(&|s| s.previous_token), &[l, h])?;
    put("detect_duplicate_token", per_head(&|s| s.duplicate_token), &[l, h])?;
    put("detect_induction", per_head(&|s| s.induction), &[l, h])?;
    if r.heads.iter().any(|s| s.sink_share.is_some()) {
        put("sink_share", per_head(&|s| s.sink_share.unwrap_or(0.0)), &[l, h])?;
    }
    if direct_path_fits_a_dump(v) {
        put("direct_path", direct_path_matrix(w, false)?.data, &[v, v])?;
        if w.bigram.is_some() {
            put("direct_path_with_bigram", direct_path_matrix(w, true)?.data, &[v, v])?;
        }
    } else {
        eprintln!(
            "note: direct_path left out of the dump: {v} x {v} floats would be {:.1} GB (the limit is {} MB); its top \
             entries are in the report",
            (v * v * 4) as f64 / 1e9,
            (MAX_DUMPED_DIRECT_PATH * 4) >> 20
        );
    }
    let seq_len = r.detector_tokens.first().map_or(0, Vec::len);
    let ids: Vec<f32> = r.detector_tokens.iter().flatten().map(|&x| x as f32).collect();
    put("repeated_tokens", ids, &[r.detector_tokens.len(), seq_len])?;
    let n_loss = r.loss_per_token.len();
    put("repeated_loss_per_token", r.loss_per_token.clone(), &[n_loss])?;
    checkpoint::write_safetensors(path, &t, &[("content".into(), "circuitscope heads dump".into())])
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_path_is_dumped_up_to_8192_tokens() {
        assert!(direct_path_fits_a_dump(1024));
        assert!(direct_path_fits_a_dump(8192));
        assert!(!direct_path_fits_a_dump(8193));
        assert!(!direct_path_fits_a_dump(50_257));
        assert!(!direct_path_fits_a_dump(usize::MAX));
    }
}
