//! `circuitscope train`: train a weight-sparse (or dense) GPT from a preset.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use super::common::{parse_density, print_json};
use crate::train::{train, TrainConfig};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// tiny (the bundled sparse model), tiny-dense (its dense baseline), realcode / realcode-dense (the same on
    /// the stdlib + synthetic mix with a 2,048-token BPE), or test (seconds, for checks).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Output directory: model, tokenizer, train_config.json, log.jsonl, checkpoint/.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop this invocation after this many steps in total (checkpointed; continue with --resume).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Override the number of steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Override the target weight density (e.g. 1/8; 1 = dense).
    #[arg(long, value_parser = parse_density)]
    pub density: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the corpus (`synthetic`, `synthetic:SEED`, a directory of text files, or a .jsonl file).
    #[arg(long)]
    pub corpus: Option<String>,
    /// Use this tokenizer.json instead of training one on the corpus.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Override the peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut cfg = TrainConfig::preset(&args.preset)?;
    if let Some(s) = args.steps {
        cfg.steps = s;
    }
    if let Some(d) = args.density {
        cfg.density = d;
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(c) = &args.corpus {
        cfg.corpus = c.clone();
    }
    if let Some(lr) = args.lr {
        cfg.lr = lr;
    }
    let summary = train(&cfg, &args.out, args.tokenizer.as_deref(), args.resume, args.stop_after)?;
    if args.json {
        return print_json(&json!(summary));
    }
    println!(
        "trained {} steps in {:.0} s: final loss {:.3}, weight density {:.4}{}; model in {}",
        summary.steps,
        summary.seconds,
        summary.final_loss,
        summary.density,
        summary
            .best_accuracy
            .map(|a| format!(", best mean task accuracy {a:.3}"))
            .unwrap_or_default(),
        args.out.display()
    );
    Ok(())
}
