//! `circuitscope scan`: per-node statistics and exemplars over a corpus, stored as the model's ScanIndex;
//! `circuitscope scan show`: one node of an index, readable without the TUI.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::common::{load_model, print_json, resolve_tokenizer};
use crate::analysis::scan::{self, ExemplarLayout, NodeScan, ScanIndex, ScanOptions, DEFAULT_SCAN_TOKENS};
use crate::circuit::file::{model_fingerprint, Exemplar};
use crate::circuit::NodeId;
use crate::data::corpus::CorpusSource;
use crate::data::TokenPool;
use crate::model::{Gpt, LoadOptions, ModelFiles};
use crate::tokenize::{escape_token, Tokenizer};

/// Arguments of `circuitscope scan`: a scan run, or `scan show`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ScanArgs {
    /// `scan show`, when given.
    #[command(subcommand)]
    pub command: Option<ScanCommand>,
    /// The scan run's options otherwise.
    #[command(flatten)]
    pub run: ScanRunArgs,
}

/// `circuitscope scan` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ScanCommand {
    /// Print one node's statistics and exemplars (tokens decoded, pivot marked ⟦like this⟧).
    Show(ShowArgs),
}

/// Arguments of a scan run.
#[derive(clap::Args, Debug)]
pub struct ScanRunArgs {
    /// The model directory.
    #[arg(long, required = true)]
    pub model: Option<PathBuf>,
    /// `synthetic`, `synthetic:SEED`, a directory of text files or a .jsonl file; its train split is read.
    #[arg(long, default_value = "synthetic")]
    pub corpus: String,
    /// Tokens to scan (rounded down to whole model-context windows).
    #[arg(long, default_value_t = DEFAULT_SCAN_TOKENS)]
    pub tokens: usize,
    /// Where to write the index (default: <model dir>/scan). An existing index there is replaced atomically.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// tokenizer.json to use [default: the one beside the model].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Top and bottom exemplars kept per node (each).
    #[arg(long, default_value_t = 8)]
    pub top: usize,
    /// Samples per quantile (0.1%, 1%, 10%, 50%) and side.
    #[arg(long, default_value_t = 2)]
    pub quantile_samples: usize,
    /// Context tokens kept before each exemplar's pivot.
    #[arg(long, default_value_t = 16)]
    pub before: usize,
    /// Context tokens kept after each exemplar's pivot.
    #[arg(long, default_value_t = 4)]
    pub after: usize,
    /// An SAE folder (ours or SAELens's) whose latents are scanned too, as nodes `<hook>.sae[i]`
    /// (e.g. `1.resid_mid.sae[12]`); repeatable, one SAE per hook.
    #[arg(long = "sae", value_name = "DIR")]
    pub saes: Vec<PathBuf>,
    /// Scan only these nodes: a circuit file's, or a comma-separated list (`0.mlp.post_act[17],1.attn.v[3]`);
    /// needs --out (the model's own scan folder holds the scan of every node).
    #[arg(long, value_name = "FILE|LIST")]
    pub nodes: Option<String>,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope scan show`.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The model (its tokenizer decodes the exemplars; the scan must have been made for it).
    #[arg(long)]
    pub model: PathBuf,
    /// e.g. `0.mlp.post_act[17]`, `1.attn.q[3]`, `final_resid[5]`, an SAE feature of a scan made with --sae
    /// (`1.resid_mid.sae[12]`), or TransformerLens's spelling (`blocks.1.attn.hook_q[0:3]`).
    pub node: String,
    /// The scan index directory (default: <model dir>/scan).
    #[arg(long)]
    pub scan: Option<PathBuf>,
    /// tokenizer.json to use [default: the one beside the model].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: ScanArgs) -> Result<()> {
    match args.command {
        Some(ScanCommand::Show(a)) => show(a),
        None => run_scan(args.run),
    }
}

/// The model's fingerprint and display name.
fn identify(dir: &Path, model: &Gpt) -> Result<(String, Option<String>)> {
    let files = ModelFiles::locate(dir)?;
    let ckpt = files.open_checkpoint(&model.config)?;
    let fingerprint = model_fingerprint(&ckpt, &model.config)?;
    let abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name = abs.file_name().map(|n| n.to_string_lossy().into_owned());
    Ok((fingerprint, name))
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

fn run_scan(args: ScanRunArgs) -> Result<()> {
    let model_dir = args.model.context("--model is required")?;
    if args.tokens == 0 {
        bail!("--tokens must be positive");
    }
    let model = load_model(&model_dir, LoadOptions::default())?;
    let (fingerprint, name) = identify(&model_dir, &model)?;
    let tok = need_tokenizer(args.tokenizer.as_deref(), &model_dir)?;
    // Loaded (and checked against the model) before the corpus is tokenized, so that a bad folder fails at once.
    let saes = args
        .saes
        .iter()
        .map(|dir| {
            Ok((
                super::sae::load_sae(dir, &model_dir, &model)?,
                dir.display().to_string(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let chosen = args
        .nodes
        .as_deref()
        .map(|spec| chosen_nodes(spec, &model, &fingerprint))
        .transpose()?;
    if chosen.is_some() && args.out.is_none() {
        bail!("--nodes: give --out DIR (the model's own scan folder holds the scan of every node)");
    }
    let corpus = CorpusSource::parse(&args.corpus)?;
    let block = model.config.block_size;

    let t0 = Instant::now();
    let mut tokens = TokenPool::build(corpus.train()?, &tok, args.tokens)?.tokens;
    tokens.truncate(args.tokens);
    if tokens.len() >= block {
        tokens.truncate(tokens.len() / block * block);
    }
    if tokens.is_empty() {
        bail!("corpus {corpus}: no tokens in its train split");
    }
    let tokenize_s = t0.elapsed().as_secs_f64();

    let opts = ScanOptions {
        layout: ExemplarLayout {
            top_k: args.top,
            bottom_k: args.top,
            quantile_samples: args.quantile_samples,
            before: args.before,
            after: args.after,
        },
        ..ScanOptions::default()
    };
    let bar = indicatif::ProgressBar::new(2 * tokens.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} tokens [{elapsed_precise} eta {eta}]")
            .expect("valid template"),
    );
    let n = tokens.len();
    let t1 = Instant::now();
    let sae_refs: Vec<(&crate::analysis::sae::Sae, &str)> = saes.iter().map(|(s, p)| (s, p.as_str())).collect();
    let data = scan::scan_chosen(&model, &tokens, &opts, &sae_refs, chosen.as_deref(), &mut |p| {
        bar.set_message(format!("scan pass {}/2", p.pass));
        bar.set_position(((p.pass as usize - 1) * p.tokens_total + p.tokens_done) as u64);
    })?;
    let seconds = t1.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let out = args.out.unwrap_or_else(|| ScanIndex::default_dir(&model_dir));
    let meta = data.meta(&fingerprint, name, &corpus.to_string());
    data.write(&out, &meta)?;
    let bytes: u64 = meta.files.values().sum();
    let tokens_per_s = n as f64 / seconds;
    if args.json {
        return print_json(&json!({
            "dir": out, "tokens": n, "nodes": data.nodes(), "seconds": seconds,
            "tokens_per_s": tokens_per_s, "tokenize_seconds": tokenize_s, "bytes": bytes,
            "saes": data.saes, "chosen": chosen.is_some(),
        }));
    }
    println!(
        "scanned {n} tokens × {}{} nodes in {seconds:.1} s ({tokens_per_s:.0} tokens/s; tokenizing took {tokenize_s:.1} s) \
         → {} ({:.1} MB)",
        data.nodes(),
        if chosen.is_some() { " chosen" } else { "" },
        out.display(),
        bytes as f64 / 1e6
    );
    for sae in &data.saes {
        println!(
            "  SAE {} ({} latents): nodes {}[0..{}]",
            sae.path, sae.n_latents, sae.hook, sae.n_latents
        );
    }
    Ok(())
}

/// The nodes of `scan --nodes`: a circuit file's (made for this model) or a comma-separated list of node ids.
fn chosen_nodes(spec: &str, model: &Gpt, fingerprint: &str) -> Result<Vec<NodeId>> {
    let path = Path::new(spec);
    if path.is_file() {
        let circuit = crate::circuit::CircuitFile::load(path)?;
        if circuit.model.fingerprint != fingerprint {
            bail!(
                "{}: this circuit was made for model {}, not {fingerprint}",
                path.display(),
                circuit.model.fingerprint
            );
        }
        return Ok(circuit.nodes.iter().map(|n| n.id).collect());
    }
    let cfg = &model.config;
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            NodeId::parse_for(s, cfg.n_layer, cfg.d_head)
                .with_context(|| format!("--nodes `{s}` (neither a file nor a node id)"))
        })
        .collect()
}

fn show(args: ShowArgs) -> Result<()> {
    let model = load_model(&args.model, LoadOptions::default())?;
    let (fingerprint, _) = identify(&args.model, &model)?;
    let tok = need_tokenizer(args.tokenizer.as_deref(), &args.model)?;
    let dir = args.scan.unwrap_or_else(|| ScanIndex::default_dir(&args.model));
    let index = ScanIndex::open_for(&dir, &fingerprint)?;
    let cfg = &model.config;
    let id = NodeId::parse_for(&args.node, cfg.n_layer, cfg.d_head)?;
    let node = index.node(&id)?;
    if args.json {
        return print_json(&node_json(&node, &tok)?);
    }
    print!("{}", render_node(&node, index.meta(), &tok));
    Ok(())
}

/// The node as JSON, each exemplar with its tokens' text added (`text`, one string per token).
pub fn node_json(node: &NodeScan, tok: &Tokenizer) -> Result<Value> {
    let mut v = serde_json::to_value(node)?;
    let add_text = |list: &mut Value| {
        if let Some(items) = list.as_array_mut() {
            for item in items {
                let text: Vec<String> = item["tokens"]
                    .as_array()
                    .map(|ids| {
                        ids.iter()
                            .map(|id| tok.token_display(id.as_u64().unwrap_or(0) as u32))
                            .collect()
                    })
                    .unwrap_or_default();
                item["text"] = json!(text);
            }
        }
    };
    add_text(&mut v["top"]);
    add_text(&mut v["bottom"]);
    if let Some(qs) = v["quantiles"].as_array_mut() {
        for q in qs {
            add_text(&mut q["bottom"]);
            add_text(&mut q["top"]);
        }
    }
    Ok(v)
}

/// One exemplar on one line: its pivot value, then the window with the pivot token marked ⟦…⟧.
pub fn render_exemplar(e: &Exemplar, tok: &Tokenizer) -> String {
    let mut s = format!("{:>9.4}  ", e.acts.get(e.pivot).copied().unwrap_or(f32::NAN));
    for (i, &id) in e.tokens.iter().enumerate() {
        let text = escape_token(&tok.token_display(id));
        if i == e.pivot {
            s.push('⟦');
            s.push_str(&text);
            s.push('⟧');
        } else {
            s.push_str(&text);
        }
    }
    s
}

const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The node's statistics, histogram and exemplars as text.
pub fn render_node(node: &NodeScan, meta: &scan::ScanMeta, tok: &Tokenizer) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}  ({} tokens of {}, {} split)",
        node.id, meta.tokens, meta.corpus, meta.split
    );
    let _ = writeln!(
        s,
        "mean {:.5}  std {:.5}  density {:.2}%  min {:.4}  max {:.4}",
        node.mean,
        node.std,
        100.0 * node.density,
        node.min,
        node.max
    );
    let qs: Vec<String> = node
        .quantile_values
        .iter()
        .map(|q| format!("{}%: {:.4} / {:.4}", 100.0 * q.quantile, q.bottom, q.top))
        .collect();
    let _ = writeln!(s, "quantiles (bottom / top)  {}", qs.join("   "));
    // log scale, so that the few large activations of a sparse node stay visible next to its zero spike
    let peak = node.histogram.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let spark: String = node
        .histogram
        .counts
        .iter()
        .map(|&c| {
            if c == 0 {
                ' '
            } else {
                let f = (c as f64).ln_1p() / peak.ln_1p();
                SPARK[((f * 7.0).round() as usize).min(7)]
            }
        })
        .collect();
    let _ = writeln!(
        s,
        "histogram (log counts, {} bins)  {:.3} |{spark}| {:.3}",
        node.histogram.counts.len(),
        node.histogram.lo,
        node.histogram.hi
    );
    let mut section = |title: String, list: &[Exemplar]| {
        let _ = writeln!(s, "{title}:");
        for e in list {
            let _ = writeln!(s, "  {}", render_exemplar(e, tok));
        }
    };
    section("top".into(), &node.top);
    section("bottom".into(), &node.bottom);
    for q in &node.quantiles {
        section(format!("quantile {}% from the bottom", 100.0 * q.quantile), &q.bottom);
        section(format!("quantile {}% from the top", 100.0 * q.quantile), &q.top);
    }
    s
}
