//! `circuitscope prune`: find a task's circuit by training node masks (spec E) and write it as a circuit file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::circuit::{load_model_parts, model_name};
use super::common::{print_json, resolve_tokenizer};
use crate::analysis::ablate::{self, Means, TaskData};
use crate::analysis::prune::{self, MaskRank, Progress, PruneConfig, PruneInput};
use crate::analysis::scan::ScanIndex;
use crate::circuit::{halved, ModelRef};
use crate::data::tasks::{self, Split};
use crate::model::{Gpt, LoadOptions};

/// Arguments of `circuitscope prune`.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// The model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// A built-in task name (see `tasks list`) or a .jsonl task file of minimal pairs.
    #[arg(long)]
    pub task: String,
    /// Task loss (raw, 2× scale as in `eval`) the circuit must stay under.
    #[arg(long, default_value_t = 0.15)]
    pub target_loss: f64,
    /// Output circuit file [default: circuits/<model name>/<task>.json].
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Where the ablation means come from: `scan` (the model's corpus scan, spec E.2) or `task` (the mean over the
    /// task's training prompts).
    #[arg(long, default_value = "scan")]
    pub means: String,
    /// The scan directory [default: <model>/scan].
    #[arg(long)]
    pub scan: Option<PathBuf>,
    /// Mask-training steps.
    #[arg(long, default_value_t = PruneConfig::default().steps)]
    pub steps: usize,
    /// Weight of the mask-size penalty in the mask-training loss.
    #[arg(long, default_value_t = PruneConfig::default().k_coef)]
    pub k_coef: f64,
    /// Fraction of the steps over which the mask-size penalty ramps up from 0 to --k-coef (0: full from the start).
    #[arg(long, default_value_t = PruneConfig::default().k_anneal_frac)]
    pub k_anneal_frac: f64,
    /// The order in which the bisection adds nodes: by τ averaged over the second half of training, or by final τ.
    #[arg(long, value_enum, default_value_t = PruneConfig::default().rank)]
    pub rank: MaskRank,
    /// Learning rate of the mask training.
    #[arg(long, default_value_t = PruneConfig::default().lr)]
    pub lr: f64,
    /// Task pairs per mask-training step.
    #[arg(long, default_value_t = PruneConfig::default().train_pairs)]
    pub train_pairs: usize,
    /// Held-out pairs for every reported loss.
    #[arg(long, default_value_t = PruneConfig::default().eval_pairs)]
    pub eval_pairs: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prune N times with k-coef, lr and steps drawn around the given ones (seeds seed, seed+1, ...) and keep the
    /// smallest circuit that meets the target on the held-out pairs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub search: usize,
    /// With --search: runs at a time, each a process with its share of the cores.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A progress bar on stderr for a prune-like run; phase lines instead when stderr is no terminal.
pub(crate) struct Bar(pub(crate) indicatif::ProgressBar);

impl Bar {
    /// A bar of `len` steps in the first phase.
    pub(crate) fn new(len: u64) -> Self {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>14} {bar:30} {pos}/{len} {msg} [{elapsed_precise}]")
                .expect("valid template"),
        );
        Bar(bar)
    }
}

impl Progress for Bar {
    fn phase(&self, name: &str, len: u64) {
        if self.0.is_hidden() {
            // No terminal: phase lines still show where a long run is.
            eprintln!("{name} ({:.1} s)", self.0.elapsed().as_secs_f64());
        }
        self.0.set_prefix(name.to_string());
        self.0.set_length(len);
        self.0.set_position(0);
    }
    fn note(&self, msg: &str) {
        if self.0.is_hidden() {
            eprintln!("  {msg}");
        }
    }
    fn step(&self, msg: &str) {
        self.0.set_message(msg.to_string());
        self.0.inc(1);
    }
}

/// The ablation means for `model` from its scan (or the task's prompts).
pub fn load_means(
    model: &Gpt,
    source: &str,
    scan_dir: Option<&std::path::Path>,
    model_dir: &std::path::Path,
    fingerprint: &str,
    task_data: &TaskData,
) -> Result<Means> {
    match source {
        "task" => {
            let seqs: Vec<Vec<u32>> = task_data.pos.iter().chain(&task_data.neg).cloned().collect();
            Ok(ablate::means_over(model, &seqs)?)
        }
        "scan" => {
            let dir = scan_dir.map_or_else(|| ScanIndex::default_dir(model_dir), |d| d.to_path_buf());
            if !dir.join("index.json").exists() {
                bail!(
                    "{}: no scan; run `circuitscope scan --model {}` first, or pass --means task",
                    dir.display(),
                    model_dir.display()
                );
            }
            let index = ScanIndex::open_for(&dir, fingerprint)?;
            let mut means = Means::new();
            for hook in ablate::node_hooks(&model.config).into_iter().map(|h| h.name) {
                let m = index
                    .hook_means(&hook)
                    .with_context(|| format!("{}: the scan has no means for hook {hook}", dir.display()))?;
                means.insert(hook, m);
            }
            Ok(means)
        }
        other => bail!("--means {other}: expected `scan` or `task`"),
    }
}

/// Runs the subcommand.
pub fn run(a: PruneArgs) -> Result<()> {
    let task = tasks::resolve(&a.task)?;
    let parts = load_model_parts(&a.model)?;
    let model = Gpt::from_checkpoint(parts.config.clone(), &parts.ckpt, LoadOptions::default())?;
    for w in parts.ckpt.audit(&parts.config, &LoadOptions::default())? {
        eprintln!("warning: {}: {w}", parts.dir.display());
    }
    let Some(tok) = resolve_tokenizer(None, &a.model)? else {
        bail!("{}: no tokenizer.json beside the model", a.model.display());
    };
    let name = model_name(&a.model).unwrap_or_else(|| "model".into());
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("circuits")
            .join(&name)
            .join(format!("{}.json", task.name()))
    });
    if out.exists() && !a.force {
        bail!("{} exists; pass --force to overwrite it", out.display());
    }
    if a.search > 0 {
        return super::prune_search::run(&a, &out);
    }
    let cfg = PruneConfig {
        target_loss: a.target_loss,
        steps: a.steps,
        k_coef: a.k_coef,
        k_anneal_frac: a.k_anneal_frac,
        rank: a.rank,
        lr: a.lr,
        train_pairs: a.train_pairs,
        eval_pairs: a.eval_pairs,
        seed: a.seed,
        ..PruneConfig::default()
    };
    let block = model.config.block_size;
    let train = TaskData::new(
        &tok,
        task.name(),
        &tasks::split(task.as_ref(), Split::Train, cfg.train_pairs),
        block,
    )?;
    let test = TaskData::new(
        &tok,
        task.name(),
        &tasks::split(task.as_ref(), Split::Test, cfg.eval_pairs),
        block,
    )?;
    let means = load_means(
        &model,
        &a.means,
        a.scan.as_deref(),
        &a.model,
        &parts.fingerprint,
        &train,
    )?;
    let input = PruneInput {
        model: &model,
        checkpoint: &parts.ckpt,
        model_ref: ModelRef {
            fingerprint: parts.fingerprint.clone(),
            name: Some(name),
            path: Some(a.model.display().to_string()),
            num_total_nodes: parts.config.num_nodes(),
        },
        train,
        test,
        means: &means,
    };
    let bar = Bar::new(cfg.steps as u64);
    let (mut circuit, summary) = prune::prune(&input, &cfg, &bar)?;
    bar.0.finish_and_clear();
    if let Some(c) = circuit.prune_config.as_mut() {
        c["means"] = json!(a.means);
    }
    save_circuit(&circuit, &out)?;
    if a.json {
        return print_json(&json!({
            "out": out,
            "task": circuit.task,
            "nodes": summary.nodes,
            "edges": summary.edges,
            "target_loss": summary.target_loss,
            "effective_target": summary.effective_target,
            "losses": summary.losses,
            "seconds": summary.seconds,
        }));
    }
    let l = &summary.losses;
    println!(
        "wrote {}: task {}, {} of {} nodes, {} edges, in {:.1} s",
        out.display(),
        circuit.task,
        summary.nodes,
        circuit.model.num_total_nodes,
        summary.edges,
        summary.seconds
    );
    println!(
        "task loss (halved, held-out): full model {:.4}, circuit {:.4}, calibrated {:.4}; accuracy full {:.3}, circuit {:.3}",
        halved(l.full),
        halved(l.circuit),
        halved(l.calibrated.unwrap_or(f64::NAN)),
        l.full_accuracy.unwrap_or(f64::NAN),
        l.circuit_accuracy.unwrap_or(f64::NAN)
    );
    if summary.effective_target > summary.target_loss {
        println!(
            "note: the full model's own loss on the training pairs is above the target {:.4}; the circuit was held to \
             the full model's loss, {:.4}, instead",
            summary.target_loss, summary.effective_target
        );
    }
    Ok(())
}

/// Writes a pruned circuit to `out`, creating its folder.
pub(super) fn save_circuit(circuit: &crate::circuit::CircuitFile, out: &std::path::Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    circuit.save(out).with_context(|| format!("writing {}", out.display()))
}
