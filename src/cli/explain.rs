//! `circuitscope explain`: an N2G explanation for each node asked for (a circuit's, one node's, or all), scored on
//! held-out text, stored beside the scan as `explanations.json` so that the workbench reads them without
//! recomputing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::{load_model, print_json, resolve_tokenizer};
use crate::analysis::explain::store::{HeldOutRef, ScanRef};
use crate::analysis::explain::{
    self, ExplainOptions, ExplanationsFile, HeldOut, ModelProbe, NodeExplanation, GOOD_CORRELATION,
};
use crate::analysis::scan::ScanIndex;
use crate::circuit::file::{model_fingerprint, CircuitFile};
use crate::circuit::node_id::{sae_group, SAE_SUFFIX};
use crate::circuit::NodeId;
use crate::data::corpus::CorpusSource;
use crate::data::TokenPool;
use crate::model::{LoadOptions, ModelFiles};

/// Held-out tokens scored by default: enough for a rare sparse node to fire a few dozen times.
pub const DEFAULT_HELD_OUT_TOKENS: usize = 32_768;

/// Nodes explained together: one batch of probes (and one held-out forward) per group.
const GROUP: usize = 256;

/// Arguments of `circuitscope explain`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["nodes", "all", "node"])))]
pub struct ExplainArgs {
    /// The model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Explain the nodes of these circuit files (repeatable).
    #[arg(long, value_name = "CIRCUIT.json")]
    pub nodes: Vec<PathBuf>,
    /// Explain every node of the scan.
    #[arg(long)]
    pub all: bool,
    /// Explain this node, e.g. `0.mlp.post_act[17]`, or a feature of --sae, `1.resid_mid.sae[12]` (repeatable).
    #[arg(long, value_name = "ID")]
    pub node: Vec<NodeId>,
    /// The SAE whose features (`HOOK.sae[i]`) are explained: the scan must have run it (`scan --sae`); with
    /// --all, its features are explained too (those of other scanned SAEs are left out).
    #[arg(long, value_name = "DIR")]
    pub sae: Option<PathBuf>,
    /// The scan index directory (default: <model dir>/scan); the explanations are stored in it.
    #[arg(long)]
    pub scan: Option<PathBuf>,
    /// The corpus whose held-out split scores the explanations [default: the scan's corpus].
    #[arg(long)]
    pub corpus: Option<String>,
    /// Held-out tokens to score on (rounded down to whole sequences).
    #[arg(long, default_value_t = DEFAULT_HELD_OUT_TOKENS)]
    pub held_out_tokens: usize,
    /// Keep stored explanations of the asked-for nodes (made with the same scan, options and held-out text)
    /// instead of recomputing them.
    #[arg(long)]
    pub reuse: bool,
    /// Start a new explanations file even when the stored one cannot be read or belongs to another model.
    #[arg(long)]
    pub replace: bool,
    /// Tokens per forward pass.
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    /// tokenizer.json to use [default: the one beside the model].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: ExplainArgs) -> Result<()> {
    let t_all = Instant::now();
    if args.held_out_tokens == 0 {
        bail!("--held-out-tokens must be positive");
    }
    let model = load_model(&args.model, LoadOptions::default())?;
    let files = ModelFiles::locate(&args.model)?;
    let fingerprint = model_fingerprint(&files.open_checkpoint(&model.config)?, &model.config)?;
    let Some(tok) = resolve_tokenizer(args.tokenizer.as_deref(), &args.model)? else {
        bail!(
            "{}: no tokenizer.json beside the model; pass --tokenizer FILE",
            args.model.display()
        );
    };
    let scan_dir = args.scan.clone().unwrap_or_else(|| ScanIndex::default_dir(&args.model));
    let index = ScanIndex::open_for(&scan_dir, &fingerprint)?;
    let meta = index.meta().clone();

    // The SAE whose features are read, checked to be the one the scan ran.
    let sae = match &args.sae {
        Some(dir) => {
            let sae = super::sae::load_sae(dir, &args.model, &model)?;
            let group = sae_group(sae.hook());
            match meta.sae(&group) {
                Some(e) if e.fingerprint == sae.fingerprint()? => {}
                _ => bail!(
                    "{}: the scan at {} did not run this SAE; run `circuitscope scan --sae {}` first",
                    dir.display(),
                    scan_dir.display(),
                    dir.display()
                ),
            }
            Some(sae)
        }
        None => None,
    };
    let sae_shape = sae.as_ref().map(|s| (s.hook(), s.config.n_latents));
    for id in &args.node {
        id.check_feature(sae_shape)?;
    }

    // The nodes, in node order, each checked against the scan.
    let mut wanted: BTreeSet<NodeId> = args.node.iter().copied().collect();
    for path in &args.nodes {
        let circuit = CircuitFile::load(path)?;
        if circuit.model.fingerprint != fingerprint {
            bail!(
                "{}: this circuit was made for model {}, not {fingerprint}",
                path.display(),
                circuit.model.fingerprint
            );
        }
        wanted.extend(circuit.nodes.iter().map(|n| n.id));
    }
    if args.all {
        for h in &meta.hooks {
            if let Some(hook) = h.name.strip_suffix(SAE_SUFFIX) {
                // A scanned SAE's features: explained with that SAE only.
                match sae_shape.filter(|(sh, _)| sh.to_string() == hook) {
                    Some((sh, n)) => wanted.extend((0..n).filter_map(|i| NodeId::feature(sh, i))),
                    None => eprintln!(
                        "note: the scan's features `{}[..]` are left out (explain them with --sae DIR of that SAE)",
                        h.name
                    ),
                }
                continue;
            }
            for i in 0..h.width {
                let id = NodeId::from_hook(&h.name, h.channel(i)).with_context(|| format!("scan hook `{}`", h.name))?;
                wanted.insert(id);
            }
        }
    }
    for id in &wanted {
        index.node_index(id)?;
    }
    let mut order: Vec<NodeId> = wanted.into_iter().collect();
    order.sort_by_key(|id| index.node_index(id).unwrap_or(usize::MAX));

    // Held-out text: the other split of the corpus, never the scanned one.
    let corpus_spec = args.corpus.clone().unwrap_or_else(|| meta.corpus.clone());
    let corpus = CorpusSource::parse(&corpus_spec).with_context(|| format!("held-out corpus `{corpus_spec}`"))?;
    let seq_len = meta.seq_len.min(model.config.block_size).max(1);
    let mut tokens = TokenPool::build(corpus.held_out()?, &tok, args.held_out_tokens)?.tokens;
    tokens.truncate(args.held_out_tokens / seq_len * seq_len);
    if tokens.is_empty() {
        bail!(
            "corpus {corpus}: fewer than {seq_len} held-out tokens (one sequence); raise --held-out-tokens or pass \
             --corpus"
        );
    }
    let held_ref = HeldOutRef {
        corpus: corpus.to_string(),
        split: "held_out".into(),
        tokens: tokens.len(),
        seq_len,
    };
    let held_out = HeldOut { tokens, seq_len };
    let opts = ExplainOptions {
        pad: tok.eot_id().unwrap_or(0),
        ..ExplainOptions::default()
    };

    let path = ExplanationsFile::path_in(&scan_dir);
    let fresh = || ExplanationsFile {
        format_version: explain::EXPLAIN_FORMAT_VERSION,
        fingerprint: fingerprint.clone(),
        model_name: meta.model_name.clone(),
        scan: ScanRef {
            corpus: meta.corpus.clone(),
            tokens: meta.tokens,
        },
        held_out: held_ref.clone(),
        options: opts,
        nodes: Default::default(),
    };
    let mut file = if path.exists() && !args.replace {
        let old = ExplanationsFile::load_for(&path, &fingerprint)
            .with_context(|| "the stored explanations (pass --replace to start a new file)".to_string())?;
        if old.compatible(&meta, &held_ref, &opts) {
            old
        } else {
            eprintln!(
                "note: {}: made with another scan, held-out text or options; its {} explanations are replaced",
                path.display(),
                old.nodes.len()
            );
            fresh()
        }
    } else {
        fresh()
    };

    let todo: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|id| !(args.reuse && file.nodes.contains_key(id)))
        .collect();
    let bar = indicatif::ProgressBar::new(todo.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("explain {bar:30} {pos}/{len} nodes [{elapsed_precise} eta {eta}]")
            .expect("valid template"),
    );
    let probe = match &sae {
        Some(s) => ModelProbe::new(&model, args.batch_tokens).with_sae(s),
        None => ModelProbe::new(&model, args.batch_tokens),
    };
    let display = |id: u32| tok.token_display(id);
    let t0 = Instant::now();
    // Groups stay within one hook, so that each forward records a single hook.
    let mut groups: Vec<Vec<NodeId>> = Vec::new();
    for id in &todo {
        match groups.last_mut() {
            Some(g) if g.len() < GROUP && g[0].group() == id.group() => g.push(*id),
            _ => groups.push(vec![*id]),
        }
    }
    for group in groups {
        let mut examples = Vec::with_capacity(group.len());
        for id in &group {
            examples.push(explain::examples_from_scan(&index.node(id)?, &opts));
        }
        let out = explain::explain_batch(&probe, &examples, &held_out, &opts, &display)?;
        for (id, e) in group.iter().zip(out) {
            file.nodes.insert(*id, e);
        }
        bar.inc(group.len() as u64);
    }
    let seconds = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    file.save(&path)?;

    let picked: Vec<(NodeId, &NodeExplanation)> = order
        .iter()
        .filter_map(|id| file.nodes.get(id).map(|e| (*id, e)))
        .collect();
    let good = picked.iter().filter(|(_, e)| e.is_good()).count();
    let share = good as f64 / picked.len().max(1) as f64;
    let corrs: Vec<f64> = picked
        .iter()
        .filter_map(|(_, e)| e.correlation.map(f64::from))
        .collect();
    let mean_corr = (!corrs.is_empty()).then(|| corrs.iter().sum::<f64>() / corrs.len() as f64);
    let total_seconds = t_all.elapsed().as_secs_f64();
    if args.json {
        let nodes: Vec<serde_json::Value> = picked
            .iter()
            .map(|(id, e)| {
                let side = e.main_side();
                json!({
                    "id": id.to_string(),
                    "explanation": e.explanation,
                    "correlation": e.correlation,
                    "precision": side.and_then(|s| s.fires.precision),
                    "recall": side.and_then(|s| s.fires.recall),
                    "positive": e.positive,
                    "negative": e.negative,
                })
            })
            .collect();
        return print_json(&json!({
            "model": args.model,
            "file": path,
            "held_out": held_ref,
            "computed": todo.len(),
            "reused": picked.len() - todo.len().min(picked.len()),
            "seconds": seconds,
            "total_seconds": total_seconds,
            "summary": {
                "nodes": picked.len(),
                "good": good,
                "good_share": share,
                "good_threshold": GOOD_CORRELATION,
                "mean_correlation": mean_corr,
            },
            "nodes": nodes,
        }));
    }
    const LIST_MAX: usize = 64;
    if picked.len() <= LIST_MAX {
        for (id, e) in &picked {
            let text = if e.explanation.is_empty() {
                "(nothing to explain)"
            } else {
                &e.explanation
            };
            println!("{:<22} {:<26} {text}", id.to_string(), e.score_line());
        }
    }
    println!(
        "{} nodes ({} computed in {seconds:.1} s, {:.1} s in all): {good} ({:.1}%) explained with correlation ≥ \
         {GOOD_CORRELATION} on {} held-out tokens of {}{}",
        picked.len(),
        todo.len(),
        total_seconds,
        100.0 * share,
        held_ref.tokens,
        held_ref.corpus,
        mean_corr.map_or(String::new(), |m| format!("; mean correlation {m:.2}")),
    );
    if picked.len() > LIST_MAX {
        println!("→ {} (pass --json to print every node)", path.display());
    } else {
        println!("→ {}", path.display());
    }
    Ok(())
}
