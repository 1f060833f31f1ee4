//! `circuitscope eval`: per-task accuracy and contrast loss on the test split, held-out corpus loss, density.
//!
//! Task losses are printed halved, as the workbench, `circuit show` and the reports show them (the reference
//! viewer's scale), and labelled so: one number for "the task loss" wherever it is shown. Files keep the raw
//! two-sided loss.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::{load_model, print_json, resolve_tokenizer};
use crate::analysis::eval;
use crate::circuit::halved;
use crate::data::corpus::CorpusSource;
use crate::data::tasks::{self, Task};
use crate::data::TokenPool;
use crate::model::{LoadOptions, ModelFiles, Stored};

/// Test pairs per task of the committed eval.md files.
pub const EVAL_PAIRS: usize = 200;
/// The held-out corpus of the committed eval.md files.
pub const EVAL_CORPUS: &str = "synthetic";

/// Arguments of `circuitscope eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Load-time checks and their opt-outs.
    #[command(flatten)]
    pub checks: super::common::LoadChecks,
    /// `all` or a comma-separated list of task names and `.jsonl` task files.
    #[arg(long, default_value = "all")]
    pub tasks: String,
    /// Test pairs per task.
    #[arg(long, default_value_t = EVAL_PAIRS)]
    pub pairs: usize,
    /// Corpus for the held-out loss (its held-out split).
    #[arg(long, default_value = EVAL_CORPUS)]
    pub corpus: String,
    /// tokenizer.json to use [default: the one beside the model].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Real code whose held-out files give the wild split (`stdlib`, `dir:PATH`, a mix); `none` skips it. When
    /// the default `stdlib` cannot be found (no python3), the wild split is skipped with a note.
    #[arg(long, default_value = tasks::WILD_CORPUS)]
    pub wild: String,
    /// Also write the table as markdown to this file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: EvalArgs) -> Result<()> {
    let model = load_model(&args.model, args.checks.apply(LoadOptions::default()))?;
    let Some(tok) = resolve_tokenizer(args.tokenizer.as_deref(), &args.model)? else {
        bail!(
            "{}: no tokenizer.json beside the model; pass --tokenizer FILE",
            args.model.display()
        );
    };
    let selected: Vec<Box<dyn Task>> = if args.tasks == "all" {
        tasks::registry()
    } else {
        args.tasks
            .split(',')
            .map(|n| tasks::resolve(n.trim()).map_err(anyhow::Error::from))
            .collect::<Result<_>>()?
    };
    let (selected, skipped) = skip_multi_token_tasks(selected, &tok, model.config.vocab_size);
    for (name, reason) in &skipped {
        eprintln!("note: task {name} skipped: {reason}");
    }
    warn_truncated_prompts(&selected, &tok, model.config.block_size, args.pairs);
    let scores = eval::score_tasks(&model, &tok, &selected, args.pairs)?;
    let corpus = CorpusSource::parse(&args.corpus)?;
    let block = model.config.block_size;
    let held = TokenPool::build(corpus.held_out()?, &tok, 64 * (block + 1))?;
    let corpus_loss = eval::corpus_loss(&model, &held.tokens, block, 64)?;
    let density = weight_density(&args.model)?;
    let wild = match args.wild.as_str() {
        "none" => None,
        spec => match CorpusSource::parse(spec) {
            Ok(c) => Some(eval::score_wild(&model, &tok, &selected, args.pairs, &c)?),
            Err(e) if spec == tasks::WILD_CORPUS => {
                eprintln!("note: no wild split ({e})");
                None
            }
            Err(e) => return Err(e).with_context(|| format!("--wild {spec}")),
        },
    };

    if args.json {
        let tasks_json: serde_json::Map<String, serde_json::Value> = scores
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    json!({"accuracy": s.accuracy, "loss": halved(s.loss), "pairs": s.pairs}),
                )
            })
            .collect();
        let skipped_json: Vec<serde_json::Value> = skipped
            .iter()
            .map(|(task, reason)| json!({"task": task, "reason": reason}))
            .collect();
        let mut v =
            json!({"tasks": tasks_json, "corpus_loss": corpus_loss, "density": density, "skipped": skipped_json});
        if let Some(w) = &wild {
            let wild_json: serde_json::Map<String, serde_json::Value> = w
                .iter()
                .map(|(n, s)| {
                    let v = s.as_ref().map_or(
                        serde_json::Value::Null,
                        |s| json!({"accuracy": s.accuracy, "loss": halved(s.loss), "pairs": s.pairs}),
                    );
                    (n.clone(), v)
                })
                .collect();
            v["wild"] = json!({"corpus": args.wild, "tasks": wild_json});
        }
        return print_json(&v);
    }
    let table = match &wild {
        Some(w) => markdown_table_with_wild(&scores, w, &args.wild, corpus_loss, density, args.pairs),
        None => markdown_table(&scores, corpus_loss, density, args.pairs),
    };
    print!("{table}");
    for (name, reason) in &skipped {
        println!("skipped {name}: {reason}");
    }
    if let Some(p) = &args.markdown {
        crate::fsio::Output::from_path(p)
            .write(table.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// A task's name and why it was not scored.
type SkippedTask = (String, String);

/// Splits off the built-in tasks that a model's tokenizer cannot score: every target and alt must be one token
/// inside the model's vocabulary (a GPT-2's tokenizer makes `]]\n` three). They are returned with the reason;
/// a task file given by the user is kept, so that its bad target is an error naming the file.
pub fn skip_multi_token_tasks(
    tasks: Vec<Box<dyn Task>>,
    tok: &crate::tokenize::Tokenizer,
    vocab: usize,
) -> (Vec<Box<dyn Task>>, Vec<SkippedTask>) {
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for t in tasks {
        let reason = if t.finite_len().is_some() {
            None
        } else {
            t.targets().into_iter().find_map(|target| match tok.encode(&target) {
                Ok(ids) if ids.len() == 1 && (ids[0] as usize) < vocab => None,
                Ok(ids) if ids.len() == 1 => Some(format!(
                    "target {target:?} is token {}, outside the model's vocabulary ({vocab})",
                    ids[0]
                )),
                Ok(ids) => Some(format!(
                    "target {target:?} is {} tokens with this tokenizer, not one",
                    ids.len()
                )),
                Err(e) => Some(format!("target {target:?} cannot be tokenized: {e}")),
            })
        };
        match reason {
            Some(r) => skipped.push((t.name().to_string(), r)),
            None => kept.push(t),
        }
    }
    (kept, skipped)
}

/// Scoring left-truncates prompts to the context, as the reference does; a user's file with longer prompts is
/// told so instead of being scored on text it did not write.
fn warn_truncated_prompts(tasks: &[Box<dyn Task>], tok: &crate::tokenize::Tokenizer, block: usize, pairs: usize) {
    for t in tasks {
        let Some(len) = t.finite_len() else { continue };
        let long = (0..len.min(pairs) as u64)
            .map(|i| t.pair(0, i))
            .filter(|p| {
                [&p.prompt, &p.prompt_alt]
                    .iter()
                    .any(|s| tok.encode(s).is_ok_and(|ids| ids.len() > block))
            })
            .count();
        if long > 0 {
            eprintln!(
                "warning: task {}: {long} prompt(s) longer than the context ({block} tokens) are scored left-truncated",
                t.name()
            );
        }
    }
}

/// What the tables' loss columns hold, said under them.
const HALVED_NOTE: &str = "Contrast loss halved (the two-sided loss of spec D.2 divided by 2, the scale the \
                           workbench, `circuit show` and the reports use; circuit files store it raw).";

/// The eval table as GitHub markdown.
pub fn markdown_table(scores: &[(String, eval::TaskScore)], corpus_loss: f64, density: f64, pairs: usize) -> String {
    let mut s = "| task | accuracy | contrast loss (halved) |\n|---|---|---|\n".to_string();
    for (name, sc) in scores {
        s.push_str(&format!("| {name} | {:.3} | {:.4} |\n", sc.accuracy, halved(sc.loss)));
    }
    let solved = scores.iter().filter(|(_, s)| s.accuracy >= 0.9).count();
    s.push_str(&format!(
        "\n{solved} of {} tasks at ≥ 90% accuracy ({pairs} test pairs each). {HALVED_NOTE} Held-out corpus loss \
         {corpus_loss:.4} nats/token. Weight density {density:.4}.\n",
        scores.len()
    ));
    s
}

/// The eval table with the wild split beside the generator's test split: `-` where a task has no wild pairs.
pub fn markdown_table_with_wild(
    scores: &[(String, eval::TaskScore)],
    wild: &[(String, Option<eval::TaskScore>)],
    wild_corpus: &str,
    corpus_loss: f64,
    density: f64,
    pairs: usize,
) -> String {
    let mut s =
        "| task | accuracy | contrast loss (halved) | wild accuracy | wild loss (halved) | wild pairs |\n|---|---|---|---|---|---|\n"
            .to_string();
    for (name, sc) in scores {
        let w = wild.iter().find(|(n, _)| n == name).and_then(|(_, w)| w.as_ref());
        let (wa, wl, wp) = match w {
            Some(w) => (
                format!("{:.3}", w.accuracy),
                format!("{:.4}", halved(w.loss)),
                w.pairs.to_string(),
            ),
            None => ("-".into(), "-".into(), "0".into()),
        };
        s.push_str(&format!(
            "| {name} | {:.3} | {:.4} | {wa} | {wl} | {wp} |\n",
            sc.accuracy,
            halved(sc.loss)
        ));
    }
    let solved = scores.iter().filter(|(_, s)| s.accuracy >= 0.9).count();
    let with_wild: Vec<&eval::TaskScore> = wild.iter().filter_map(|(_, w)| w.as_ref()).collect();
    let wild_solved = with_wild.iter().filter(|w| w.accuracy >= 0.9).count();
    s.push_str(&format!(
        "\n{solved} of {} tasks at ≥ 90% accuracy ({pairs} test pairs each); wild split ({wild_corpus}, held-out \
         files, up to {pairs} pairs each): {wild_solved} of {} tasks with wild pairs at ≥ 90%. {HALVED_NOTE} Held-out corpus loss \
         {corpus_loss:.4} nats/token. Weight density {density:.4}.\n",
        scores.len(),
        with_wild.len()
    ));
    s
}

/// Fraction of nonzeros over the matrices and biases the trainer keeps sparse.
pub fn weight_density(model_dir: &std::path::Path) -> Result<f64> {
    let files = ModelFiles::locate(model_dir)?;
    let ckpt = files.open_checkpoint(&files.load_config()?.config)?;
    let (mut nz, mut n) = (0f64, 0f64);
    for (name, t) in &ckpt.tensors {
        if !crate::train::params::is_sparse_param(name) {
            continue;
        }
        let count = t.shape().iter().product::<usize>() as f64;
        let d = match t {
            Stored::Csr(w) => w.density(),
            Stored::Dense(_) => t.density()?,
        };
        nz += d * count;
        n += count;
    }
    Ok(if n > 0.0 { nz / n } else { 1.0 })
}
