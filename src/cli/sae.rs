//! `circuitscope sae train` and `circuitscope sae eval`: sparse autoencoders on a model's hooks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::{load_model, print_json, resolve_tokenizer, LoadChecks};
use crate::analysis::sae::eval::{evaluate, SaeEval, DENSE_THRESHOLD};
use crate::analysis::sae::source::ModelActivations;
use crate::analysis::sae::train::{check_run_dir, train, SaeTrainConfig, SaeTrainEvent};
use crate::analysis::sae::Sae;
use crate::circuit::file::model_fingerprint;
use crate::data::corpus::CorpusSource;
use crate::data::TokenPool;
use crate::model::{Gpt, HookName, LoadOptions, ModelFiles};
use crate::tokenize::Tokenizer;

/// `circuitscope sae` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum SaeCommand {
    /// Train a TopK SAE on one hook (Gao et al. 2024's recipe), activations streamed from the model.
    Train(TrainArgs),
    /// L0, FVU, cosine, CE loss recovered (zero and mean ablation), KL, dead and dense latents of an SAE.
    Eval(EvalArgs),
}

/// Arguments of `circuitscope sae train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The hook, in our spelling (`1.resid_mid`, `final_resid`) or TransformerLens's (`blocks.1.hook_resid_mid`).
    #[arg(long)]
    pub hook: String,
    /// Number of latents.
    #[arg(long)]
    pub latents: usize,
    /// Latents kept per token.
    #[arg(long)]
    pub k: usize,
    /// Activations to train on in all (steps = tokens / batch).
    #[arg(long, default_value_t = 4_000_000)]
    pub tokens: u64,
    /// `synthetic`, `synthetic:SEED`, `stdlib`, `mix:...`, a folder of text files or a .jsonl file; its train split.
    #[arg(long, default_value = "synthetic")]
    pub corpus: String,
    /// Distinct corpus tokens the windows are drawn from (tokenized once, kept in memory as ids).
    #[arg(long, default_value_t = 1_000_000)]
    pub pool_tokens: usize,
    /// Sequences per step; a step trains on sequences × the model's context activations.
    #[arg(long, default_value_t = 8)]
    pub batch_seqs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    /// Dead latents AuxK uses per token [default: d_in / 2].
    #[arg(long)]
    pub aux_k: Option<usize>,
    /// AuxK's weight in the loss.
    #[arg(long, default_value_t = 1.0 / 32.0)]
    pub aux_coef: f64,
    /// Tokens without firing after which a latent counts as dead.
    #[arg(long, default_value_t = 262_144)]
    pub dead_window: u64,
    /// Seed of the initialisation and of the windows.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// The run's folder: train_config.json, checkpoint/, and at the end sae.json + sae.safetensors.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out from its checkpoint (same options).
    #[arg(long)]
    pub resume: bool,
    /// Stop this invocation after this many steps in all (checkpointed; continue with --resume).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// tokenizer.json to use [default: the one beside the model].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Load-time checks and their opt-outs.
    #[command(flatten)]
    pub checks: LoadChecks,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope sae eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The SAE folder: ours (sae.json + sae.safetensors) or SAELens's (cfg.json + sae_weights.safetensors).
    #[arg(long)]
    pub sae: PathBuf,
    /// The corpus; its held-out split is read.
    #[arg(long, default_value = "synthetic")]
    pub corpus: String,
    /// Tokens to evaluate on (whole context windows).
    #[arg(long, default_value_t = 32_768)]
    pub tokens: usize,
    /// tokenizer.json to use [default: the one beside the model].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Load-time checks and their opt-outs.
    #[command(flatten)]
    pub checks: LoadChecks,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(cmd: SaeCommand) -> Result<()> {
    match cmd {
        SaeCommand::Train(a) => run_train(a),
        SaeCommand::Eval(a) => run_eval(a),
    }
}

/// The model's fingerprint, as circuit files and scans record it.
pub fn fingerprint(dir: &Path, model: &Gpt) -> Result<String> {
    let files = ModelFiles::locate(dir)?;
    let ckpt = files.open_checkpoint(&model.config)?;
    Ok(model_fingerprint(&ckpt, &model.config)?)
}

fn need_tokenizer(explicit: Option<&Path>, model: &Path) -> Result<Tokenizer> {
    match resolve_tokenizer(explicit, model)? {
        Some(t) => Ok(t),
        None => bail!(
            "{}: no tokenizer.json beside the model; pass --tokenizer FILE",
            model.display()
        ),
    }
}

/// A hook of `model` with channels, from either spelling.
pub fn parse_hook(spec: &str, model: &Gpt) -> Result<HookName> {
    let n_layer = model.config.n_layer;
    let hook = HookName::parse_any(spec, n_layer)?;
    if hook.layer().is_some_and(|l| l >= n_layer) {
        bail!("--hook {spec}: the model has layers 0..{}", n_layer);
    }
    if hook.width(&model.config).is_none() {
        bail!("--hook {spec}: attention patterns have no channels to encode");
    }
    Ok(hook)
}

/// Loads an SAE for `model`, checked against its hook widths and fingerprint.
pub fn load_sae(dir: &Path, model_dir: &Path, model: &Gpt) -> Result<Sae> {
    let sae = Sae::load(dir, model.config.n_layer)?;
    let fp = match sae.config.model_fingerprint {
        Some(_) => Some(fingerprint(model_dir, model)?),
        None => None,
    };
    sae.check_model(&model.config, fp.as_deref())
        .with_context(|| format!("{}", dir.display()))?;
    Ok(sae)
}

fn run_train(args: TrainArgs) -> Result<()> {
    let model = load_model(&args.model, args.checks.apply(LoadOptions::default()))?;
    let hook = parse_hook(&args.hook, &model)?;
    let d_in = hook.width(&model.config).expect("checked");
    if args.latents == 0 {
        bail!("--latents must be positive");
    }
    if args.k == 0 || args.k > args.latents {
        bail!("--k {} must be in 1..={} (--latents)", args.k, args.latents);
    }
    if args.batch_seqs == 0 || args.tokens == 0 {
        bail!("--batch-seqs and --tokens must be positive");
    }
    let tok = need_tokenizer(args.tokenizer.as_deref(), &args.model)?;
    let corpus = CorpusSource::parse(&args.corpus)?;
    let seq_len = model.config.block_size;
    let batch_tokens = args.batch_seqs * seq_len;
    let steps = args.tokens.div_ceil(batch_tokens as u64);
    let mut cfg = SaeTrainConfig::new(hook, d_in, args.latents, args.k, steps, batch_tokens);
    cfg.lr = args.lr;
    cfg.aux_k = args.aux_k.unwrap_or(cfg.aux_k);
    cfg.aux_coef = args.aux_coef;
    cfg.dead_window = args.dead_window;
    cfg.seed = args.seed;
    cfg.checkpoint_every = args.checkpoint_every;
    cfg.corpus = corpus.to_string();
    cfg.model_fingerprint = Some(fingerprint(&args.model, &model)?);

    check_run_dir(&cfg, &args.out, args.resume)?;
    eprintln!("tokenizing the corpus ({} tokens) ...", args.pool_tokens);
    let pool = TokenPool::build(corpus.train()?, &tok, args.pool_tokens)?;
    if pool.tokens.len() <= seq_len + 1 {
        bail!(
            "corpus {corpus}: {} tokens in its train split, fewer than one window of {}",
            pool.tokens.len(),
            seq_len + 1
        );
    }
    let mut source = ModelActivations::new(&model, hook, pool, args.batch_seqs, seq_len, args.seed);
    let mut bar: Option<indicatif::ProgressBar> = None;
    let summary = train(
        &cfg,
        &mut source,
        &args.out,
        args.resume,
        args.stop_after,
        &mut |event| match event {
            SaeTrainEvent::Started { start, total } => {
                if start > 0 {
                    eprintln!("resuming at step {start}");
                }
                let b = indicatif::ProgressBar::new(total);
                b.set_style(
                    indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise} eta {eta}]")
                        .expect("valid template"),
                );
                b.set_position(start);
                bar = Some(b);
            }
            SaeTrainEvent::Step {
                done,
                stats,
                tokens_per_s,
            } => {
                if let Some(b) = &bar {
                    b.set_message(format!(
                        "nmse {:.4} dead {:.3} {tokens_per_s:.0} tok/s",
                        stats.nmse, stats.dead_fraction
                    ));
                    b.set_position(done);
                }
            }
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if args.json {
        return print_json(&json!({
            "out": args.out, "hook": hook.to_string(), "d_in": d_in, "n_latents": args.latents, "k": args.k,
            "steps": summary.steps, "total_steps": steps, "finished": summary.finished,
            "batch_tokens": batch_tokens, "seconds": summary.seconds, "tokens_per_s": summary.tokens_per_s,
            "final_nmse": summary.final_nmse, "dead_fraction": summary.dead_fraction,
        }));
    }
    if summary.finished {
        println!(
            "trained a TopK SAE ({} latents, k = {}) on {hook}: {} steps × {batch_tokens} activations, \
             {:.0} tokens/s; normalised MSE {:.4}, dead {:.1}% → {}",
            args.latents,
            args.k,
            summary.steps,
            summary.tokens_per_s,
            summary.final_nmse,
            100.0 * summary.dead_fraction,
            args.out.display()
        );
    } else {
        println!(
            "stopped at step {} of {steps} (checkpointed; continue with --resume): normalised MSE {:.4}",
            summary.steps, summary.final_nmse
        );
    }
    Ok(())
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let model = load_model(&args.model, args.checks.apply(LoadOptions::default()))?;
    let sae = load_sae(&args.sae, &args.model, &model)?;
    let tok = need_tokenizer(args.tokenizer.as_deref(), &args.model)?;
    let corpus = CorpusSource::parse(&args.corpus)?;
    let seq_len = model.config.block_size;
    let want = args.tokens.max(seq_len + 1);
    let pool = TokenPool::build(corpus.held_out()?, &tok, want + want / seq_len + 1)?;
    let windows = (pool.tokens.len() / (seq_len + 1))
        .min(args.tokens.div_ceil(seq_len))
        .max(1);
    let tokens = &pool.tokens[..(windows * (seq_len + 1)).min(pool.tokens.len())];
    let result = evaluate(&sae, &model, tokens, seq_len, 8)?;
    let c = &sae.config;
    if args.json {
        let mut v = json!({
            "sae": args.sae, "hook": c.hook.to_string(), "architecture": c.architecture.to_string(),
            "n_latents": c.n_latents, "k": c.k, "d_in": c.d_in, "corpus": corpus.to_string(),
            "dense_threshold": DENSE_THRESHOLD,
        });
        if let (Some(o), serde_json::Value::Object(m)) = (v.as_object_mut(), json!(result)) {
            o.extend(m);
        }
        return print_json(&v);
    }
    print!("{}", render(&args.sae, &sae, &result, &corpus.to_string()));
    Ok(())
}

/// The text report of `sae eval`.
fn render(dir: &Path, sae: &Sae, r: &SaeEval, corpus: &str) -> String {
    let c = &sae.config;
    let k = c.k.map(|k| format!(", k = {k}")).unwrap_or_default();
    let mut out = format!(
        "{}: {} SAE on {}, {} latents{k}, d_in {}\n{} tokens of {corpus} (held out)\n\n",
        dir.display(),
        c.architecture,
        c.hook,
        c.n_latents,
        c.d_in,
        r.tokens
    );
    let rows = [
        ("L0", format!("{:.2}", r.l0)),
        ("FVU", format!("{:.4}", r.fvu)),
        ("cosine", format!("{:.4}", r.cosine)),
        ("CE clean", format!("{:.4}", r.ce_clean)),
        ("CE with SAE", format!("{:.4}", r.ce_sae)),
        ("CE zero-ablated", format!("{:.4}", r.ce_zero_ablation)),
        ("CE mean-ablated", format!("{:.4}", r.ce_mean_ablation)),
        ("CE recovered (zero)", format!("{:.4}", r.ce_recovered_zero)),
        ("CE recovered (mean)", format!("{:.4}", r.ce_recovered_mean)),
        ("KL(clean ‖ SAE)", format!("{:.4}", r.kl)),
        ("dead latents", format!("{:.2}%", 100.0 * r.dead_fraction)),
        (
            "dense latents",
            format!("{:.2}% (> {DENSE_THRESHOLD} of tokens)", 100.0 * r.dense_fraction),
        ),
    ];
    for (name, value) in rows {
        out.push_str(&format!("  {name:<22} {value}\n"));
    }
    out.push_str("\nfiring density (log10 fraction of tokens), live latents:\n");
    let max = r.density_histogram.iter().map(|b| b.latents).max().unwrap_or(0).max(1);
    for b in &r.density_histogram {
        let bar = "█".repeat((b.latents * 40).div_ceil(max));
        let line = format!("  [{:>5.1}, {:>5.1})  {:>6}  {bar}", b.log10_lo, b.log10_hi, b.latents);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
