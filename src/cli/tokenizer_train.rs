//! `circuitscope tokenizer train`: train a byte-level BPE on a corpus.
//!
//! Wiring: add a variant to `TokenizerCommand` in `src/cli/tokenize.rs`:
//!
//! ```ignore
//! /// Train a byte-level BPE tokenizer on a corpus (synthetic Python by default).
//! Train(crate::cli::tokenizer_train::TokenizerTrainArgs),
//! // and in run_tokenizer():
//! TokenizerCommand::Train(args) => crate::cli::tokenizer_train::run(args),
//! ```
//!
//! This gives `circuitscope tokenizer train [--corpus SPEC] [--docs N] [--vocab 1024] [--require-file FILE]
//! -o tokenizer.json [--force] [--json]`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::data::corpus::CorpusSource;
use crate::tokenize::escape_token;
use crate::tokenize::train::{train_bpe_report, TrainedBpe, DEFAULT_VOCAB_SIZE};

/// Arguments of `circuitscope tokenizer train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenizerTrainArgs {
    /// `synthetic`, `synthetic:SEED`, a directory of text files, or a .jsonl file with a "text" field per line.
    /// Training uses the corpus's training split (never its held-out documents).
    #[arg(long, default_value = "synthetic")]
    pub corpus: String,
    /// Number of documents to train on (file corpora: at most this many).
    #[arg(long, default_value_t = 4000)]
    pub docs: usize,
    /// Vocabulary size, `<|endoftext|>` (the last id) included.
    #[arg(long, default_value_t = DEFAULT_VOCAB_SIZE)]
    pub vocab: usize,
    /// A JSON array of strings that must each be a single token (e.g. `["\")", "]]\n", ".add"]`). Without it,
    /// every target string of the built-in tasks is required (as `circuitscope train` does).
    #[arg(long, value_name = "FILE")]
    pub require_file: Option<PathBuf>,
    /// Where to write the tokenizer.json (`-`: standard output).
    #[arg(short, long, default_value = "tokenizer.json")]
    pub output: PathBuf,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The required strings: from `--require-file` (a JSON array of strings), else every task's target strings,
/// as `circuitscope train` uses them.
pub fn required_strings(args: &TokenizerTrainArgs) -> Result<Vec<String>> {
    match &args.require_file {
        None => Ok(crate::data::tasks::target_strings()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str::<Vec<String>>(&text)
                .with_context(|| format!("{}: expected a JSON array of strings", p.display()))
        }
    }
}

/// Trains as `circuitscope tokenizer train` does, without writing anything.
pub fn train(args: &TokenizerTrainArgs) -> Result<TrainedBpe> {
    let source = CorpusSource::parse(&args.corpus).with_context(|| format!("--corpus {}", args.corpus))?;
    let required = required_strings(args)?;
    let required: Vec<&str> = required.iter().map(String::as_str).collect();
    let bar = indicatif::ProgressBar::new(args.docs as u64);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} documents").expect("valid template"),
    );
    bar.set_message("reading corpus");
    let mut docs = source.train()?;
    let mut collected = Vec::with_capacity(args.docs.min(1 << 20));
    for d in docs.by_ref().take(args.docs) {
        collected.push(d);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if docs.skipped() > 0 {
        eprintln!("note: skipped {} binary or non-UTF-8 files in {source}", docs.skipped());
    }
    if collected.is_empty() {
        bail!("corpus {source} gave no documents");
    }
    let started = Instant::now();
    eprintln!(
        "training BPE (vocab {}) on {} documents of {source} ...",
        args.vocab,
        collected.len()
    );
    let trained = train_bpe_report(collected.into_iter(), args.vocab, &required)?;
    eprintln!("trained in {:.1} s", started.elapsed().as_secs_f64());
    Ok(trained)
}

/// `circuitscope tokenizer train ...`.
pub fn run(args: TokenizerTrainArgs) -> Result<()> {
    if args.output.exists() && !args.force {
        bail!(
            "refusing to overwrite {} (pass --force to overwrite)",
            args.output.display()
        );
    }
    let trained = train(&args)?;
    let tok = &trained.tokenizer;
    super::tokenize::save_to(tok, &args.output)?;
    if args.json {
        let required: Vec<serde_json::Value> = trained
            .required_ids
            .iter()
            .map(|(s, id)| serde_json::json!({ "text": s, "id": id }))
            .collect();
        let v = serde_json::json!({
            "output": args.output,
            "corpus": args.corpus,
            "documents": trained.documents,
            "chars": trained.chars,
            "vocab_size": tok.vocab_size(),
            "eot_id": tok.eot_id(),
            "learned_merges": trained.learned_merges,
            "added_required": trained.added_required,
            "added_merges": trained.added_merges,
            "required": required,
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        out.flush()?;
    } else {
        let added: Vec<String> = trained
            .added_required
            .iter()
            .map(|s| format!("\"{}\"", escape_token(s)))
            .collect();
        eprintln!(
            "wrote {} (vocab_size {}, <|endoftext|> = {}, {} learned merges; {} required tokens, {} added: {})",
            args.output.display(),
            tok.vocab_size(),
            tok.eot_id().map_or_else(|| "none".to_owned(), |id| id.to_string()),
            trained.learned_merges,
            trained.required_ids.len(),
            added.len(),
            if added.is_empty() {
                "none".to_owned()
            } else {
                added.join(" ")
            },
        );
    }
    Ok(())
}
