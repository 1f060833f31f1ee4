//! The weight-sparse trainer (spec G, scaled down): AdamW with top-k magnitude sparsity of every matrix after
//! every step (at least `min_per_row` nonzeros per row), the kept fraction annealed from dense to the target,
//! warmup + linear decay scaled by 1/sqrt(kept fraction), gradient-norm clipping, RMSNorm, attention sinks and
//! AbsTopK activation sparsity at the node locations.
//!
//! An output directory holds `train_config.json` (enough to reproduce the run), `tokenizer.json`, `log.jsonl`,
//! `checkpoint/` (the latest full state, for `--resume`) and the exported model (`config.json`,
//! `model.safetensors` with CSR matrices): the checkpoint with the best mean task accuracy seen at evaluations.
//!
//! A bridged run ([`TrainConfig::bridge`]) trains the same sparse model coupled to a frozen dense one through
//! bridges at every residual site ([`crate::analysis::bridge`]): the loss adds the bridge terms to the
//! cross-entropy, the bridges (dense, never sparsified) have their own AdamW on the same schedule and their own
//! gradient clip, the checkpoint holds them and their moments, and the exported folder adds `bridges.safetensors`
//! and `bridge.json`.

pub mod params;
pub mod sparsity;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::analysis::bridge::{self, BridgeError, BridgeInfo, BridgeSpec, Bridges};
use crate::analysis::eval;
use crate::data::corpus::CorpusSource;
use crate::data::tasks;
use crate::data::TokenPool;
use crate::fsio::{DirWriter, Keep};
use crate::model::checkpoint::{write_atomic, write_safetensors};
use crate::model::{Checkpoint, Config, Gpt, Hooks, LoadOptions, ModelFiles, Stored};
use crate::optim::{AdamW, AdamWParams};
use crate::tokenize::Tokenizer;
use params::{is_sparse_param, Params};

/// Why a training run failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Loading, building or running the model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Loading or training the tokenizer failed.
    #[error(transparent)]
    Tokenize(#[from] crate::tokenize::TokenizeError),
    /// The corpus could not be read.
    #[error(transparent)]
    Corpus(#[from] crate::data::corpus::CorpusError),
    /// Evaluating on the tasks failed.
    #[error(transparent)]
    Eval(#[from] eval::EvalError),
    /// Reading or writing a run file (checkpoint, config, log) failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A run file (`train_config.json`, `checkpoint/state.json`) is not the json the trainer writes.
    #[error("{}: {source}", path.display())]
    RunFile {
        /// The file.
        path: PathBuf,
        /// The json parser's message.
        #[source]
        source: serde_json::Error,
    },
    /// The checkpoint's optimiser state does not fit the model.
    #[error("{}: {source}", path.display())]
    OptimState {
        /// The checkpoint's `optim.safetensors`.
        path: PathBuf,
        /// What does not fit.
        #[source]
        source: crate::optim::OptimStateError,
    },
    /// No preset has this name.
    #[error("unknown preset `{0}` (tiny, tiny-dense, tiny-attn-only, realcode, realcode-dense, test)")]
    UnknownPreset(String),
    /// `--resume` with settings other than those the run was started with.
    #[error("{}: the run there used another configuration; resume with the same preset and options", path.display())]
    OtherConfiguration {
        /// The run's `train_config.json`.
        path: PathBuf,
    },
    /// A fresh start in a folder that holds a run.
    #[error("{} holds a run already; pass --resume to continue it or choose another directory", dir.display())]
    RunExists {
        /// The output folder.
        dir: PathBuf,
    },
    /// The bridged run's dense model or bridges are unusable.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// A bridged run's dense model has no tokenizer beside it and none was given.
    #[error("{}: the dense model has no tokenizer.json; a bridged run trains on the dense model's tokens, pass --tokenizer FILE", dir.display())]
    DenseTokenizer {
        /// The dense model's folder.
        dir: PathBuf,
    },
    /// The tokenizer has more tokens than the model's embedding has rows.
    #[error("the tokenizer has {tokens} tokens but the model's vocab_size is {vocab_size}")]
    VocabTooLarge {
        /// Tokens in the tokenizer.
        tokens: usize,
        /// The model's `vocab_size`.
        vocab_size: usize,
    },
}

type Result<T> = std::result::Result<T, TrainError>;

fn file_err(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything that determines a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// The architecture to train.
    pub model: Config,
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per step, each `block_size + 1` tokens.
    pub batch_size: usize,
    /// Peak learning rate before the 1/sqrt(kept fraction) factor.
    pub lr: f64,
    /// Fraction of the steps over which the learning rate warms up linearly from 0.
    pub warmup_frac: f64,
    /// Target kept fraction of every sparse parameter (1 = dense).
    pub density: f64,
    /// Fraction of the steps over which the kept fraction anneals linearly from 1 to `density`.
    pub anneal_frac: f64,
    /// Fewest nonzeros each row of a sparse matrix keeps, so no neuron is cut off entirely.
    pub min_per_row: usize,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// AdamW's betas, epsilon and weight decay.
    pub adamw: AdamWParams,
    /// Seed of initialisation, batch sampling and the synthetic corpus.
    pub seed: u64,
    /// Corpus spec (`synthetic`, `synthetic:SEED`, a directory or a .jsonl file).
    pub corpus: String,
    /// Tokens of the training pool (windows are drawn from it).
    pub corpus_tokens: usize,
    /// Vocabulary of the tokenizer trained on the corpus when none is given.
    pub tokenizer_vocab: usize,
    /// Steps between task evaluations (0: never).
    pub eval_every: usize,
    /// Test pairs per task at each evaluation.
    pub eval_pairs: usize,
    /// Steps between checkpoints written to the output folder (0: only at the end).
    pub checkpoint_every: usize,
    /// Attention only (`tiny-attn-only`): every MLP weight is zero at the start and after every step, so each
    /// block writes only its attention output (zero weights get zero gradients: the MLP is a fixed point, and
    /// the re-zeroing only makes that exact). The model files keep a width-1 MLP of zeros, so that every tool
    /// reads the model as it reads any other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attn_only: bool,
    /// Bridged training: the frozen dense model the sparse one is coupled to, and the loss weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeSpec>,
}

impl TrainConfig {
    /// `tiny`: the bundled weight-sparse model (2 layers, d_model 128, 8 heads × 16, d_mlp 512, context 128,
    /// density 1/8); `tiny-dense`: the same without weight sparsity; `tiny-attn-only`: 2 dense attention-only
    /// layers as the framework paper's toy models (LayerNorm, no biases, sinks, bigram table or activation
    /// sparsity); `test`: a few-second run for tests.
    pub fn preset(name: &str) -> Result<Self> {
        let model = |n_layer: usize, d_model: usize, n_head: usize, d_mlp: usize, block: usize, vocab: usize| {
            let json = serde_json::json!({
                "block_size": block, "vocab_size": vocab, "n_layer": n_layer, "n_head": n_head, "d_head": 16,
                "d_model": d_model, "d_mlp": d_mlp, "rms_norm": true, "tied_unembed": false, "sink": true,
                "enable_bigram_table": true, "afrac": 0.25, "activation_type": "gelu",
                "afrac_loctypes": "attn_in,attn_q,attn_k,attn_v,attn_out,mlp_in,mlp_neuron,mlp_out",
            });
            Config::from_json_str(&json.to_string())
                .expect("preset config is valid")
                .config
        };
        let base = TrainConfig {
            model: model(2, 128, 8, 512, 128, 1024),
            steps: 6500,
            batch_size: 32,
            lr: 1e-2,
            warmup_frac: 0.05,
            density: 1.0 / 8.0,
            anneal_frac: 0.5,
            min_per_row: 4,
            grad_clip: 1.0,
            adamw: AdamWParams {
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            seed: 0,
            corpus: "synthetic".into(),
            corpus_tokens: 8_000_000,
            tokenizer_vocab: 1024,
            eval_every: 500,
            eval_pairs: 64,
            checkpoint_every: 250,
            attn_only: false,
            bridge: None,
        };
        Ok(match name {
            "tiny" => base,
            "tiny-dense" => TrainConfig { density: 1.0, ..base },
            // The real-code models (issue 21): tiny's architecture on 70% cleaned standard library and 30%
            // synthetic text by characters, with a 2,048-token BPE trained on that mix (as tinypython_2k).
            "realcode" | "realcode-dense" => TrainConfig {
                model: model(2, 128, 8, 512, 128, 2048),
                corpus: "mix:stdlib=0.7,synthetic=0.3".into(),
                tokenizer_vocab: 2048,
                density: if name == "realcode" { 1.0 / 8.0 } else { 1.0 },
                ..base
            },
            // The framework paper's toy attention-only transformer, small enough to train in 20 minutes on two
            // shared cores; its MLPs are width 1 and held at zero (see `attn_only`).
            "tiny-attn-only" => {
                let json = serde_json::json!({
                    "block_size": 128, "vocab_size": 1024, "n_layer": 2, "n_head": 8, "d_head": 16,
                    "d_model": 128, "d_mlp": 1, "rms_norm": false, "ln_bias": true, "bias": false,
                    "tied_unembed": false, "sink": false, "enable_bigram_table": false,
                    "activation_type": "gelu", "afrac_loctypes": "",
                });
                TrainConfig {
                    model: Config::from_json_str(&json.to_string())
                        .expect("preset config is valid")
                        .config,
                    steps: 1500,
                    lr: 5e-3,
                    density: 1.0,
                    eval_every: 500,
                    attn_only: true,
                    ..base
                }
            }
            "test" => TrainConfig {
                model: model(1, 32, 2, 64, 32, 512),
                steps: 6,
                batch_size: 4,
                lr: 3e-3,
                corpus_tokens: 20_000,
                tokenizer_vocab: 512,
                eval_every: 0,
                eval_pairs: 4,
                checkpoint_every: 3,
                density: 0.25,
                ..base
            },
            other => return Err(TrainError::UnknownPreset(other.to_string())),
        })
    }

    /// This preset coupled to the dense model in `dense_dir` with loss weights `coefficients`: the sparse model
    /// takes the dense model's vocabulary (they share its tokenizer) and at most its context; the layer counts
    /// must agree, since bridges pair the residual sites one to one (the widths may differ).
    pub fn bridged(
        mut self,
        dense_dir: &Path,
        coefficients: bridge::BridgeCoefficients,
        mixed_sites_per_step: Option<usize>,
    ) -> Result<Self> {
        let (dense, _) = Gpt::load(dense_dir, LoadOptions::ALL_DENSE)?;
        if dense.config.n_layer != self.model.n_layer {
            return Err(BridgeError::Mismatch(format!(
                "{}: the dense model has {} layers and the preset {}; bridges pair the residual sites layer by layer",
                dense_dir.display(),
                dense.config.n_layer,
                self.model.n_layer
            ))
            .into());
        }
        self.model.vocab_size = dense.config.vocab_size;
        self.model.block_size = self.model.block_size.min(dense.config.block_size);
        self.tokenizer_vocab = dense.config.vocab_size;
        self.bridge = Some(BridgeSpec {
            dense: dense_dir.to_path_buf(),
            dense_fingerprint: dense_fingerprint(dense_dir, &dense)?,
            coefficients,
            mixed_sites_per_step,
        });
        Ok(self)
    }

    /// Kept fraction of sparse parameters after `step` steps.
    pub fn kept_fraction(&self, step: usize) -> f64 {
        let anneal = (self.anneal_frac * self.steps as f64).max(1.0);
        let progress = (step as f64 / anneal).min(1.0);
        1.0 - (1.0 - self.density) * progress
    }

    /// Learning rate of step `step` (0-based): warmup, linear decay to 0, times 1/sqrt(kept fraction).
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = (self.warmup_frac * self.steps as f64).max(1.0);
        let schedule = ((step + 1) as f64 / warm).min(1.0) * (1.0 - step as f64 / self.steps as f64).max(0.0);
        self.lr * schedule / self.kept_fraction(step).sqrt()
    }
}

/// Step state saved with each checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    best_accuracy: Option<f64>,
}

/// What `train` reports at the end.
#[derive(Debug, Serialize)]
pub struct TrainSummary {
    /// Steps run.
    pub steps: usize,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Training loss (nats per token) at the last step.
    pub final_loss: f64,
    /// Kept fraction of the sparse parameters at the end.
    pub density: f64,
    /// Best mean task accuracy among the evaluations run after annealing ended (the exported model's), if any.
    pub best_accuracy: Option<f64>,
}

/// Applies the sparsity of `kept` to every sparse parameter.
fn sparsify(params: &Params, kept: f64, min_per_row: usize) -> Result<()> {
    for (name, var) in &params.vars {
        if !is_sparse_param(name) || kept >= 1.0 {
            continue;
        }
        let dims = var.dims().to_vec();
        let (rows, cols) = match dims[..] {
            [r, c] => (r, c),
            [n] => (1, n),
            _ => continue,
        };
        let mut w: Vec<f32> = var.flatten_all()?.to_vec1()?;
        let keep = sparsity::kept_count(w.len(), kept);
        sparsity::sparsify_top_k(&mut w, rows, cols, keep, min_per_row);
        var.set(&Tensor::from_vec(w, dims, var.device())?)?;
    }
    Ok(())
}

/// What a run reports while it trains, for a caller to show (the CLI draws a progress bar from these).
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// A BPE tokenizer of `vocab` tokens is being trained on the corpus.
    TrainingTokenizer {
        /// The tokenizer's vocabulary size.
        vocab: usize,
    },
    /// The corpus is being tokenized.
    Tokenizing {
        /// The number of training tokens taken from it.
        tokens: usize,
    },
    /// Training starts (or resumes) at step `start` of `total`.
    Started {
        /// The first step this invocation takes (non-zero when resuming).
        start: usize,
        /// The run's number of steps.
        total: usize,
        /// Whether the run continues from a checkpoint.
        resumed: bool,
    },
    /// A step finished.
    Step {
        /// Steps done so far.
        done: usize,
        /// The step's training loss.
        loss: f64,
        /// The fraction of matrix weights kept after the step.
        kept: f64,
        /// Training throughput of this invocation.
        tokens_per_s: f64,
    },
    /// An evaluation finished.
    Evaluated {
        /// Steps done so far.
        done: usize,
        /// The last step's training loss.
        loss: f64,
        /// The loss on held-out text.
        held_out_loss: f64,
        /// The mean accuracy over the task registry.
        mean_task_accuracy: f64,
    },
    /// This invocation's last step is done.
    Finished,
}

/// [`train_with_progress`] without progress reports.
pub fn train(
    cfg: &TrainConfig,
    out_dir: &Path,
    tokenizer: Option<&Path>,
    resume: bool,
    stop_after: Option<usize>,
) -> Result<TrainSummary> {
    train_with_progress(cfg, out_dir, tokenizer, resume, stop_after, &mut |_| {})
}

/// Trains into `out_dir` (or continues the run there with `resume`). `stop_after` ends this invocation after
/// that many total steps (with a checkpoint), to train in several sittings; the schedule is that of the full run.
/// `progress` hears of each phase, step and evaluation; the library itself prints nothing.
pub fn train_with_progress(
    cfg: &TrainConfig,
    out_dir: &Path,
    tokenizer: Option<&Path>,
    resume: bool,
    stop_after: Option<usize>,
    progress: &mut dyn FnMut(TrainEvent),
) -> Result<TrainSummary> {
    std::fs::create_dir_all(out_dir.join("checkpoint")).map_err(file_err(out_dir))?;
    let cfg_path = out_dir.join("train_config.json");
    if resume {
        let saved: TrainConfig = serde_json::from_str(
            &std::fs::read_to_string(&cfg_path).map_err(file_err(&cfg_path))?,
        )
        .map_err(|source| TrainError::RunFile {
            path: cfg_path.clone(),
            source,
        })?;
        if &saved != cfg {
            return Err(TrainError::OtherConfiguration { path: cfg_path });
        }
    } else if cfg_path.exists() {
        return Err(TrainError::RunExists {
            dir: out_dir.to_path_buf(),
        });
    }
    let corpus = CorpusSource::parse(&cfg.corpus)?;
    let dense = match &cfg.bridge {
        Some(spec) => Some(open_dense(spec, &cfg.model)?),
        None => None,
    };
    let dense_tok = match (&cfg.bridge, tokenizer) {
        (Some(spec), None) => {
            Some(
                ModelFiles::locate(&spec.dense)?
                    .tokenizer
                    .ok_or_else(|| TrainError::DenseTokenizer {
                        dir: spec.dense.clone(),
                    })?,
            )
        }
        _ => None,
    };
    let tokenizer = tokenizer.or(dense_tok.as_deref());
    let tok = prepare_tokenizer(cfg, &corpus, out_dir, tokenizer, progress)?;
    if tok.vocab_size() > cfg.model.vocab_size {
        return Err(TrainError::VocabTooLarge {
            tokens: tok.vocab_size(),
            vocab_size: cfg.model.vocab_size,
        });
    }
    progress(TrainEvent::Tokenizing {
        tokens: cfg.corpus_tokens,
    });
    let pool = TokenPool::build(corpus.train()?, &tok, cfg.corpus_tokens)?;
    let held_out = TokenPool::build(corpus.held_out()?, &tok, 16 * (cfg.model.block_size + 1))?;
    // Written once the inputs are known good, so that a failed start leaves no half-made run behind.
    write_atomic(
        &cfg_path,
        serde_json::to_string_pretty(cfg).expect("serialisable").as_bytes(),
    )?;

    let params = Params::init(&cfg.model, cfg.seed)?;
    if cfg.attn_only {
        zero_mlps(&params)?;
    }
    // The bridges' variables, named `bridge.<tensor>` in the optimiser and its state.
    let bridge_vars = match &dense {
        Some(d) => Bridges::init_vars(
            bridge::site_count(cfg.model.n_layer),
            d.config.d_model,
            cfg.model.d_model,
            cfg.seed,
        )
        .map_err(TrainError::Bridge)?,
        None => BTreeMap::new(),
    };
    let mut opt = AdamW::new(
        params.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        cfg.adamw,
    )?;
    // The bridges have their own optimiser (same hyperparameters and schedule) so that their gradient norm is
    // clipped on its own: early on the encoders' reconstruction error is orders of magnitude above the model's
    // losses, and one global clip would shrink the sparse model's steps with it.
    let mut bridge_opt = AdamW::new(
        bridge_vars
            .iter()
            .map(|(k, v)| (format!("bridge.{k}"), v.clone()))
            .collect(),
        cfg.adamw,
    )?;
    let mut start = 0;
    let mut best: Option<f64> = None;
    let mut resumed = false;
    if resume {
        let ckpt_dir = out_dir.join("checkpoint");
        let state_path = ckpt_dir.join("state.json");
        if state_path.exists() {
            let state: CheckpointState = serde_json::from_str(
                &std::fs::read_to_string(&state_path).map_err(file_err(&state_path))?,
            )
            .map_err(|source| TrainError::RunFile {
                path: state_path.clone(),
                source,
            })?;
            params.load(&Checkpoint::open(&ckpt_dir.join("model.safetensors"))?)?;
            if !bridge_vars.is_empty() {
                let saved = Checkpoint::open(&ckpt_dir.join(bridge::BRIDGES_FILE))?;
                for (name, var) in &bridge_vars {
                    var.set(&saved.require_dense(name, var.dims())?)?;
                }
            }
            let optim = Checkpoint::open(&ckpt_dir.join("optim.safetensors"))?;
            let mut moments = BTreeMap::new();
            for (k, v) in &optim.tensors {
                moments.insert(k.clone(), v.to_dense()?);
            }
            for o in [&mut opt, &mut bridge_opt] {
                o.load_state(&moments, state.step)
                    .map_err(|source| TrainError::OptimState {
                        path: ckpt_dir.join("optim.safetensors"),
                        source,
                    })?;
            }
            start = state.step;
            best = state.best_accuracy;
            resumed = true;
        }
    }
    let model = params.model(&cfg.model)?;
    let bridges = match &dense {
        Some(d) => Some(bridges_of(&bridge_vars, &cfg.model, &d.config)?),
        None => None,
    };
    let bridged = match (&cfg.bridge, &dense, &bridges) {
        (Some(spec), Some(d), Some(b)) => Some((spec, d, b)),
        _ => None,
    };
    let task_list = tasks::registry();
    let log_path = out_dir.join("log.jsonl");
    if resume {
        trim_log(&log_path, start)?;
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(file_err(&log_path))?;
    progress(TrainEvent::Started {
        start,
        total: cfg.steps,
        resumed,
    });
    let started = Instant::now();
    let tokens_per_step = cfg.batch_size * cfg.model.block_size;
    let mut last_loss = f64::NAN;
    let end = stop_after.unwrap_or(cfg.steps).min(cfg.steps);
    for step in start..end {
        let (inputs, targets) = pool.batch(cfg.batch_size, cfg.model.block_size, cfg.seed, step as u64)?;
        let mut hooks = Hooks::none();
        hooks.differentiable = true;
        let (loss, terms) = match bridged {
            Some((spec, dense, bridges)) => {
                let sampled = spec
                    .mixed_sites_per_step
                    .map(|k| bridge::sample_sites(bridges.sites, k, cfg.seed, step as u64));
                let terms = bridge::bridge_losses(
                    &model,
                    dense,
                    bridges,
                    &inputs,
                    &targets,
                    &spec.coefficients,
                    sampled.as_deref(),
                )?;
                (terms.total.clone(), terms.values()?)
            }
            None => {
                let logits = model.forward(&inputs, &mut hooks)?; // (B, T, V)
                let v = cfg.model.vocab_size;
                let loss = candle_nn::loss::cross_entropy(&logits.reshape(((), v))?, &targets.flatten_all()?)?;
                (loss, Vec::new())
            }
        };
        let grads = loss.backward()?;
        let clip = |norm: f64| {
            if norm > cfg.grad_clip {
                cfg.grad_clip / norm
            } else {
                1.0
            }
        };
        let norm = grad_norm(params.vars.values(), &grads)?;
        let lr = cfg.lr_at(step);
        opt.step(&grads, lr, clip(norm))?;
        let bridge_norm = grad_norm(bridge_vars.values(), &grads)?;
        if !bridge_vars.is_empty() {
            bridge_opt.step(&grads, lr, clip(bridge_norm))?;
        }
        let kept = cfg.kept_fraction(step + 1);
        sparsify(&params, kept, cfg.min_per_row)?;
        if cfg.attn_only {
            zero_mlps(&params)?;
        }
        last_loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let done = step + 1;
        let rate = ((done - start) * tokens_per_step) as f64 / started.elapsed().as_secs_f64();
        progress(TrainEvent::Step {
            done,
            loss: last_loss,
            kept,
            tokens_per_s: rate,
        });
        let mut record = serde_json::json!({
            "step": done, "loss": last_loss, "lr": lr, "kept_fraction": kept, "grad_norm": norm,
            "tokens_per_s": rate, "elapsed_s": started.elapsed().as_secs_f64(),
        });
        if !bridge_vars.is_empty() {
            record["bridge_grad_norm"] = bridge_norm.into();
        }
        if !terms.is_empty() {
            record["bridge_terms"] = terms
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect();
        }
        let eval_now = cfg.eval_every > 0 && (done % cfg.eval_every == 0 || done == cfg.steps);
        if eval_now {
            let scores = eval::score_tasks(&model, &tok, &task_list, cfg.eval_pairs)?;
            let mean = scores.iter().map(|(_, s)| s.accuracy).sum::<f64>() / scores.len().max(1) as f64;
            let held = eval::corpus_loss(&model, &held_out.tokens, cfg.model.block_size, 16)?;
            record["mean_task_accuracy"] = mean.into();
            record["held_out_loss"] = held.into();
            record["tasks"] = scores
                .iter()
                .map(|(n, s)| (n.clone(), serde_json::json!(s.accuracy)))
                .collect();
            // Accuracy swings while the density anneals: export the best model, judged only once annealed.
            if kept <= cfg.density + 1e-9 && best.is_none_or(|b| mean > b) {
                best = Some(mean);
                export(&params, cfg, out_dir, bridged_export(&bridged, &cfg.model))?;
                record["exported"] = true.into();
            }
            progress(TrainEvent::Evaluated {
                done,
                loss: last_loss,
                held_out_loss: held,
                mean_task_accuracy: mean,
            });
        }
        // One write of the whole line: a kill leaves whole records (and `trim_log` drops a torn last one).
        log.write_all(format!("{record}\n").as_bytes())
            .map_err(file_err(&log_path))?;
        if done == end || (cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0) {
            save_checkpoint(&params, &[&opt, &bridge_opt], bridges.as_ref(), out_dir, done, best)?;
        }
    }
    progress(TrainEvent::Finished);
    if best.is_none() && end == cfg.steps {
        export(&params, cfg, out_dir, bridged_export(&bridged, &cfg.model))?;
    }
    Ok(TrainSummary {
        steps: end,
        seconds: started.elapsed().as_secs_f64(),
        final_loss: last_loss,
        density: params.sparse_density()?,
        best_accuracy: best,
    })
}

/// Sets every MLP parameter to zero: an attention-only run's MLPs write nothing to the residual stream.
fn zero_mlps(params: &Params) -> Result<()> {
    for (name, var) in &params.vars {
        if name.contains(".mlp.") {
            var.set(&var.as_tensor().zeros_like()?)?;
        }
    }
    Ok(())
}

/// The global gradient norm over `vars` (variables without a gradient count as zero).
fn grad_norm<'a>(
    vars: impl Iterator<Item = &'a candle_core::Var>,
    grads: &candle_core::backprop::GradStore,
) -> Result<f64> {
    let mut sum = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var) {
            sum += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
    }
    Ok(sum.sqrt())
}

/// Uses the given tokenizer, the one already in `out_dir`, or trains one on the corpus (every task target a
/// single token).
fn prepare_tokenizer(
    cfg: &TrainConfig,
    corpus: &CorpusSource,
    out_dir: &Path,
    given: Option<&Path>,
    progress: &mut dyn FnMut(TrainEvent),
) -> Result<Tokenizer> {
    let path = out_dir.join("tokenizer.json");
    if let Some(g) = given {
        let tok = Tokenizer::load(g)?;
        tok.save(&path)?;
        return Ok(tok);
    }
    if path.exists() {
        return Ok(Tokenizer::load(&path)?);
    }
    progress(TrainEvent::TrainingTokenizer {
        vocab: cfg.tokenizer_vocab,
    });
    let targets = tasks::target_strings();
    let required: Vec<&str> = targets.iter().map(String::as_str).collect();
    let docs = corpus.train()?.take(4000);
    let tok = crate::tokenize::train::train_bpe(docs, cfg.tokenizer_vocab, &required)?;
    tok.save(&path)?;
    Ok(tok)
}

/// What a bridged run exports beside the model: the bridges and their description.
type BridgedExport<'a> = Option<(&'a Bridges, BridgeInfo)>;

fn bridged_export<'a>(bridged: &Option<(&BridgeSpec, &Gpt, &'a Bridges)>, sparse: &Config) -> BridgedExport<'a> {
    bridged.map(|(spec, dense, bridges)| (bridges, BridgeInfo::new(spec, sparse, &dense.config)))
}

/// Writes the model files (config.json, model.safetensors with CSR sparse matrices, and a bridged run's
/// bridges.safetensors and bridge.json) into `out_dir`, swapped in together with the rest of the folder so that
/// the weights, the config and the bridges always match.
fn export(params: &Params, cfg: &TrainConfig, out_dir: &Path, bridged: BridgedExport) -> Result<()> {
    let writer = DirWriter::begin(out_dir, Keep::Others).map_err(|e| file_err(out_dir)(e.into_io()))?;
    write_safetensors(&writer.path().join("model.safetensors"), &params.to_stored()?, &[])?;
    write_atomic(
        &writer.path().join("config.json"),
        cfg.model.to_json_string().as_bytes(),
    )?;
    if let Some((bridges, info)) = bridged {
        bridges.save(&writer.path().join(bridge::BRIDGES_FILE))?;
        info.save(writer.path())?;
    }
    writer.commit().map_err(|e| file_err(out_dir)(e.into_io()))?;
    Ok(())
}

/// Cuts the run's log back to the checkpoint a resume starts from: records of steps after `step` (written
/// before a kill, and about to be run again) and a torn last line go, so that a resumed run's log has each step
/// once. Rewritten through the atomic writer, so that a kill here leaves the old log or the cut one.
fn trim_log(path: &Path, step: usize) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(file_err(path)(e)),
    };
    let mut kept = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let record_step = line
            .strip_suffix('\n')
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
        match record_step {
            Some(s) if s as usize <= step => kept.push_str(line),
            _ => break,
        }
    }
    if kept.len() != text.len() {
        write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// Writes the resumable state (weights, optimiser, step) as one folder swap: a resume never mixes two steps.
fn save_checkpoint(
    params: &Params,
    opts: &[&AdamW],
    bridges: Option<&Bridges>,
    out_dir: &Path,
    step: usize,
    best: Option<f64>,
) -> Result<()> {
    let target = out_dir.join("checkpoint");
    let writer = DirWriter::begin(&target, Keep::Nothing).map_err(|e| file_err(&target)(e.into_io()))?;
    let dir = writer.path().to_path_buf();
    let model: BTreeMap<String, Stored> = params
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), Stored::Dense(v.as_tensor().detach())))
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &model, &[])?;
    if let Some(b) = bridges {
        b.save(&dir.join(bridge::BRIDGES_FILE))?;
    }
    let optim: BTreeMap<String, Stored> = opts
        .iter()
        .flat_map(|o| o.state())
        .map(|(k, t)| (k, Stored::Dense(t)))
        .collect();
    write_safetensors(&dir.join("optim.safetensors"), &optim, &[])?;
    let state = CheckpointState {
        step,
        best_accuracy: best,
    };
    write_atomic(
        &dir.join("state.json"),
        serde_json::to_string(&state).expect("serialisable").as_bytes(),
    )?;
    writer.commit().map_err(|e| file_err(&target)(e.into_io()))?;
    Ok(())
}

/// The dense model's fingerprint, as circuit files and scans record it.
fn dense_fingerprint(dir: &Path, dense: &Gpt) -> Result<String> {
    let files = ModelFiles::locate(dir)?;
    crate::circuit::file::model_fingerprint(&files.open_checkpoint(&dense.config)?, &dense.config)
        .map_err(|e| BridgeError::Mismatch(format!("{}: {e}", dir.display())).into())
}

/// Loads a bridged run's dense model and checks it is the one the run was configured with, and that it pairs
/// with the sparse architecture.
fn open_dense(spec: &BridgeSpec, sparse: &Config) -> Result<Gpt> {
    let (dense, _) = Gpt::load(&spec.dense, LoadOptions::ALL_DENSE)?;
    let found = dense_fingerprint(&spec.dense, &dense)?;
    if found != spec.dense_fingerprint {
        return Err(BridgeError::Fingerprint {
            path: spec.dense.clone(),
            found,
            expected: spec.dense_fingerprint.clone(),
        }
        .into());
    }
    bridge::check_pair(sparse, &dense.config)?;
    Ok(dense)
}

/// The bridges over the trainer's variables (their tensors share storage, so each step's update shows).
fn bridges_of(vars: &BTreeMap<String, candle_core::Var>, sparse: &Config, dense: &Config) -> Result<Bridges> {
    let tensors = vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    Ok(Bridges::from_tensors(
        tensors,
        bridge::site_count(sparse.n_layer),
        dense.d_model,
        sparse.d_model,
        bridge::encoder_topk(sparse),
    )?)
}
