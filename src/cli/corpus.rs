//! `circuitscope corpus sample` and `circuitscope corpus stats`: look at what a model trains on.
//!
//! Wiring in `src/main.rs`:
//!
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Show corpus documents and composition statistics.
//!     #[command(subcommand)]
//!     Corpus(circuitscope::cli::corpus::CorpusCommand),
//!     // ...
//! }
//! // in main():
//! Command::Corpus(c) => circuitscope::cli::corpus::run(c),
//! ```

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::data::corpus::{realcode, CorpusSource, CorpusStats, SyntheticCorpus, CONSTRUCTS};
use crate::tokenize::Tokenizer;

/// `circuitscope corpus ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CorpusCommand {
    /// Print documents of a corpus.
    Sample(CorpusSampleArgs),
    /// Count characters, lines and key constructs (list statements, `set()`/`""` accumulators, `with open`,
    /// lambdas, f-strings, ...) of a corpus's first documents.
    Stats(CorpusStatsArgs),
}

/// Arguments of `circuitscope corpus sample`.
#[derive(Debug, Clone, clap::Args)]
pub struct CorpusSampleArgs {
    /// `synthetic`, `synthetic:SEED`, a directory of text files, or a .jsonl file with a "text" field per line.
    #[arg(long, default_value = "synthetic")]
    pub corpus: String,
    /// Number of documents.
    #[arg(short = 'n', long = "num", default_value_t = 3)]
    pub n: usize,
    /// Synthetic corpora: the generator seed (overrides `synthetic:SEED`). File corpora: pick documents at random
    /// with this seed instead of taking the first ones.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Index of the first document (synthetic corpora; for file corpora, documents to skip first).
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Print `{"documents": [...]}`.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope corpus stats`.
#[derive(Debug, Clone, clap::Args)]
pub struct CorpusStatsArgs {
    /// `synthetic[:SEED]`, `stdlib[:SEED]`, `dir:PATH` (cleaned .py files), `mix:stdlib=0.7,synthetic=0.3`, a
    /// directory of text files, or a .jsonl file with a "text" field per line.
    #[arg(long, default_value = "synthetic")]
    pub corpus: String,
    /// Number of documents to count (file corpora: at most this many).
    #[arg(long, default_value_t = 1000)]
    pub docs: usize,
    /// Also count tokens with this tokenizer.json (tokens per document, ids never used).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `circuitscope corpus ...` subcommand.
pub fn run(cmd: CorpusCommand) -> Result<()> {
    match cmd {
        CorpusCommand::Sample(a) => run_sample(a),
        CorpusCommand::Stats(a) => run_stats(a),
    }
}

fn parse_source(spec: &str) -> Result<CorpusSource> {
    CorpusSource::parse(spec).with_context(|| format!("--corpus {spec}"))
}

/// The documents `corpus sample` prints.
pub fn sample_documents(args: &CorpusSampleArgs) -> Result<Vec<String>> {
    let source = parse_source(&args.corpus)?;
    if let CorpusSource::Synthetic { seed } = source {
        let corpus = SyntheticCorpus::new(args.seed.unwrap_or(seed));
        return Ok(corpus.documents(args.start..args.start + args.n as u64).collect());
    }
    let docs = source.documents()?.skip(args.start as usize);
    match args.seed {
        None => Ok(docs.take(args.n).collect()),
        Some(seed) => Ok(reservoir_sample(docs, args.n, seed)),
    }
}

/// `n` documents chosen uniformly (reservoir sampling), kept in corpus order.
fn reservoir_sample(docs: impl Iterator<Item = String>, n: usize, seed: u64) -> Vec<String> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kept: Vec<(usize, String)> = Vec::with_capacity(n);
    for (i, d) in docs.enumerate() {
        if kept.len() < n {
            kept.push((i, d));
        } else {
            let j = rng.random_range(0..=i);
            if j < n {
                kept[j] = (i, d);
            }
        }
    }
    kept.sort_by_key(|(i, _)| *i);
    kept.into_iter().map(|(_, d)| d).collect()
}

/// `circuitscope corpus sample [--corpus SPEC] [-n N] [--seed S] [--start I] [--json]`.
pub fn run_sample(args: CorpusSampleArgs) -> Result<()> {
    let docs = sample_documents(&args)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = serde_json::json!({ "documents": docs });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for (i, d) in docs.iter().enumerate() {
            writeln!(
                out,
                "# ===== document {} ({} chars) =====",
                args.start + i as u64,
                d.chars().count()
            )?;
            out.write_all(d.as_bytes())?;
            if !d.ends_with('\n') {
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Token counts of a corpus under a tokenizer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenStats {
    /// The tokenizer file.
    pub tokenizer: PathBuf,
    /// Its vocabulary size.
    pub vocab_size: usize,
    /// Tokens in the counted documents.
    pub tokens: u64,
    /// Characters per token.
    pub chars_per_token: f64,
    /// Ordinary ids (not special) that never occur.
    pub unused_ids: usize,
}

/// One part of a corpus (a mix has several): what of it the counted documents hold.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartStats {
    /// The part's spec.
    pub source: String,
    /// Its weight's share of the mix.
    pub weight: f64,
    /// Documents counted from this part.
    pub documents: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Tokens, when a tokenizer was given.
    pub tokens: Option<u64>,
    /// Real code: the whole tree's cleaning figures (files found, kept, rejected, held-out share).
    pub survey: Option<realcode::Survey>,
}

/// Statistics of the first `docs` documents, and token counts when a tokenizer is given.
pub fn corpus_stats(args: &CorpusStatsArgs) -> Result<(CorpusStats, Option<TokenStats>)> {
    corpus_stats_parts(args).map(|(s, t, _)| (s, t))
}

/// [`corpus_stats`] with the figures of each part of the corpus.
pub fn corpus_stats_parts(args: &CorpusStatsArgs) -> Result<(CorpusStats, Option<TokenStats>, Vec<PartStats>)> {
    let source = parse_source(&args.corpus)?;
    let total_weight: u32 = source.parts().iter().map(|(_, w)| w).sum();
    let mut parts: Vec<PartStats> = source
        .parts()
        .into_iter()
        .map(|(p, w)| {
            let survey = match &p {
                CorpusSource::RealCode { root, .. } => Some(realcode::survey(root)),
                _ => None,
            }
            .transpose()?;
            Ok(PartStats {
                source: p.to_string(),
                weight: w as f64 / total_weight.max(1) as f64,
                documents: 0,
                bytes: 0,
                tokens: args.tokenizer.as_ref().map(|_| 0),
                survey,
            })
        })
        .collect::<Result<_>>()?;
    let tok = args
        .tokenizer
        .as_ref()
        .map(|p| Tokenizer::load(p).map(|t| (p.clone(), t)))
        .transpose()?;
    let mut docs = source.split(crate::data::corpus::Split::All)?;
    let mut labelled = source.split_labelled(crate::data::corpus::Split::All)?;
    let mut stats = CorpusStats::new();
    let mut tokens = 0u64;
    let mut used = vec![false; tok.as_ref().map_or(0, |(_, t)| t.vocab_size())];
    for (part, d) in labelled.by_ref().take(args.docs) {
        stats.add(&d);
        let ps = &mut parts[part];
        ps.documents += 1;
        ps.bytes += d.len() as u64;
        if let Some((_, t)) = &tok {
            let ids = t.encode(&d)?;
            tokens += ids.len() as u64;
            if let Some(n) = &mut ps.tokens {
                *n += ids.len() as u64;
            }
            for id in ids {
                if let Some(u) = used.get_mut(id as usize) {
                    *u = true;
                }
            }
        }
    }
    // The labelled pass does not count skipped files; a short look at the plain split does (cheap for
    // directories, where skipping happens).
    if matches!(source, CorpusSource::Directory(_)) {
        for _ in docs.by_ref().take(args.docs) {}
    }
    if docs.skipped() > 0 {
        eprintln!(
            "note: skipped {} binary or non-UTF-8 files in {}",
            docs.skipped(),
            source
        );
    }
    let token_stats = tok.map(|(path, t)| {
        let specials: Vec<u32> = t.special_tokens().map(|(_, id)| id).collect();
        let unused_ids = (0..t.vocab_size() as u32)
            .filter(|&id| !used[id as usize] && !specials.contains(&id) && t.token_bytes_ref(id).is_some())
            .count();
        TokenStats {
            tokenizer: path,
            vocab_size: t.vocab_size(),
            tokens,
            chars_per_token: if tokens > 0 {
                stats.chars as f64 / tokens as f64
            } else {
                0.0
            },
            unused_ids,
        }
    });
    Ok((stats, token_stats, parts))
}

/// `circuitscope corpus stats [--corpus SPEC] [--docs N] [--tokenizer FILE] [--json]`.
pub fn run_stats(args: CorpusStatsArgs) -> Result<()> {
    let (stats, tokens, parts) = corpus_stats_parts(&args)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&stats)?;
        v["parts"] = serde_json::to_value(&parts)?;
        v["corpus"] = serde_json::Value::String(args.corpus.clone());
        v["list_stmt_share"] = serde_json::json!(share(stats.count("list_stmt"), stats.statement_lines));
        if let Some(t) = &tokens {
            v["tokens"] = serde_json::to_value(t)?;
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let docs = stats.documents.max(1) as f64;
    writeln!(out, "corpus          {}", args.corpus)?;
    writeln!(out, "documents       {}", stats.documents)?;
    writeln!(
        out,
        "chars           {} (mean {:.0}, min {}, max {} per document)",
        stats.chars,
        stats.chars as f64 / docs,
        stats.min_doc_chars,
        stats.max_doc_chars
    )?;
    writeln!(
        out,
        "lines           {} ({} blank, {} comment, {} statement)",
        stats.lines, stats.blank_lines, stats.comment_lines, stats.statement_lines
    )?;
    if let Some(t) = &tokens {
        writeln!(
            out,
            "tokens          {} ({:.2} chars/token, vocab {}, {} ids unused)",
            t.tokens, t.chars_per_token, t.vocab_size, t.unused_ids
        )?;
    }
    write_parts(&mut out, &parts, stats.bytes)?;
    writeln!(
        out,
        "list statements {:.1}% of statement lines",
        100.0 * share(stats.count("list_stmt"), stats.statement_lines)
    )?;
    writeln!(out)?;
    writeln!(out, "{:<16} {:>8} {:>9}  meaning", "construct", "lines", "per doc")?;
    for c in CONSTRUCTS {
        let n = stats.count(c.name);
        writeln!(
            out,
            "{:<16} {:>8} {:>9.2}  {}",
            c.name,
            n,
            n as f64 / docs,
            c.description
        )?;
    }
    out.flush()?;
    Ok(())
}

/// The per-part table (only for mixes and real code, where it says something).
fn write_parts(out: &mut impl Write, parts: &[PartStats], total_bytes: u64) -> Result<()> {
    if parts.len() < 2 && parts.iter().all(|p| p.survey.is_none()) {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<28} {:>7} {:>6} {:>11} {:>7} {:>10}",
        "part", "weight", "docs", "bytes", "share", "tokens"
    )?;
    for p in parts {
        writeln!(
            out,
            "{:<28} {:>7.3} {:>6} {:>11} {:>6.1}% {:>10}",
            p.source,
            p.weight,
            p.documents,
            p.bytes,
            100.0 * share(p.bytes, total_bytes),
            p.tokens.map_or("-".to_owned(), |t| t.to_string())
        )?;
    }
    for p in parts {
        let Some(s) = &p.survey else { continue };
        writeln!(
            out,
            "{}: {} .py files ({} bytes); kept {} ({} bytes after cleaning, {} long docstrings cut); held out {} \
             files ({:.1}% of kept bytes)",
            p.source,
            s.files,
            s.raw_bytes,
            s.kept_files,
            s.kept_bytes,
            s.docstrings_cut,
            s.held_out_files,
            100.0 * share(s.held_out_bytes, s.kept_bytes)
        )?;
        for (reason, (n, bytes)) in &s.rejected {
            writeln!(out, "  dropped {reason}: {n} files ({bytes} bytes)")?;
        }
    }
    writeln!(out)?;
    Ok(())
}

fn share(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
