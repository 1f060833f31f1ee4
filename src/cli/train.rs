//! `circuitscope train`: train a weight-sparse (or dense) GPT from a preset.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::{parse_density, print_json};
use crate::analysis::bridge::BridgeCoefficients;
use crate::train::{train_with_progress, TrainConfig, TrainEvent};

/// Arguments of `circuitscope train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// tiny (the bundled sparse model), tiny-dense (its dense baseline), tiny-attn-only (2 dense attention-only
    /// layers, the framework paper's toy model), realcode / realcode-dense (the same on
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
    /// Override the random seed.
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
    /// Bridged training: couple the sparse model to this frozen dense model through encoders and decoders at
    /// every residual site (docs/bridges.md). The sparse model takes the dense model's tokenizer and vocabulary;
    /// the layer counts must agree.
    #[arg(long, value_name = "DENSE_MODEL_DIR")]
    pub bridge_to: Option<PathBuf>,
    /// Bridged: weight of the sparse model's cross-entropy.
    #[arg(long, default_value_t = 1.0, requires = "bridge_to")]
    pub bridge_ce: f64,
    /// Bridged: weight of KL(dense ‖ sparse) on the next-token distributions.
    #[arg(long, default_value_t = 1.0, requires = "bridge_to")]
    pub bridge_kl: f64,
    /// Bridged: weight of NMSE(encoder(dense activation), sparse activation), mean over sites.
    #[arg(long, default_value_t = 1.0, requires = "bridge_to")]
    pub bridge_nmse_encode: f64,
    /// Bridged: weight of NMSE(decoder(sparse activation), dense activation), mean over sites.
    #[arg(long, default_value_t = 1.0, requires = "bridge_to")]
    pub bridge_nmse_decode: f64,
    /// Bridged: weight of KL(dense ‖ dense up to a site, encoder, sparse onward), mean over sites.
    #[arg(long, default_value_t = 1.0, requires = "bridge_to")]
    pub bridge_kl_dense_to_sparse: f64,
    /// Bridged: weight of KL(dense ‖ sparse up to a site, decoder, dense onward), mean over sites.
    #[arg(long, default_value_t = 1.0, requires = "bridge_to")]
    pub bridge_kl_sparse_to_dense: f64,
    /// Bridged: train the mixed paths at this many sites per step, drawn at random each step (default: every
    /// site; each costs a forward and backward of the rest of a model).
    #[arg(long, requires = "bridge_to", value_name = "N")]
    pub bridge_mixed_sites: Option<usize>,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
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
    if let Some(dense) = &args.bridge_to {
        let coefficients = BridgeCoefficients {
            ce: args.bridge_ce,
            kl: args.bridge_kl,
            nmse_encode: args.bridge_nmse_encode,
            nmse_decode: args.bridge_nmse_decode,
            kl_dense_to_sparse: args.bridge_kl_dense_to_sparse,
            kl_sparse_to_dense: args.bridge_kl_sparse_to_dense,
        };
        for (flag, w) in [
            ("--bridge-ce", coefficients.ce),
            ("--bridge-kl", coefficients.kl),
            ("--bridge-nmse-encode", coefficients.nmse_encode),
            ("--bridge-nmse-decode", coefficients.nmse_decode),
            ("--bridge-kl-dense-to-sparse", coefficients.kl_dense_to_sparse),
            ("--bridge-kl-sparse-to-dense", coefficients.kl_sparse_to_dense),
        ] {
            if !w.is_finite() || w < 0.0 {
                bail!("{flag} {w}: a loss weight must be a finite number >= 0");
            }
        }
        if args.bridge_mixed_sites == Some(0) {
            bail!("--bridge-mixed-sites 0: give at least one site, or weight the mixed paths 0");
        }
        cfg = cfg
            .bridged(dense, coefficients, args.bridge_mixed_sites)
            .with_context(|| format!("--bridge-to {}", dense.display()))?;
    }
    let mut bar = ProgressBar::default();
    let summary = train_with_progress(
        &cfg,
        &args.out,
        args.tokenizer.as_deref(),
        args.resume,
        args.stop_after,
        &mut |event| bar.show(event),
    )?;
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

/// The trainer's progress on stderr: phases as lines, steps as an indicatif bar, evaluations above the bar.
#[derive(Default)]
struct ProgressBar {
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressBar {
    fn show(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::TrainingTokenizer { vocab } => eprintln!("training a {vocab}-token BPE on the corpus ..."),
            TrainEvent::Tokenizing { tokens } => eprintln!("tokenizing the corpus ({tokens} tokens) ..."),
            TrainEvent::Started { start, total, resumed } => {
                if resumed {
                    eprintln!("resuming at step {start}");
                }
                let bar = indicatif::ProgressBar::new(total as u64);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise} eta {eta}]")
                        .expect("valid template"),
                );
                bar.set_position(start as u64);
                self.bar = Some(bar);
            }
            TrainEvent::Step {
                loss,
                kept,
                tokens_per_s,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("loss {loss:.3} L0 {kept:.3} {tokens_per_s:.0} tok/s"));
                    bar.inc(1);
                }
            }
            TrainEvent::Evaluated {
                done,
                loss,
                held_out_loss,
                mean_task_accuracy,
            } => {
                let line = format!(
                    "step {done}: loss {loss:.3}, held-out {held_out_loss:.3}, mean task accuracy {mean_task_accuracy:.3}"
                );
                match &self.bar {
                    // A hidden bar (stderr not a terminal, e.g. under nohup) drops println: say it plainly there.
                    Some(bar) if !bar.is_hidden() => bar.println(line),
                    _ => eprintln!("{line}"),
                }
            }
            TrainEvent::Finished => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }
}
