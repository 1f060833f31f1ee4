//! `circuitscope circuit`: import the reference viewer's viz_data.pt as a circuit file, and summarise circuit
//! files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::print_json;
use crate::circuit::{import_viz_data, model_fingerprint, BlockId, CircuitFile, CircuitGraph, GraphNode, ImportTarget};
use crate::model::{Checkpoint, Config, ModelFiles};

/// `circuitscope circuit` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CircuitCommand {
    /// Import the reference viewer's viz_data.pt (circuit, losses, edges, samples) as a circuit file.
    ImportViz(ImportVizArgs),
    /// Summarise a circuit file: losses, nodes per block, edges, and the strongest path (with --model).
    Show(ShowArgs),
    /// Sufficiency (the circuit alone, the rest mean-ablated) and necessity (only the circuit ablated) on held-out
    /// pairs; the numbers are stored in the circuit file.
    Check(CheckArgs),
    /// Greedily remove nodes, then weight edges, while the circuit's held-out loss stays at or under the target;
    /// writes the smaller circuit to a new file with what was removed and the loss after each removal.
    Minimize(MinimizeArgs),
}

/// Arguments of `circuitscope circuit minimize`.
#[derive(clap::Args, Debug)]
pub struct MinimizeArgs {
    /// A circuit file.
    pub file: PathBuf,
    /// Where to write the smaller circuit [default: FILE with `.min.json` in place of `.json`].
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
    /// The model directory [default: the path recorded in the circuit file].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The task [default: the circuit's own; a .jsonl task file for a circuit pruned on one].
    #[arg(long)]
    pub task: Option<String>,
    /// Held-out (test split) pairs every loss is measured on.
    #[arg(long, default_value_t = 64)]
    pub pairs: usize,
    /// Ablation means: `scan` or `task`.
    #[arg(long, default_value = "scan")]
    pub means: String,
    /// The loss (raw 2× scale, as `prune --target-loss`) to stay at or under [default: the target the circuit
    /// was pruned to, from its file, or the circuit's loss on these pairs where that is higher].
    #[arg(long)]
    pub target_loss: Option<f64>,
    /// Node sweeps at most (each after the first re-measures the remaining nodes).
    #[arg(long, default_value_t = 3)]
    pub sweeps: usize,
    /// Remove nodes only, no weight edges.
    #[arg(long)]
    pub no_edges: bool,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope circuit check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// A circuit file.
    pub file: PathBuf,
    /// The model directory [default: the path recorded in the circuit file].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Held-out (test split) pairs.
    #[arg(long, default_value_t = 200)]
    pub pairs: usize,
    /// Ablation means: `scan` (the model's corpus scan) or `task` (mean over the task's training prompts).
    #[arg(long, default_value = "scan")]
    pub means: String,
    /// The task to check on: a built-in name or a .jsonl task file [default: the circuit's own task, by name;
    /// a circuit pruned on a .jsonl file needs the file here].
    #[arg(long)]
    pub task: Option<String>,
    /// Print the numbers without storing them in the file.
    #[arg(long)]
    pub no_write: bool,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope circuit import-viz`.
#[derive(clap::Args, Debug)]
pub struct ImportVizArgs {
    /// The viz_data.pt file.
    pub viz_data: PathBuf,
    /// The model directory the circuit belongs to (config + weights).
    #[arg(long)]
    pub model: PathBuf,
    /// Output circuit file.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Task name (default: taken from a `<task>/<sweep>/<k>/viz_data.pt` path, else the parent folder's name).
    #[arg(long)]
    pub task: Option<String>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope circuit show`.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// A circuit file.
    pub file: PathBuf,
    /// The model directory: checks the fingerprint and adds the weight-derived graph (strongest path).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(cmd: CircuitCommand) -> Result<()> {
    match cmd {
        CircuitCommand::ImportViz(a) => run_import(a),
        CircuitCommand::Show(a) => run_show(a),
        CircuitCommand::Check(a) => run_check(a),
        CircuitCommand::Minimize(a) => run_minimize(a),
    }
}

/// A model's config, checkpoint and fingerprint, with config warnings printed.
pub struct LoadedModel {
    /// The model directory (or weights file) as given.
    pub dir: PathBuf,
    /// The model's configuration.
    pub config: Config,
    /// Its weights.
    pub ckpt: Checkpoint,
    /// Its fingerprint, as circuit files record it.
    pub fingerprint: String,
}

/// Locates and opens a model's config and weights (not yet a [`crate::model::Gpt`]), printing config warnings.
pub fn load_model_parts(path: &Path) -> Result<LoadedModel> {
    let files = ModelFiles::locate(path)?;
    let loaded = files.load_config()?;
    for w in &loaded.warnings {
        eprintln!("warning: {}: {w}", files.config.display());
    }
    let ckpt = files.open_checkpoint(&loaded.config)?;
    let fingerprint = model_fingerprint(&ckpt, &loaded.config)?;
    Ok(LoadedModel {
        dir: path.to_path_buf(),
        config: loaded.config,
        ckpt,
        fingerprint,
    })
}

/// The model directory's name (a weights file's folder), after resolving `.` and links.
pub fn model_name(path: &Path) -> Option<String> {
    let p = if path.is_file() { path.parent()? } else { path };
    let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// `<model>/<task>/<sweep>/<k>/viz_data.pt` → task, where k is a number or `k_optim`; else the parent's name.
fn default_task(viz: &Path) -> String {
    let abs = viz.canonicalize().unwrap_or_else(|_| viz.to_path_buf());
    let parents: Vec<String> = abs
        .ancestors()
        .skip(1)
        .take(3)
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    match parents.as_slice() {
        [k, _sweep, task] if k == "k_optim" || k.parse::<u64>().is_ok() => task.clone(),
        [parent, ..] => parent.clone(),
        [] => "unknown".into(),
    }
}

/// Runs the subcommand.
pub fn run_import(a: ImportVizArgs) -> Result<()> {
    if a.out.exists() && !a.force {
        bail!("{} exists; pass --force to overwrite it", a.out.display());
    }
    if !a.viz_data.is_file() {
        bail!("{}: no such file", a.viz_data.display());
    }
    let model = load_model_parts(&a.model)?;
    let task = a.task.clone().unwrap_or_else(|| default_task(&a.viz_data));
    let target = ImportTarget {
        config: &model.config,
        fingerprint: model.fingerprint.clone(),
        name: model_name(&a.model),
        path: Some(a.model.display().to_string()),
    };
    let circuit = import_viz_data(&a.viz_data, &target, &task)?;
    circuit
        .save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    if a.json {
        return print_json(&json!({
            "out": a.out,
            "task": circuit.task,
            "nodes": circuit.nodes.len(),
            "edges": circuit.edges.len(),
            "blocks": circuit.blocks.len(),
            "model_fingerprint": circuit.model.fingerprint,
        }));
    }
    println!(
        "wrote {}: task {}, {} nodes, {} edges, {} blocks (model {})",
        a.out.display(),
        circuit.task,
        circuit.nodes.len(),
        circuit.edges.len(),
        circuit.blocks.len(),
        circuit.model.fingerprint
    );
    Ok(())
}

/// (block name, node count, block delta, [(node id, node delta)]), deltas halved.
type BlockRow = (String, usize, Option<f64>, Vec<(String, Option<f64>)>);

/// Runs the subcommand.
pub fn run_show(a: ShowArgs) -> Result<()> {
    let circuit = CircuitFile::load(&a.file)?;
    let mut strongest = None;
    let mut graph_summary = None;
    if let Some(m) = &a.model {
        let model = load_model_parts(m)?;
        circuit
            .check_model(&model.fingerprint)
            .with_context(|| format!("{}", a.file.display()))?;
        circuit
            .validate(&model.config)
            .with_context(|| format!("{}", a.file.display()))?;
        let g = CircuitGraph::build(&circuit, &model.config, &model.ckpt)?;
        strongest = match g.strongest_weighted_path(&GraphNode::Embed, &GraphNode::Logits)? {
            Some(p) => Some(p),
            None => g.strongest_path(&GraphNode::Embed, &GraphNode::Logits)?,
        };
        graph_summary = Some((g.node_count(), g.edge_count(), g.edge_counts_by_kind()));
    }
    let losses = circuit.losses.halved();
    let by_block = circuit.nodes_by_block();
    let block_rows: Vec<BlockRow> = by_block
        .iter()
        .map(|(b, nodes)| {
            let name = b.map_or_else(|| "final_resid".to_string(), |b: BlockId| b.to_string());
            let delta = b.and_then(|b| {
                circuit
                    .blocks
                    .iter()
                    .find(|x| x.block == b)
                    .map(|x| x.delta_halved(&circuit.losses))
            });
            let ns = nodes
                .iter()
                .map(|n| (n.id.to_string(), n.delta_halved(&circuit.losses)))
                .collect();
            (name, nodes.len(), delta, ns)
        })
        .collect();
    // final_resid (key None) sorts first in the map; show it last.
    let mut block_rows = block_rows;
    if block_rows.first().is_some_and(|r| r.0 == "final_resid") {
        let first = block_rows.remove(0);
        block_rows.push(first);
    }
    if a.json {
        return print_json(&json!({
            "task": circuit.task,
            "source": circuit.source,
            "model": circuit.model,
            "losses_halved": losses,
            "nodes": circuit.nodes.len(),
            "edges": circuit.edges.len(),
            "blocks": block_rows.iter().map(|(name, n, delta, nodes)| json!({
                "block": name,
                "nodes": n,
                "delta_halved": delta,
                "node_deltas_halved": nodes.iter().map(|(id, d)| json!({"id": id, "delta_halved": d})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "graph": graph_summary.as_ref().map(|(n, e, k)| json!({"nodes": n, "edges": e, "by_kind": k})),
            "strongest_path": strongest.as_ref().map(|p| json!({
                "nodes": p.nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                "weights": p.weights,
                "strength": p.strength(),
            })),
        }));
    }
    println!("circuit {} ({})", circuit.task, circuit.source);
    println!(
        "model   {}{} ({} nodes in all)",
        circuit.model.fingerprint,
        circuit.model.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
        circuit.model.num_total_nodes
    );
    let warn = |x: f64| if x >= 0.5 { " (!)" } else { "" };
    println!(
        "loss    before pruning {:.4}, after pruning {:.4}{}",
        losses.full,
        losses.circuit,
        warn(losses.circuit)
    );
    if let Some(c) = losses.calibrated {
        println!("        calibrated {c:.4}");
    }
    if let (Some(s), Some(n)) = (losses.sufficiency, losses.necessity) {
        println!("        sufficiency {s:.4}, necessity {n:.4}");
    }
    println!("        (halved from the raw two-sided losses, as the reference viewer shows them)");
    println!(
        "nodes   {}, edges {} ({} with weights)",
        circuit.nodes.len(),
        circuit.edges.len(),
        circuit.edges.iter().filter(|e| e.weight.is_some()).count()
    );
    for (name, n, delta, nodes) in &block_rows {
        let d = delta.map(|d| format!("ablation delta {d:.4}; ")).unwrap_or_default();
        let mark = if delta.is_some_and(|d| d > 0.3) { " *" } else { "" };
        println!("  {name}: ({d}nodes {n}){mark}");
        for (id, nd) in nodes {
            match nd {
                Some(x) => println!("    {id:<24} Δ {x:+.4}"),
                None => println!("    {id}"),
            }
        }
    }
    if let Some((n, e, kinds)) = &graph_summary {
        println!(
            "graph   {n} vertices, {e} links (edges are its Weight links; {})",
            kinds
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        match &strongest {
            Some(p) => println!(
                "strongest path (max Π|w|, through a weight if any): {p}  [Π|w| = {:.4}]",
                p.strength()
            ),
            None => println!("strongest path: none from the embedding to the logits"),
        }
    }
    Ok(())
}

/// The lock on a circuit file, `<file>.lock`; waits (saying so) while another process holds it.
fn lock_circuit_file(file: &Path) -> Result<crate::fsio::FileLock> {
    use crate::fsio::{FileLock, FsioError};
    let mut lock_path = file.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    match FileLock::try_acquire(&lock_path) {
        Ok(l) => Ok(l),
        Err(FsioError::Locked { pid, .. }) => {
            eprintln!("{}: in use by process {pid}; waiting for it", file.display());
            Ok(FileLock::acquire(&lock_path)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// A circuit file opened with everything measuring it needs: the model, its held-out task pairs and means.
struct Measuring {
    circuit: CircuitFile,
    parts: LoadedModel,
    model: crate::model::Gpt,
    test: crate::analysis::ablate::TaskData,
    means: crate::analysis::ablate::Means,
}

/// Opens `file` and its model (`model`, or the path the file records), builds `pairs` held-out pairs of `task`
/// (or the circuit's own) and the ablation means (`scan` or `task`).
fn open_for_measuring(
    file: &Path,
    model: Option<&Path>,
    task: Option<&str>,
    pairs: usize,
    means: &str,
) -> Result<Measuring> {
    use crate::analysis::ablate::TaskData;
    use crate::data::tasks::{self, Split};
    use crate::model::{Gpt, LoadOptions};

    let circuit = CircuitFile::load(file)?;
    let model_dir = match (model, &circuit.model.path) {
        (Some(m), _) => m.to_path_buf(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => bail!("{}: the circuit names no model path; pass --model DIR", file.display()),
    };
    let parts = load_model_parts(&model_dir)?;
    circuit
        .check_model(&parts.fingerprint)
        .with_context(|| format!("{}", file.display()))?;
    circuit
        .validate(&parts.config)
        .with_context(|| format!("{}", file.display()))?;
    let gpt = Gpt::from_checkpoint(parts.config.clone(), &parts.ckpt, LoadOptions::default())?;
    for w in parts.ckpt.audit(&parts.config, &LoadOptions::default())? {
        eprintln!("warning: {}: {w}", parts.dir.display());
    }
    let Some(tok) = super::common::resolve_tokenizer(None, &model_dir)? else {
        bail!("{}: no tokenizer.json beside the model", model_dir.display());
    };
    let task = match task {
        Some(t) => tasks::resolve(t).with_context(|| format!("--task `{t}`"))?,
        None => tasks::resolve(&circuit.task).with_context(|| {
            format!(
                "{}: the circuit's task `{}` (pass --task FILE.jsonl for a circuit pruned on a task file)",
                file.display(),
                circuit.task
            )
        })?,
    };
    let block = gpt.config.block_size;
    let test = TaskData::new(
        &tok,
        task.name(),
        &tasks::split(task.as_ref(), Split::Test, pairs),
        block,
    )?;
    // Only `--means task` reads these prompts; the scan's means need none.
    let train;
    let means_source = if means == "task" {
        let pairs = tasks::split(task.as_ref(), Split::Train, 256);
        train = TaskData::new(&tok, task.name(), &pairs, block)?;
        &train
    } else {
        &test
    };
    let means = super::prune::load_means(&gpt, means, None, &model_dir, &parts.fingerprint, means_source)?;
    Ok(Measuring {
        circuit,
        parts,
        model: gpt,
        test,
        means,
    })
}

/// Runs the subcommand.
pub fn run_check(a: CheckArgs) -> Result<()> {
    use crate::analysis::ablate::{self, NodeSet};
    use crate::analysis::prune::ablate_edges;
    use crate::model::{Gpt, LoadOptions};

    // Held from the read to the write: a second check of the same file waits, then measures on top of this
    // one's result instead of silently overwriting it with its own older read.
    let _lock = if a.no_write {
        None
    } else {
        Some(lock_circuit_file(&a.file)?)
    };
    let Measuring {
        mut circuit,
        parts,
        model,
        test,
        means,
    } = open_for_measuring(&a.file, a.model.as_deref(), a.task.as_deref(), a.pairs, &a.means)?;
    let nodes = NodeSet::of(&parts.config, &circuit.node_ids());
    let mut check = ablate::check_circuit(&model, &test, &nodes, &means)?;
    if !circuit.removed_edges.is_empty() {
        // Edges taken out of the circuit are ablated when it runs alone; necessity ablates only the circuit's
        // nodes, so the model keeps them there.
        let removed: Vec<_> = circuit.removed_edges.iter().map(|e| (e.source, e.target)).collect();
        let ck = ablate_edges(&parts.ckpt, &parts.config, &removed, &means)?;
        let edited = Gpt::from_checkpoint(parts.config.clone(), &ck, LoadOptions::default())?;
        check.sufficiency = ablate::evaluate(&edited, &test, &nodes.inverted(), &means)?;
    }
    circuit.losses.sufficiency = Some(check.sufficiency.loss);
    circuit.losses.necessity = Some(check.necessity.loss);
    circuit.losses.sufficiency_accuracy = Some(check.sufficiency.accuracy);
    circuit.losses.necessity_accuracy = Some(check.necessity.accuracy);
    circuit.losses.check_pairs = Some(check.pairs);
    if !a.no_write {
        circuit
            .save(&a.file)
            .with_context(|| format!("writing {}", a.file.display()))?;
    }
    if a.json {
        return print_json(&json!({
            "file": a.file,
            "task": circuit.task,
            "nodes": circuit.nodes.len(),
            "pairs": check.pairs,
            "full": check.full,
            "sufficiency": check.sufficiency,
            "necessity": check.necessity,
            "written": !a.no_write,
        }));
    }
    println!(
        "{}: task {}, {} nodes, {} held-out pairs (losses raw 2x scale; halved in brackets)",
        a.file.display(),
        circuit.task,
        circuit.nodes.len(),
        check.pairs
    );
    for (name, e) in [
        ("full model", check.full),
        ("sufficiency (circuit alone)", check.sufficiency),
        ("necessity (circuit ablated)", check.necessity),
    ] {
        println!(
            "  {name:<28} loss {:.4} ({:.4})  accuracy {:.3}",
            e.loss,
            e.loss / 2.0,
            e.accuracy
        );
    }
    if !a.no_write {
        println!("stored in {}", a.file.display());
    }
    Ok(())
}

/// `FILE.json` → `FILE.min.json`.
fn default_minimized_path(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!("{stem}.min.json"))
}

/// Runs `circuit minimize`.
pub fn run_minimize(a: MinimizeArgs) -> Result<()> {
    use crate::analysis::minimize::{self, MinimizeConfig, MinimizeInput, Removal};

    let out = a.out.clone().unwrap_or_else(|| default_minimized_path(&a.file));
    if out == a.file {
        bail!("{}: minimize writes a new file; pass another -o", out.display());
    }
    if out.exists() && !a.force {
        bail!("{}: exists; pass --force to overwrite it", out.display());
    }
    let m = open_for_measuring(&a.file, a.model.as_deref(), a.task.as_deref(), a.pairs, &a.means)?;
    let target = match a.target_loss {
        Some(t) => t,
        None => m
            .circuit
            .prune_config
            .as_ref()
            .and_then(|c| c.get("effective_target").or_else(|| c.pointer("/config/target_loss")))
            .and_then(|v| v.as_f64())
            .with_context(|| {
                format!(
                    "{}: the file records no pruning target; pass --target-loss",
                    a.file.display()
                )
            })?,
    };
    let cfg = MinimizeConfig {
        target_loss: target,
        sweeps: a.sweeps,
        edges: !a.no_edges,
        // The file's own target is met on pruning's training pairs; on these pairs the circuit may sit a little
        // over it, and then it is held where it is. A target given on the command line is a demand.
        hold_if_above: a.target_loss.is_none(),
        ..MinimizeConfig::default()
    };
    let input = MinimizeInput {
        model: &m.model,
        checkpoint: &m.parts.ckpt,
        data: m.test,
        means: &m.means,
    };
    let bar = super::prune::Bar::new(m.circuit.nodes.len() as u64);
    let (smaller, record) =
        minimize::minimize(&input, &m.circuit, &cfg, &bar).with_context(|| format!("{}", a.file.display()))?;
    bar.0.finish_and_clear();
    smaller
        .save(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    if a.json {
        return print_json(&json!({
            "file": a.file,
            "out": out,
            "task": smaller.task,
            "target_loss": record.config.target_loss,
            "pairs": record.pairs,
            "start_loss": record.start_loss,
            "final_loss": record.final_loss,
            "final_accuracy": record.final_accuracy,
            "nodes_before": record.nodes_before,
            "nodes_after": record.nodes_after,
            "edges_before": record.edges_before,
            "edges_after": record.edges_after,
            "removals": record.removals,
            "seconds": record.seconds,
        }));
    }
    let (nodes, edges) = record.removals.iter().fold((0, 0), |(n, e), r| match r {
        Removal::Node { .. } => (n + 1, e),
        Removal::Edge { .. } => (n, e + 1),
    });
    let target = record.config.target_loss;
    println!(
        "{}: task {}, target loss {:.4} ({:.4} halved), {} held-out pairs",
        a.file.display(),
        smaller.task,
        target,
        target / 2.0,
        record.pairs
    );
    println!(
        "  nodes {} -> {} ({nodes} removed in {} sweeps), weight edges {} -> {} ({edges} removed)",
        record.nodes_before, record.nodes_after, record.sweeps_run, record.edges_before, record.edges_after
    );
    println!(
        "  circuit loss {:.4} -> {:.4} ({:.4} -> {:.4} halved), accuracy {:.3}; {:.1} s",
        record.start_loss,
        record.final_loss,
        record.start_loss / 2.0,
        record.final_loss / 2.0,
        record.final_accuracy,
        record.seconds
    );
    println!(
        "wrote {} (run `circuitscope circuit check {}` for sufficiency and necessity)",
        out.display(),
        out.display()
    );
    Ok(())
}
