//! `circuitscope attribute`: the exact attribution graph of one prompt (or of a task pair's clean prompt),
//! pruned by influence on the target, written as Neuronpedia's graph JSON; for a task pair also attribution
//! patching beside activation patching. `attribute show FILE` reads a graph file back.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::common::{load_model, print_json, resolve_tokenizer, token_text, LoadChecks};
use crate::analysis::attribution::check::{check_pair, important_nodes, TaskCheck};
use crate::analysis::attribution::patching::{compare, PatchReport};
use crate::analysis::attribution::{build, prune, AttrNode, NodeKind, PruneOptions, TargetSpec, Targets};
use crate::data::tasks::{self, Split};
use crate::export::neuronpedia::{self, ExportInfo, GraphFile};
use crate::model::LoadOptions;
use crate::session::Session;
use crate::tokenize::Tokenizer;

/// Arguments of `circuitscope attribute`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AttributeArgs {
    /// `show FILE`: read a graph file back.
    #[command(subcommand)]
    pub command: Option<AttributeCommand>,
    /// Model directory.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// What loading checks and allows.
    #[command(flatten)]
    pub checks: LoadChecks,
    /// The prompt.
    #[arg(long, conflicts_with_all = ["ids", "task"])]
    pub prompt: Option<String>,
    /// The prompt as token ids, e.g. 5,17,2 (for models without a tokenizer).
    #[arg(long, value_delimiter = ',', conflicts_with = "task")]
    pub ids: Option<Vec<u32>>,
    /// A task (built-in name or .jsonl file): its pair `--pair` gives the prompt, the target and alt, and the
    /// corrupted prompt for attribution patching.
    #[arg(long, requires = "pair")]
    pub task: Option<String>,
    /// Which pair of the task's split (0-based, as `tasks show NAME --split test` lists them).
    #[arg(long, requires = "task")]
    pub pair: Option<usize>,
    /// The task split the pair comes from.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// The target: a token, or `TOKEN,ALT` for the difference of two logits; a token is its text or `#ID`.
    /// Default: the task's target and alt, or the top logits covering 0.95 of the probability (at most 10).
    #[arg(long)]
    pub target: Option<String>,
    /// Keep the nodes carrying this share of the influence on the target.
    #[arg(long, default_value_t = 0.8)]
    pub node_threshold: f32,
    /// Keep the edges carrying this share of the influence.
    #[arg(long, default_value_t = 0.98)]
    pub edge_threshold: f32,
    /// Write the pruned graph as Neuronpedia graph JSON here (`-` for standard output).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Nodes listed in the summary.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// With --task: the most nodes compared by attribution and activation patching (those whose values differ
    /// most between the two prompts); 0 skips the comparison.
    #[arg(long, default_value_t = 500)]
    pub max_patch: usize,
    /// tokenizer.json to use instead of the model directory's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A session file whose labels become the exported nodes' labels (`clerp`), and whose Attribution pins and
    /// supernodes on this same prompt become the file's `qParams`.
    #[arg(long)]
    pub session: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `circuitscope attribute` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum AttributeCommand {
    /// Read a graph file (Neuronpedia graph JSON) back and summarise it.
    Show(ShowArgs),
    /// Over a task's pairs: attribution against activation patching (Spearman), and how many of the task
    /// circuit's important nodes the pruned graphs hold.
    Check(CheckArgs),
    /// Bring a graph file made by circuitscope into a session: its prompt becomes the lab's, its pinned nodes
    /// and supernodes the Attribution screen's (tab 9 of `open --session FILE` then shows them).
    Import(ImportArgs),
}

/// Arguments of `circuitscope attribute import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The graph file (Neuronpedia graph JSON written by `attribute -o` or shared by another analyst).
    pub file: PathBuf,
    /// The session to import into (it must exist: `open --session FILE` makes one); written atomically.
    #[arg(long)]
    pub session: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope attribute check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// What loading checks and allows.
    #[command(flatten)]
    pub checks: LoadChecks,
    /// Tasks (built-in names or .jsonl files), comma-separated. Default: every task with a circuit file in
    /// --circuits.
    #[arg(long, value_delimiter = ',')]
    pub tasks: Option<Vec<String>>,
    /// Pairs per task (the first N of the split).
    #[arg(long, default_value_t = 20)]
    pub pairs: usize,
    /// The task split the pairs come from.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Folder of circuit files `<task>.json` (default: assets/circuits/<model dir name>); a task without one is
    /// checked without the recovery column.
    #[arg(long)]
    pub circuits: Option<PathBuf>,
    /// Keep the nodes carrying this share of the influence on the target.
    #[arg(long, default_value_t = 0.8)]
    pub node_threshold: f32,
    /// Keep the edges carrying this share of the influence.
    #[arg(long, default_value_t = 0.98)]
    pub edge_threshold: f32,
    /// The most nodes compared by attribution and activation patching per pair (those whose values differ most).
    #[arg(long, default_value_t = 500)]
    pub max_patch: usize,
    /// tokenizer.json to use instead of the model directory's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope attribute show`.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The graph file.
    pub file: PathBuf,
    /// Nodes listed.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: AttributeArgs) -> Result<()> {
    match &args.command {
        Some(AttributeCommand::Show(s)) => show(s),
        Some(AttributeCommand::Check(c)) => check(c),
        Some(AttributeCommand::Import(i)) => import(i),
        None => attribute(&args),
    }
}

/// A token quoted for the text output, with whitespace and control characters visible.
fn shown(tok: Option<&Tokenizer>, id: u32) -> String {
    format!("\"{}\"", crate::tokenize::escape_token(&token_text(tok, id)))
}

/// A token given as `#ID` or as text that is one token.
fn parse_token(s: &str, tok: Option<&Tokenizer>) -> Result<u32> {
    if let Some(id) = s.strip_prefix('#') {
        return id.parse().with_context(|| format!("`{s}`: not a token id after `#`"));
    }
    let Some(tok) = tok else {
        bail!("`{s}`: no tokenizer to read a token's text with; give it as #ID");
    };
    let ids = tok.encode(s)?;
    match ids.as_slice() {
        [id] => Ok(*id),
        _ => bail!("`{s}` is {} tokens, not one (give a single token, or #ID)", ids.len()),
    }
}

/// `TOKEN` or `TOKEN,ALT` (a lone `,` is the comma token).
fn parse_target(s: &str, tok: Option<&Tokenizer>) -> Result<TargetSpec> {
    let (a, b) = match s.get(1..).and_then(|rest| rest.find(',')) {
        Some(i) => (&s[..i + 1], Some(&s[i + 2..])),
        None => (s, None),
    };
    Ok(TargetSpec {
        token: parse_token(a, tok)?,
        alt: b.map(|b| parse_token(b, tok)).transpose()?,
        weight: 1.0,
    })
}

/// A task pair's metric: logit(target) − logit(alt), or logit(target) alone.
type Metric = (u32, Option<u32>);

/// The prompt, its ids, the targets and (for a task pair) the corrupted ids and the pair's metric.
struct Input {
    prompt: String,
    ids: Vec<u32>,
    targets: Targets,
    corrupt: Option<(Vec<u32>, Metric)>,
}

fn input(args: &AttributeArgs, tok: Option<&Tokenizer>) -> Result<Input> {
    let encode = |text: &str| -> Result<Vec<u32>> {
        match tok {
            Some(t) => Ok(t.encode(text)?),
            None => bail!("no tokenizer.json beside the model; give --tokenizer, or --ids"),
        }
    };
    let given = args.target.as_deref().map(|t| parse_target(t, tok)).transpose()?;
    let given_or = |default: Targets| match given {
        Some(t) => Targets::Given(vec![t]),
        None => default,
    };
    if let (Some(name), Some(n)) = (&args.task, args.pair) {
        let task = tasks::resolve(name)?;
        let pairs = tasks::split(task.as_ref(), args.split, n + 1);
        let Some(pair) = pairs.get(n) else {
            bail!(
                "task {name} has {} pairs in its {:?} split; --pair {n} is past them",
                pairs.len(),
                args.split
            );
        };
        let (ids, metric, corrupt) = pair_ids(pair, tok)?;
        let targets = given_or(Targets::Given(vec![TargetSpec {
            token: metric.0,
            alt: metric.1,
            weight: 1.0,
        }]));
        return Ok(Input {
            prompt: pair.prompt.clone(),
            ids,
            targets,
            corrupt: corrupt.map(|c| (c, metric)),
        });
    }
    let (prompt, ids) = match (&args.prompt, &args.ids) {
        (Some(p), _) => (p.clone(), encode(p)?),
        (None, Some(ids)) => (
            tok.map(|t| t.decode(ids)).unwrap_or_else(|| format!("{ids:?}")),
            ids.clone(),
        ),
        (None, None) => bail!("give --prompt TEXT, --ids IDS, or --task NAME --pair N"),
    };
    Ok(Input {
        prompt,
        ids,
        targets: given_or(Targets::default()),
        corrupt: None,
    })
}

/// A task pair's clean ids, metric, and corrupted ids (none for a one-sided pair).
fn pair_ids(pair: &tasks::TaskPair, tok: Option<&Tokenizer>) -> Result<(Vec<u32>, Metric, Option<Vec<u32>>)> {
    let Some(t) = tok else {
        bail!("no tokenizer.json beside the model; give --tokenizer");
    };
    let ids = t.encode(&pair.prompt)?;
    let a = parse_token(&pair.target, tok).context("the pair's target")?;
    let b = pair
        .alt
        .as_deref()
        .map(|b| parse_token(b, tok).context("the pair's alt"))
        .transpose()?;
    let corrupt = (!pair.is_one_sided()).then(|| t.encode(&pair.prompt_alt)).transpose()?;
    Ok((ids, (a, b), corrupt))
}

/// The session's label of a channel node, if it has one.
fn session_label(n: &AttrNode, session: Option<&Session>) -> Option<String> {
    let a = session?.annotations.get(&n.channel()?)?;
    (!a.label.is_empty()).then(|| a.label.clone())
}

/// The session's pins and supernodes for the export, when they are of this prompt: only ids the kept graph has.
fn session_pins(session: Option<&Session>, prompt: &str, kept: &[String]) -> (Vec<String>, Vec<Vec<String>>) {
    let Some(pins) = session.map(|s| &s.attribution).filter(|p| p.prompt == prompt) else {
        return (Vec::new(), Vec::new());
    };
    let known = |id: &&String| kept.contains(id);
    let pinned = pins.pinned.iter().filter(known).cloned().collect();
    let supernodes = pins
        .supernodes
        .iter()
        .map(|g| {
            std::iter::once(g.name.clone())
                .chain(g.nodes.iter().filter(known).cloned())
                .collect::<Vec<_>>()
        })
        .filter(|g| g.len() > 1)
        .collect();
    (pinned, supernodes)
}

/// The label of a node in the file: token text for embeddings and logits.
fn label(n: &AttrNode, ids: &[u32], tok: Option<&Tokenizer>) -> String {
    match &n.kind {
        NodeKind::Embedding { token } => format!("Emb: {}", token_text(tok, *token)),
        NodeKind::Position => format!("Pos {}", n.pos),
        NodeKind::Bigram { token } => format!("Bigram after {}", token_text(tok, *token)),
        NodeKind::Logit { token, alt, weight } => match alt {
            Some(a) => format!("Output {} − {}", token_text(tok, *token), token_text(tok, *a)),
            None => format!("Output {} (p={weight:.3})", token_text(tok, *token)),
        },
        NodeKind::Channel { .. } => format!("at {}", token_text(tok, ids[n.pos])),
    }
}

fn check_thresholds(node: f32, edge: f32) -> Result<PruneOptions> {
    for (name, v) in [("--node-threshold", node), ("--edge-threshold", edge)] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{name} {v}: a share between 0 and 1");
        }
    }
    Ok(PruneOptions {
        node_threshold: node,
        edge_threshold: edge,
    })
}

fn attribute(args: &AttributeArgs) -> Result<()> {
    let Some(model_dir) = &args.model else {
        bail!("give --model DIR (or `attribute show FILE` to read a graph file)");
    };
    let opts = check_thresholds(args.node_threshold, args.edge_threshold)?;
    let session = match &args.session {
        Some(path) => Some(
            crate::session::store::load(path)?
                .with_context(|| format!("--session {}: no such session file", path.display()))?,
        ),
        None => None,
    };
    let model = load_model(model_dir, args.checks.apply(LoadOptions::default()))?;
    let tok = resolve_tokenizer(args.tokenizer.as_deref(), model_dir)?;
    let inp = input(args, tok.as_ref())?;
    let t0 = Instant::now();
    let g = build(&model, &inp.ids, &inp.targets).with_context(|| format!("attributing on {}", model_dir.display()))?;
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let p = prune(&g, opts);
    let prune_ms = t1.elapsed().as_secs_f64() * 1e3;
    let model_name = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut written = None;
    if let Some(out) = &args.output {
        let ids = inp.ids.clone();
        let labeler = |n: &AttrNode| session_label(n, session.as_ref()).unwrap_or_else(|| label(n, &ids, tok.as_ref()));
        let kept: Vec<String> = (0..g.nodes.len())
            .filter(|&i| p.keep_node[i])
            .map(|i| g.nodes[i].id())
            .collect();
        let (pinned, supernodes) = session_pins(session.as_ref(), &inp.prompt, &kept);
        let file = neuronpedia::to_file(
            &g,
            &p,
            ExportInfo {
                slug: format!("circuitscope-{model_name}"),
                scan: model_name.clone(),
                prompt: inp.prompt.clone(),
                prompt_tokens: inp.ids.iter().map(|&i| token_text(tok.as_ref(), i)).collect(),
                label: &labeler,
                opts,
                top: match &inp.targets {
                    Targets::Top { cover, max } => Some((*max, *cover)),
                    Targets::Given(_) => None,
                },
                pinned,
                supernodes,
            },
        );
        let bytes = serde_json::to_vec(&file)?;
        crate::fsio::write_atomic(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        written = Some((out.clone(), bytes.len()));
    }
    let patching = match (&inp.corrupt, args.max_patch) {
        (Some((corrupt, metric)), n) if n > 0 => {
            Some(compare(&model, &inp.ids, corrupt, *metric, n).context("attribution patching on the task pair")?)
        }
        _ => None,
    };
    let mut order: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| p.keep_node[i] && g.nodes[i].channel().is_some())
        .collect();
    order.sort_by(|&a, &b| p.influence[b].total_cmp(&p.influence[a]));
    order.truncate(args.top);
    let tok = tok.as_ref();
    let targets: Vec<Value> = g
        .logit_nodes()
        .into_iter()
        .map(|i| {
            let n = &g.nodes[i];
            let NodeKind::Logit { token, alt, weight } = n.kind else {
                unreachable!("logit_nodes gives logit nodes")
            };
            json!({
                "token": token, "alt": alt, "token_text": token_text(tok, token),
                "alt_text": alt.map(|a| token_text(tok, a)), "weight": weight, "logit": n.activation,
            })
        })
        .collect();
    let top_nodes: Vec<Value> = order
        .iter()
        .map(|&i| {
            let n = &g.nodes[i];
            json!({
                "id": n.id(), "influence": p.influence[i], "activation": n.activation,
                "token_text": token_text(tok, g.ids[n.pos]),
            })
        })
        .collect();
    let out = json!({
        "model": model_dir.display().to_string(),
        "prompt": inp.prompt,
        "tokens": g.ids.len(),
        "targets": targets,
        "full_nodes": g.nodes.len(),
        "full_edges": g.edges.len(),
        "kept_nodes": p.kept_nodes(),
        "kept_edges": p.kept_edges(),
        "completeness": p.completeness,
        "node_influence_kept": p.node_influence_kept,
        "node_threshold": args.node_threshold,
        "edge_threshold": args.edge_threshold,
        "build_ms": build_ms,
        "prune_ms": prune_ms,
        "top_nodes": top_nodes,
        "output": written.as_ref().map(|(p, _)| p.display().to_string()),
        "output_bytes": written.as_ref().map(|(_, n)| n),
        "patching": patching.as_ref().map(|r| patching_json(r, args.top)),
    });
    if args.json {
        return print_json(&out);
    }
    println!("attribution graph of {} on {} tokens", model_dir.display(), g.ids.len());
    for i in g.logit_nodes() {
        let n = &g.nodes[i];
        if let NodeKind::Logit { token, alt, weight } = n.kind {
            let name = match alt {
                Some(a) => format!("{} − {}", shown(tok, token), shown(tok, a)),
                None => shown(tok, token),
            };
            println!("  target {name:<24} logit {:>9.4}  weight {weight:.3}", n.activation);
        }
    }
    println!(
        "nodes {} → {} kept, edges {} → {} kept; completeness {:.3} (node influence kept {:.3})",
        g.nodes.len(),
        p.kept_nodes(),
        g.edges.len(),
        p.kept_edges(),
        p.completeness,
        p.node_influence_kept
    );
    println!("time: graph {build_ms:.1} ms, pruning {prune_ms:.1} ms");
    println!("{:>10} {:>11}  {:<28} token", "influence", "activation", "node");
    for &i in &order {
        let n = &g.nodes[i];
        println!(
            "{:>10.4} {:>11.4}  {:<28} {}",
            p.influence[i],
            n.activation,
            n.id(),
            shown(tok, g.ids[n.pos])
        );
    }
    if let Some(r) = &patching {
        print_patching(r, args.top);
    }
    if let Some((path, n)) = written {
        println!("wrote {} ({n} bytes)", path.display());
    }
    Ok(())
}

fn patching_json(r: &PatchReport, top: usize) -> Value {
    json!({
        "metric_clean": r.metric_clean,
        "metric_corrupt": r.metric_corrupt,
        "differing_nodes": r.differing,
        "compared_nodes": r.nodes.len(),
        "spearman": r.spearman,
        "spearman_abs": r.spearman_abs,
        "nodes": r.nodes.iter().take(top).map(|n| json!({
            "id": n.node.to_string(), "clean": n.clean, "corrupt": n.corrupt,
            "attribution": n.attribution, "patching": n.patching,
        })).collect::<Vec<_>>(),
    })
}

fn print_patching(r: &PatchReport, top: usize) {
    println!(
        "attribution vs activation patching: metric clean {:.4}, corrupt {:.4}; {} nodes compared of {} that differ",
        r.metric_clean,
        r.metric_corrupt,
        r.nodes.len(),
        r.differing
    );
    println!(
        "  Spearman {:.3} (signed), {:.3} (magnitudes)",
        r.spearman, r.spearman_abs
    );
    println!("{:>12} {:>12}  node", "patching", "attribution");
    for n in r.nodes.iter().take(top) {
        println!("{:>12.4} {:>12.4}  {}", n.patching, n.attribution, n.node);
    }
}

fn read_file(path: &Path) -> Result<GraphFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    neuronpedia::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn show(args: &ShowArgs) -> Result<()> {
    let f = read_file(&args.file)?;
    let mut nodes: Vec<&neuronpedia::GraphNode> = f.nodes.iter().collect();
    nodes.sort_by(|a, b| b.influence.unwrap_or(0.0).total_cmp(&a.influence.unwrap_or(0.0)));
    let extras = f.metadata.circuitscope.as_ref();
    let targets: Vec<&neuronpedia::GraphNode> = f.nodes.iter().filter(|n| n.is_target_logit == Some(true)).collect();
    let top: Vec<&&neuronpedia::GraphNode> = nodes
        .iter()
        .filter(|n| n.feature_type != "logit")
        .take(args.top)
        .collect();
    if args.json {
        return print_json(&json!({
            "file": args.file.display().to_string(),
            "slug": f.metadata.slug,
            "scan": f.metadata.scan,
            "prompt": f.metadata.prompt,
            "tokens": f.metadata.prompt_tokens.len(),
            "nodes": f.nodes.len(),
            "links": f.links.len(),
            "completeness": extras.map(|x| x.completeness),
            "targets": targets.iter().map(|n| json!({"id": n.node_id, "label": n.clerp, "activation": n.activation})).collect::<Vec<_>>(),
            "top_nodes": top.iter().map(|n| json!({"id": n.node_id, "influence": n.influence, "activation": n.activation, "label": n.clerp})).collect::<Vec<_>>(),
            "pinned": f.q_params.pinned_ids,
            "supernodes": f.q_params.supernodes,
        }));
    }
    println!(
        "{}: graph {} of {}",
        args.file.display(),
        f.metadata.slug,
        f.metadata.scan
    );
    println!(
        "prompt ({} tokens): {:?}",
        f.metadata.prompt_tokens.len(),
        f.metadata.prompt
    );
    print!("{} nodes, {} links", f.nodes.len(), f.links.len());
    match extras {
        Some(x) => println!(
            " (of {} and {}); completeness {:.3}",
            x.full_nodes, x.full_edges, x.completeness
        ),
        None => println!(),
    }
    for n in &targets {
        println!("  target {} {}", n.node_id, n.clerp);
    }
    println!("{:>10} {:>11}  {:<28} label", "influence", "activation", "node");
    for n in top {
        println!(
            "{:>10.4} {:>11.4}  {:<28} {}",
            n.influence.unwrap_or(f64::NAN),
            n.activation.unwrap_or(f64::NAN),
            n.node_id,
            n.clerp
        );
    }
    if !f.q_params.pinned_ids.is_empty() {
        println!("pinned: {}", f.q_params.pinned_ids.join(", "));
    }
    for s in &f.q_params.supernodes {
        if let Some((name, ids)) = s.split_first() {
            println!("supernode {name}: {}", ids.join(", "));
        }
    }
    Ok(())
}

/// The tasks `check` runs: those given, else every `<task>.json` in the circuits folder.
fn check_tasks(args: &CheckArgs, circuits: &Path) -> Result<Vec<String>> {
    if let Some(t) = &args.tasks {
        return Ok(t.clone());
    }
    let entries = std::fs::read_dir(circuits).with_context(|| {
        format!(
            "{}: no circuits folder to take the tasks from; give --tasks or --circuits",
            circuits.display()
        )
    })?;
    let mut names = Vec::new();
    for e in entries {
        let path = e.with_context(|| format!("reading {}", circuits.display()))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(task) = name.strip_suffix(".json").filter(|t| !t.contains('.')) {
            names.push(task.to_string());
        }
    }
    names.sort();
    if names.is_empty() {
        bail!("{}: no <task>.json circuit files; give --tasks", circuits.display());
    }
    Ok(names)
}

fn check(args: &CheckArgs) -> Result<()> {
    let opts = check_thresholds(args.node_threshold, args.edge_threshold)?;
    if args.pairs == 0 {
        bail!("--pairs 0: check at least one pair");
    }
    let model = load_model(&args.model, args.checks.apply(LoadOptions::default()))?;
    let fingerprint = super::circuit::load_model_parts(&args.model)?.fingerprint;
    let tok = resolve_tokenizer(args.tokenizer.as_deref(), &args.model)?;
    let circuits = args.circuits.clone().unwrap_or_else(|| {
        let task_file = crate::workbench::open::OpenOptions::default_circuit(&args.model, "task");
        task_file.parent().map(Path::to_path_buf).unwrap_or_default()
    });
    let names = check_tasks(args, &circuits)?;
    let mut rows = Vec::new();
    for name in &names {
        let task = tasks::resolve(name)?;
        let circuit_path = circuits.join(format!("{name}.json"));
        let important = match circuit_path.exists() {
            true => {
                let c = crate::circuit::CircuitFile::load(&circuit_path)
                    .with_context(|| format!("reading {}", circuit_path.display()))?;
                c.check_model(&fingerprint)
                    .with_context(|| format!("{}", circuit_path.display()))?;
                Some(important_nodes(&c))
            }
            false => None,
        };
        let pairs = tasks::split(task.as_ref(), args.split, args.pairs);
        let bar = indicatif::ProgressBar::new(pairs.len() as u64).with_prefix(name.clone());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>28} {bar:30} {pos}/{len} pairs [{elapsed_precise}]")
                .expect("valid template"),
        );
        let mut checks = Vec::with_capacity(pairs.len());
        for (i, pair) in pairs.iter().enumerate() {
            let (ids, metric, corrupt) = pair_ids(pair, tok.as_ref()).with_context(|| format!("{name} pair {i}"))?;
            let corrupt = corrupt.filter(|c| c.len() == ids.len());
            checks.push(
                check_pair(&model, &ids, corrupt.as_deref(), metric, args.max_patch, opts)
                    .with_context(|| format!("{name} pair {i}"))?,
            );
            bar.inc(1);
        }
        bar.finish_and_clear();
        rows.push((
            name.clone(),
            circuit_path,
            TaskCheck {
                pairs: checks,
                important,
            },
        ));
    }
    let json_rows: Vec<Value> = rows
        .iter()
        .map(|(name, path, t)| task_check_json(name, path, t))
        .collect();
    if args.json {
        return print_json(&json!({
            "model": args.model.display().to_string(),
            "split": format!("{:?}", args.split).to_lowercase(),
            "pairs": args.pairs,
            "node_threshold": args.node_threshold,
            "edge_threshold": args.edge_threshold,
            "max_patch": args.max_patch,
            "tasks": json_rows,
        }));
    }
    println!(
        "attribution check of {} on {} pairs per task ({:?} split), node threshold {}, edge threshold {}",
        args.model.display(),
        args.pairs,
        args.split,
        args.node_threshold,
        args.edge_threshold
    );
    println!(
        "{:<28} {:>7} {:>15} {:>15} {:>9} {:>10} {:>9} {:>6} {:>7}",
        "task", "pairs", "Spearman", "|Spearman|", "important", "recovered", "union", "kept", "compl."
    );
    let fmt2 = |x: Option<(f64, f64)>| x.map_or("-".to_string(), |(m, d)| format!("{m:.3} ({d:.3})"));
    for (name, _, t) in &rows {
        let s = t.spearman_summary();
        let imp = t.important.as_ref().filter(|i| !i.nodes.is_empty());
        let rec = t.recovery();
        let n = t.pairs.len() as f64;
        let patched = format!(
            "{}/{}",
            t.pairs.iter().filter(|p| p.spearman.is_some()).count(),
            t.pairs.len()
        );
        println!(
            "{:<28} {:>7} {:>15} {:>15} {:>9} {:>10} {:>9} {:>6.0} {:>7.3}",
            name,
            patched,
            fmt2(s.map(|s| s[0])),
            fmt2(s.map(|s| s[1])),
            imp.map_or("-".into(), |i| format!("{}+{}qk", i.nodes.len(), i.excluded_qk)),
            rec.map_or("-".into(), |r| format!("{:.3}", r.0)),
            rec.map_or("-".into(), |r| format!("{:.3}", r.1)),
            t.pairs.iter().map(|p| p.kept_nodes as f64).sum::<f64>() / n,
            t.pairs.iter().map(|p| p.completeness).sum::<f64>() / n,
        );
    }
    println!("pairs: patched/all (patching needs a corrupted prompt of the same length); Spearman: mean (median) over");
    println!("the patched pairs; important: the circuit's nodes above its median ablation delta");
    println!(
        "(+ queries and keys, which graphs freeze); recovered: mean share per pair; union: over all pairs' graphs"
    );
    Ok(())
}

fn task_check_json(name: &str, circuit: &Path, t: &TaskCheck) -> Value {
    let s = t.spearman_summary();
    let imp = t.important.as_ref();
    let rec = t.recovery();
    let n = t.pairs.len() as f64;
    json!({
        "task": name,
        "circuit": imp.map(|_| circuit.display().to_string()),
        "pairs": t.pairs.len(),
        "patched_pairs": t.pairs.iter().filter(|p| p.spearman.is_some()).count(),
        "spearman_mean": s.map(|s| s[0].0),
        "spearman_median": s.map(|s| s[0].1),
        "spearman_abs_mean": s.map(|s| s[1].0),
        "spearman_abs_median": s.map(|s| s[1].1),
        "important_nodes": imp.map(|i| i.nodes.len()),
        "important_qk_excluded": imp.map(|i| i.excluded_qk),
        "recovery_mean": rec.map(|r| r.0),
        "recovery_union": rec.map(|r| r.1),
        "kept_nodes_mean": t.pairs.iter().map(|p| p.kept_nodes as f64).sum::<f64>() / n,
        "completeness_mean": t.pairs.iter().map(|p| p.completeness).sum::<f64>() / n,
        "per_pair": t.pairs.iter().enumerate().map(|(i, p)| json!({
            "pair": i,
            "tokens": p.tokens,
            "spearman": p.spearman.map(|s| s.0),
            "spearman_abs": p.spearman.map(|s| s.1),
            "compared": p.spearman.map(|s| s.2),
            "kept_nodes": p.kept_nodes,
            "completeness": p.completeness,
            "recovered": imp.map(|i| p.recovered(i)),
        })).collect::<Vec<_>>(),
    })
}

/// What `import` adds to the session's pins: the file's pinned ids not yet pinned, and its supernodes (renamed
/// `NAME (imported)` where the session has another supernode of that name; skipped where one of the session's
/// groups the same nodes). Returns (pins added, supernodes added).
fn merge_pins(pins: &mut crate::session::AttributionPins, f: &GraphFile) -> (usize, usize) {
    let mut pinned = 0;
    for id in &f.q_params.pinned_ids {
        if !pins.pinned.contains(id) {
            pins.pinned.push(id.clone());
            pinned += 1;
        }
    }
    let mut groups = 0;
    for g in &f.q_params.supernodes {
        let Some((name, ids)) = g.split_first() else { continue };
        if ids.is_empty() || pins.supernodes.iter().any(|s| s.nodes == ids) {
            continue;
        }
        let mut name = name.clone();
        while name.is_empty() || pins.supernodes.iter().any(|s| s.name == name) {
            name.push_str(" (imported)");
        }
        pins.supernodes.push(crate::session::Supernode {
            name,
            nodes: ids.to_vec(),
        });
        groups += 1;
    }
    let among: std::collections::BTreeSet<&String> = pins
        .pinned
        .iter()
        .chain(pins.supernodes.iter().flat_map(|s| s.nodes.iter()))
        .collect();
    pins.edges = f
        .links
        .iter()
        .filter(|l| among.contains(&l.source) && among.contains(&l.target))
        .map(|l| crate::session::PinnedEdge {
            source: l.source.clone(),
            target: l.target.clone(),
            weight: l.weight as f32,
        })
        .collect();
    (pinned, groups)
}

fn import(args: &ImportArgs) -> Result<()> {
    let f = read_file(&args.file)?;
    let Some(extras) = &f.metadata.circuitscope else {
        bail!(
            "{}: not written by circuitscope (no metadata.circuitscope), so its node ids are not this tool's",
            args.file.display()
        );
    };
    let _lock = crate::session::SessionLock::acquire(&args.session)?;
    let mut session = crate::session::store::load(&args.session)?.with_context(|| {
        format!(
            "--session {}: no such session file (`open --session FILE` makes one)",
            args.session.display()
        )
    })?;
    // The file's token ids must be what the session's model makes of its prompt: else its node ids (positions)
    // name other nodes.
    if let Some(model_dir) = session.model.path.as_deref().map(PathBuf::from).filter(|p| p.exists()) {
        let parts = super::circuit::load_model_parts(&model_dir)?;
        if parts.fingerprint != session.model.fingerprint {
            bail!(
                "{}: the session's model at {} has changed since the session was made",
                args.session.display(),
                model_dir.display()
            );
        }
        if extras.n_layer != parts.config.n_layer {
            bail!(
                "{}: a graph of a {}-layer model; the session's model has {} layers",
                args.file.display(),
                extras.n_layer,
                parts.config.n_layer
            );
        }
        if let Some(tok) = resolve_tokenizer(None, &model_dir)? {
            let ids = tok.encode(&f.metadata.prompt)?;
            if ids != extras.token_ids {
                bail!(
                    "{}: its prompt is {} tokens here but {} in the file (another tokenizer?)",
                    args.file.display(),
                    ids.len(),
                    extras.token_ids.len()
                );
            }
        }
    }
    let pins = &mut session.attribution;
    if !pins.is_empty() && pins.prompt != f.metadata.prompt {
        bail!(
            "{}: the session already has pins on another prompt ({:?}); clear them (:unpin) or use another session",
            args.session.display(),
            truncate(&pins.prompt, 40)
        );
    }
    pins.prompt = f.metadata.prompt.clone();
    let (pinned, groups) = merge_pins(pins, &f);
    session.prompt = f.metadata.prompt.clone();
    session.modified = crate::session::now_rfc3339();
    crate::session::store::save(&args.session, &session)?;
    let out = json!({
        "file": args.file.display().to_string(),
        "session": args.session.display().to_string(),
        "prompt": f.metadata.prompt,
        "pinned_added": pinned,
        "supernodes_added": groups,
        "pinned": session.attribution.pinned.len(),
        "supernodes": session.attribution.supernodes.len(),
        "edges": session.attribution.edges.len(),
    });
    if args.json {
        return print_json(&out);
    }
    println!(
        "imported {} into {}: {pinned} pinned nodes and {groups} supernodes added ({} pinned, {} supernodes, {} edges among them); the lab's prompt is the graph's",
        args.file.display(),
        args.session.display(),
        session.attribution.pinned.len(),
        session.attribution.supernodes.len(),
        session.attribution.edges.len()
    );
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
