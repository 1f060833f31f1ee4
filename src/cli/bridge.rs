//! `circuitscope bridge eval`: the path table of a bridged model (a weight-sparse model trained with bridges to a
//! dense one): CE and KL to the dense model of every way through the two models, per-site NMSE both ways, and the
//! task accuracy of both models.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::{load_model, print_json, resolve_tokenizer};
use crate::analysis::bridge::{self, BridgedPair, PathTable};
use crate::analysis::eval;
use crate::data::corpus::CorpusSource;
use crate::data::tasks;
use crate::data::TokenPool;
use crate::model::LoadOptions;
use crate::tokenize::Tokenizer;

/// Subcommands of `circuitscope bridge`.
#[derive(clap::Subcommand, Debug)]
pub enum BridgeCommand {
    /// The path table: CE and KL to the dense model for the dense model, the sparse model, every single
    /// crossing and every round trip through a bridge; per-site NMSE both ways; task accuracy of both models.
    Eval(BridgeEvalArgs),
    /// The paper's steering experiment: on a task's test pairs, set a sparse node to its mean on the other class,
    /// carry the change through the bridge, and count the pairs whose dense logit difference moves toward the
    /// other class; the same for random channels of the node's hook moved by a change of the same size.
    SteerEval(BridgeSteerEvalArgs),
}

/// Arguments of `circuitscope bridge steer-eval`.
#[derive(clap::Args, Debug)]
pub struct BridgeSteerEvalArgs {
    /// The bridged model's directory (the sparse model with bridges.safetensors and bridge.json).
    #[arg(long)]
    pub model: PathBuf,
    /// The dense model [default: the folder named in bridge.json]; its fingerprint must match.
    #[arg(long)]
    pub dense: Option<PathBuf>,
    /// Load-time checks and their opt-outs.
    #[command(flatten)]
    pub checks: super::common::LoadChecks,
    /// The task (a built-in name or a .jsonl file); its pairs need an alternative target.
    #[arg(long)]
    pub task: String,
    /// The sparse node steered, one channel: `HOOK[INDEX]`, e.g. `1.mlp.post_act[7]`.
    #[arg(long)]
    pub node: String,
    /// Test pairs steered (each gives two prompts: class a steered toward b, class b toward a).
    #[arg(long, default_value_t = 200)]
    pub pairs: usize,
    /// Random channels of the node's hook for the control (0: none).
    #[arg(long, default_value_t = 20)]
    pub random: usize,
    /// Seed of the random channels' draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Multiplies every change (1: the node goes exactly to the other class's mean; 0: no change).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope bridge eval`.
#[derive(clap::Args, Debug)]
pub struct BridgeEvalArgs {
    /// The bridged model's directory (the sparse model with bridges.safetensors and bridge.json).
    #[arg(long)]
    pub model: PathBuf,
    /// The dense model [default: the folder named in bridge.json]; its fingerprint must match.
    #[arg(long)]
    pub dense: Option<PathBuf>,
    /// Load-time checks and their opt-outs.
    #[command(flatten)]
    pub checks: super::common::LoadChecks,
    /// Corpus whose held-out split is scored [default: the run's training corpus from train_config.json, else
    /// `synthetic`].
    #[arg(long)]
    pub corpus: Option<String>,
    /// Tokens to score (whole context windows; at least one window).
    #[arg(long, default_value_t = 8192)]
    pub tokens: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Test pairs per task for the task accuracies (0: skip the task eval).
    #[arg(long, default_value_t = 64)]
    pub task_pairs: usize,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(cmd: BridgeCommand) -> Result<()> {
    match cmd {
        BridgeCommand::Eval(a) => run_eval(a),
        BridgeCommand::SteerEval(a) => run_steer_eval(a),
    }
}

/// Opens the bridged model in `dir`: the sparse model, the dense one and the bridges, all checked.
pub fn open_bridged(dir: &Path, dense: Option<&Path>, opts: LoadOptions) -> Result<BridgedPair> {
    let sparse = load_model(dir, opts)?;
    bridge::open_pair(dir, sparse, dense, opts).with_context(|| format!("opening the bridges of {}", dir.display()))
}

/// The corpus a bridged run trained on, from its train_config.json.
fn run_corpus(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("train_config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("corpus")?.as_str().map(str::to_string)
}

fn run_eval(args: BridgeEvalArgs) -> Result<()> {
    let opts = args.checks.apply(LoadOptions::default());
    let pair = open_bridged(&args.model, args.dense.as_deref(), opts)?;
    let Some(tok) = resolve_tokenizer(None, &args.model)? else {
        bail!("{}: no tokenizer.json beside the model", args.model.display());
    };
    let spec = args
        .corpus
        .clone()
        .or_else(|| run_corpus(&args.model))
        .unwrap_or_else(|| "synthetic".into());
    let corpus = CorpusSource::parse(&spec).with_context(|| format!("--corpus {spec}"))?;
    let block = pair.sparse.config.block_size;
    if args.batch == 0 {
        bail!("--batch 0: give at least one window per pass");
    }
    let pool = TokenPool::build(corpus.held_out()?, &tok, args.tokens + block + 1)?;
    let windows: Vec<Vec<u32>> = pool
        .tokens
        .chunks_exact(block + 1)
        .take((args.tokens / block).max(1))
        .map(<[u32]>::to_vec)
        .collect();
    if windows.is_empty() {
        bail!(
            "--corpus {spec}: its held-out split has {} tokens, fewer than one window of {}",
            pool.tokens.len(),
            block + 1
        );
    }
    let table = bridge::path_table(&pair, &windows, args.batch)?;
    let task_rows = task_eval(&pair, &tok, args.task_pairs)?;
    if args.json {
        return print_json(&json!({
            "model": args.model.display().to_string(),
            "dense_model": pair.dense_dir.display().to_string(),
            "dense_fingerprint": pair.info.dense_fingerprint,
            "corpus": spec,
            "tokens": table.tokens,
            "paths": table.paths,
            "sites": table.sites,
            "tasks": task_rows.iter().map(|r| json!({
                "task": r.0, "sparse_accuracy": r.1, "dense_accuracy": r.2, "pairs": r.3,
            })).collect::<Vec<_>>(),
        }));
    }
    print!("{}", render(&args.model, &pair, &spec, &table, &task_rows));
    Ok(())
}

/// Training prompts per class the node's class means are taken over (as `run --bridge-steer`'s class_a/class_b).
const CLASS_MEAN_PROMPTS: usize = 64;

fn run_steer_eval(args: BridgeSteerEvalArgs) -> Result<()> {
    use crate::analysis::ablate::TaskData;
    if args.pairs == 0 {
        bail!("--pairs 0: steer at least one test pair");
    }
    if !args.scale.is_finite() {
        bail!("--scale {}: give a finite number", args.scale);
    }
    let opts = args.checks.apply(LoadOptions::default());
    let pair = open_bridged(&args.model, args.dense.as_deref(), opts)?;
    let Some(tok) = resolve_tokenizer(None, &args.model)? else {
        bail!("{}: no tokenizer.json beside the model", args.model.display());
    };
    let node = match super::common::parse_hook_channels(&args.node, &pair.sparse)
        .with_context(|| "--node".to_string())?
        .as_slice()
    {
        [one] => one.clone(),
        many => bail!("--node {}: {} channels; steer-eval steers one", args.node, many.len()),
    };
    let width = pair
        .sparse
        .hook_points()
        .into_iter()
        .find(|(h, _)| *h == node.hook)
        .map(|(_, w)| w)
        .expect("parse_hook_channels found the hook");
    let task = tasks::resolve(&args.task).with_context(|| format!("--task {}", args.task))?;
    let block = pair.sparse.config.block_size;
    let train = tasks::split(task.as_ref(), tasks::Split::Train, CLASS_MEAN_PROMPTS);
    let train = TaskData::new(&tok, task.name(), &train, block).with_context(|| format!("--task {}", args.task))?;
    let class_a = bridge::node_mean_at_last(&pair.sparse, &train.pos, &node.hook, node.channel)?;
    let class_b = bridge::node_mean_at_last(&pair.sparse, &train.neg, &node.hook, node.channel)?;
    let test = tasks::split(task.as_ref(), tasks::Split::Test, args.pairs);
    let data = TaskData::new(&tok, task.name(), &test, block).with_context(|| format!("--task {}", args.task))?;
    let random =
        bridge::random_channels(width, node.channel, args.random, args.seed).with_context(|| "--random".to_string())?;
    let r = bridge::steer_eval(
        &pair,
        &data,
        &node.hook,
        node.channel,
        (class_a, class_b),
        &random,
        args.scale,
    )
    .with_context(|| format!("--task {}", args.task))?;
    let rates: Vec<f64> = r.random.iter().map(|c| c.dense.rate()).collect();
    let spread = Spread::of(&rates);
    if args.json {
        return print_json(&json!({
            "model": args.model.display().to_string(),
            "dense_model": pair.dense_dir.display().to_string(),
            "task": task.name(),
            "node": node.to_string(),
            "site": r.site,
            "site_label": bridge::site_label(r.site),
            "site_hook": bridge::site_hook(r.site, pair.sparse.config.n_layer).to_string(),
            "pairs": r.pairs,
            "scale": args.scale,
            "seed": args.seed,
            "class_a": r.class_a,
            "class_b": r.class_b,
            "mean_abs_change": r.mean_abs_change,
            "dense": {
                "a_to_b": tally_json(&r.dense_a_to_b),
                "b_to_a": tally_json(&r.dense_b_to_a),
                "all": tally_json(&r.dense),
            },
            "sparse": tally_json(&r.sparse),
            "random": {
                "channels": r.random.iter().map(|c| {
                    let mut v = tally_json(&c.dense);
                    v["channel"] = json!(c.channel);
                    v
                }).collect::<Vec<_>>(),
                "mean_rate": spread.map(|s| s.mean),
                "std_rate": spread.map(|s| s.std),
                "min_rate": spread.map(|s| s.min),
                "max_rate": spread.map(|s| s.max),
            },
        }));
    }
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "steering {} of {} through the bridge into {}: {} {} test pairs ({} prompts), change crosses at site {} ({})",
        node,
        args.model.display(),
        pair.dense_dir.display(),
        r.pairs,
        task.name(),
        r.dense.prompts,
        bridge::site_label(r.site),
        bridge::site_hook(r.site, pair.sparse.config.n_layer)
    );
    let _ = writeln!(
        out,
        "  node mean at the last token: class a {:.4}, class b {:.4}; mean |change| {:.4} (scale {})\n",
        r.class_a, r.class_b, r.mean_abs_change, args.scale
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>7} {:>7} {:>6} {:>10} {:>7} {:>11}",
        "logit difference moves", "prompts", "toward", "away", "unchanged", "rate", "mean shift"
    );
    for (name, t) in [
        ("dense, class a → b", &r.dense_a_to_b),
        ("dense, class b → a", &r.dense_b_to_a),
        ("dense, both", &r.dense),
        ("sparse (no bridge), both", &r.sparse),
    ] {
        let _ = writeln!(
            out,
            "  {name:<28} {:>7} {:>7} {:>6} {:>10} {:>7.3} {:>+11.4}",
            t.prompts,
            t.toward,
            t.away,
            t.unchanged,
            t.rate(),
            t.mean_shift
        );
    }
    match spread {
        Some(s) => {
            let _ = writeln!(
                out,
                "\n  random control: {} other channels of {} (seed {}), each moved by the node's change: dense rate \
                 mean {:.3} ± {:.3} (min {:.3}, max {:.3})",
                r.random.len(),
                node.hook,
                args.seed,
                s.mean,
                s.std,
                s.min,
                s.max
            );
        }
        None => {
            let _ = writeln!(out, "\n  random control: none (--random 0)");
        }
    }
    print!("{out}");
    Ok(())
}

/// A tally as JSON: its counts, rate and mean shift.
fn tally_json(t: &bridge::SteerTally) -> serde_json::Value {
    json!({
        "prompts": t.prompts,
        "toward": t.toward,
        "away": t.away,
        "unchanged": t.unchanged,
        "rate": t.rate(),
        "mean_shift": t.mean_shift,
    })
}

/// Mean, population standard deviation, min and max of the random channels' rates.
#[derive(Clone, Copy)]
struct Spread {
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(xs: &[f64]) -> Option<Spread> {
        if xs.is_empty() {
            return None;
        }
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Some(Spread {
            mean,
            std: var.sqrt(),
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// (task, sparse accuracy, dense accuracy, pairs) for every built-in task both models can score.
type TaskRow = (String, f64, f64, usize);

fn task_eval(pair: &BridgedPair, tok: &Tokenizer, pairs: usize) -> Result<Vec<TaskRow>> {
    if pairs == 0 {
        return Ok(Vec::new());
    }
    let (selected, skipped) =
        super::eval::skip_multi_token_tasks(tasks::registry(), tok, pair.sparse.config.vocab_size);
    for (name, reason) in &skipped {
        eprintln!("note: task {name} skipped: {reason}");
    }
    let sparse = eval::score_tasks(&pair.sparse, tok, &selected, pairs)?;
    let dense = eval::score_tasks(&pair.dense, tok, &selected, pairs)?;
    Ok(sparse
        .into_iter()
        .zip(dense)
        .map(|((name, s), (_, d))| (name, s.accuracy, d.accuracy, s.pairs))
        .collect())
}

fn render(model: &Path, pair: &BridgedPair, corpus: &str, table: &PathTable, tasks: &[TaskRow]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bridged model {} ↔ dense {} ({} sites), {} tokens of {corpus} (held out)\n",
        model.display(),
        pair.dense_dir.display(),
        pair.info.sites,
        table.tokens
    );
    let _ = writeln!(out, "  {:<20} {:<8} {:>8} {:>10}", "path", "site", "CE", "KL(dense‖·)");
    for r in &table.paths {
        let _ = writeln!(
            out,
            "  {:<20} {:<8} {:>8.4} {:>10.4}",
            r.path,
            r.site_label.as_deref().unwrap_or("-"),
            r.ce,
            r.kl
        );
    }
    let _ = writeln!(out, "\n  per-site NMSE");
    let _ = writeln!(
        out,
        "  {:<8} {:<14} {:>14} {:>14}",
        "site", "hook", "enc(dense)→sp", "dec(sparse)→de"
    );
    for s in &table.sites {
        let _ = writeln!(
            out,
            "  {:<8} {:<14} {:>14.4} {:>14.4}",
            s.label, s.hook, s.nmse_encode, s.nmse_decode
        );
    }
    if !tasks.is_empty() {
        let _ = writeln!(out, "\n  task accuracy ({} test pairs each)", tasks[0].3);
        let _ = writeln!(out, "  {:<28} {:>8} {:>8}", "task", "sparse", "dense");
        for (name, s, d, _) in tasks {
            let _ = writeln!(out, "  {name:<28} {s:>8.3} {d:>8.3}");
        }
    }
    out
}

/// What `run --bridge-steer` shows: both models' next-token distributions (and the logit difference) before
/// and after the edit carried through the bridge.
pub struct BridgeSteerReport {
    /// The edits as given.
    pub edits: Vec<String>,
    /// The value each edit sets (None for a scale or `mean`): the number given, or the class mean resolved.
    pub values: Vec<Option<f32>>,
    /// The outcome.
    pub outcome: bridge::SteerOutcome,
    /// The site's hook.
    pub hook: String,
    /// The `--logit-diff`/`--dla` tokens, when two were given.
    pub diff_tokens: Option<(u32, u32)>,
}

/// `NODE=VALUE@POS` / `NODE*=FACTOR@POS` (the spelling) → `NODE@POS=VALUE` / `NODE@POS*=FACTOR` (the
/// spelling `--intervene` reads); anything else unchanged.
fn normalise_spec(spec: &str) -> String {
    let Some((lhs, rhs)) = spec.split_once('=') else {
        return spec.to_string();
    };
    let (node, op) = match lhs.strip_suffix('*') {
        Some(n) => (n, "*="),
        None => (lhs, "="),
    };
    match rhs.rsplit_once('@') {
        Some((value, pos)) if !node.contains('@') => format!("{node}@{pos}{op}{value}"),
        _ => spec.to_string(),
    }
}

/// The node's mean at the last token over `--means-task`'s class-a (`prompt`) or class-b (`prompt_alt`)
/// training prompts: the value the node takes on the task's one class or the other.
fn class_mean(
    args: &super::run::RunArgs,
    model: &crate::model::Gpt,
    tok: Option<&Tokenizer>,
    target: &super::common::HookChannel,
    class_b: bool,
    spec: &str,
) -> Result<f32> {
    use crate::analysis::ablate::TaskData;
    let Some(name) = &args.means_task else {
        bail!("--bridge-steer `{spec}`: class_a/class_b are means over a task's prompts; give --means-task NAME");
    };
    let Some(tok) = tok else {
        bail!("--bridge-steer `{spec}`: the task's prompts need a tokenizer; pass --tokenizer FILE");
    };
    let task = tasks::resolve(name)?;
    let pairs = tasks::split(task.as_ref(), tasks::Split::Train, 64);
    let data = TaskData::new(tok, task.name(), &pairs, model.config.block_size)?;
    let prompts = if class_b { &data.neg } else { &data.pos };
    Ok(bridge::node_mean_at_last(model, prompts, &target.hook, target.channel)?)
}

/// Runs `--bridge-steer` when given.
pub fn steer_report(
    args: &super::run::RunArgs,
    model: &crate::model::Gpt,
    ids: &[u32],
    tok: Option<&Tokenizer>,
    opts: LoadOptions,
) -> Result<Option<BridgeSteerReport>> {
    use super::run::{InterventionSpec, SpecAction};
    if args.bridge_steer.is_empty() {
        return Ok(None);
    }
    let mut specs = Vec::new();
    for raw in &args.bridge_steer {
        let norm = normalise_spec(raw);
        let class = match norm.rsplit_once('=').map(|(_, v)| v.trim()) {
            Some("class_a") => Some(false),
            Some("class_b") => Some(true),
            _ => None,
        };
        let parsed = match class {
            Some(b) => {
                let (lhs, _) = norm.rsplit_once('=').expect("has =");
                let mut spec = InterventionSpec::parse(&format!("{lhs}=0"), model)
                    .with_context(|| format!("--bridge-steer `{raw}`"))?;
                spec.action = SpecAction::Set(class_mean(args, model, tok, &spec.target, b, raw)?);
                spec
            }
            None => InterventionSpec::parse(&norm, model)
                .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace("--intervene", "--bridge-steer")))?,
        };
        specs.push(parsed);
    }
    let means = super::run::means_for(args, model, tok, &specs)?;
    let mut edits = Vec::new();
    let mut site = 0;
    let n_layer = model.config.n_layer;
    for spec in &specs {
        let hook: crate::model::HookName = spec.target.hook.parse()?;
        site = site.max(bridge::site_after(hook, n_layer));
        edits.push((
            spec.target.hook.clone(),
            spec.to_intervention(means.get(&spec.target.hook).map(Vec::as_slice))?,
        ));
    }
    let sparse = load_model(&args.model, opts)?;
    let pair = bridge::open_pair(&args.model, sparse, args.bridge_dense.as_deref(), opts)
        .with_context(|| format!("--bridge-steer: opening the bridges of {}", args.model.display()))?;
    let outcome = bridge::steer(&pair, ids, &edits, site)?;
    let diff_tokens = match (&args.dla, &args.logit_diff) {
        (Some(v), _) | (None, Some(v)) if v.len() == 2 => {
            let vocab = model.config.vocab_size;
            Some((
                super::run::target_token("--logit-diff", &v[0], tok, vocab)?,
                super::run::target_token("--logit-diff", &v[1], tok, vocab)?,
            ))
        }
        _ => None,
    };
    Ok(Some(BridgeSteerReport {
        edits: args.bridge_steer.clone(),
        values: specs
            .iter()
            .map(|s| match s.action {
                SpecAction::Set(v) => Some(v),
                _ => None,
            })
            .collect(),
        hook: bridge::site_hook(site, n_layer).to_string(),
        outcome,
        diff_tokens,
    }))
}

/// Softmax of a logit row.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

impl BridgeSteerReport {
    fn diff(&self, logits: &[f32]) -> Option<f32> {
        self.diff_tokens.map(|(a, b)| logits[a as usize] - logits[b as usize])
    }

    fn model_json(&self, before: &[f32], after: &[f32], tok: Option<&Tokenizer>, k: usize) -> serde_json::Value {
        let top = |logits: &[f32]| {
            super::run::top_k(logits, &softmax(logits), k)
                .into_iter()
                .map(|(id, logit, prob)| {
                    json!({"id": id, "token": super::common::token_text(tok, id), "prob": prob, "logit": logit})
                })
                .collect::<Vec<_>>()
        };
        json!({
            "before": top(before),
            "after": top(after),
            "logit_diff": self.diff_tokens.map(|_| json!({"before": self.diff(before), "after": self.diff(after)})),
        })
    }

    /// The `bridge_steer` object of `run --json`.
    pub fn json(&self, tok: Option<&Tokenizer>) -> serde_json::Value {
        let o = &self.outcome;
        json!({
            "edits": self.edits,
            "values": self.values,
            "site": o.site,
            "site_label": bridge::site_label(o.site),
            "hook": self.hook,
            "tokens": self.diff_tokens.map(|(a, b)| json!([
                {"id": a, "token": super::common::token_text(tok, a)},
                {"id": b, "token": super::common::token_text(tok, b)},
            ])),
            "sparse": self.model_json(&o.sparse_before, &o.sparse_after, tok, 10),
            "dense": self.model_json(&o.dense_before, &o.dense_after, tok, 10),
            "sparse_delta_norm": o.sparse_delta_norm,
            "dense_delta_norm": o.dense_delta_norm,
        })
    }

    /// The text block `run` prints.
    pub fn render(&self, tok: Option<&Tokenizer>, k: usize) -> String {
        use std::fmt::Write;
        let o = &self.outcome;
        let mut out = String::new();
        let last = |v: &[f32]| v.last().copied().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "\nbridge steering: {} → site {} ({}), |Δ sparse| {:.4}, |Δ dense| {:.4} at the last token",
            self.edits.join(", "),
            bridge::site_label(o.site),
            self.hook,
            last(&o.sparse_delta_norm),
            last(&o.dense_delta_norm)
        );
        for (name, before, after) in [
            ("sparse", &o.sparse_before, &o.sparse_after),
            ("dense", &o.dense_before, &o.dense_after),
        ] {
            let (pb, pa) = (softmax(before), softmax(after));
            let _ = writeln!(out, "  {name} model, next token before → after:");
            let tb = super::run::top_k(before, &pb, k);
            let ta = super::run::top_k(after, &pa, k);
            for (b, a) in tb.iter().zip(&ta) {
                let _ = writeln!(
                    out,
                    "    {:>9.5} {:<14} {:>9.5} {:<14}",
                    b.2,
                    format!("{:?}", super::common::token_text(tok, b.0)),
                    a.2,
                    format!("{:?}", super::common::token_text(tok, a.0)),
                );
            }
            if let (Some(db), Some(da)) = (self.diff(before), self.diff(after)) {
                let (ta, tb) = self.diff_tokens.expect("diff implies tokens");
                let _ = writeln!(
                    out,
                    "    logit({:?}) − logit({:?}): {db:+.4} → {da:+.4} ({:+.4})",
                    super::common::token_text(tok, ta),
                    super::common::token_text(tok, tb),
                    da - db
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_spec;

    #[test]
    fn positions_move_before_the_operator() {
        assert_eq!(normalise_spec("0.mlp.post_act[3]=2.5@-1"), "0.mlp.post_act[3]@-1=2.5");
        assert_eq!(normalise_spec("0.mlp.post_act[3]*=2@4"), "0.mlp.post_act[3]@4*=2");
        assert_eq!(
            normalise_spec("0.mlp.post_act[3]@-1=class_b"),
            "0.mlp.post_act[3]@-1=class_b"
        );
        assert_eq!(normalise_spec("0.mlp.post_act[3]=mean"), "0.mlp.post_act[3]=mean");
        assert_eq!(normalise_spec("nonsense"), "nonsense");
    }
}
