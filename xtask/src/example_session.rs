//! The generator of `sessions/example.json`, the shipped analysis of the bundled sparse model's bracket_counting
//! circuit, and its report `docs/example-report.md`. It measures everything afresh (about a minute in a release
//! build):
//!
//! ```sh
//! cargo run --release -p xtask -- example-session
//! ```
//!
//! Every number in the session comes from circuitscope itself: the scan's exemplars (`ScanIndex`), the prompt
//! lab's runs (`workbench::Engine`, the workbench's own engine: recorded hooks, mean ablation with the scan's means,
//! attention patterns), the circuit file's per-node ablations and our own task-loss ablations
//! (`analysis::ablate::evaluate`). Labels, statuses and confidences are derived from that evidence by the rules
//! in [`label_node`]; the mechanism write-up is a hand-written text whose numbers are filled in from the same
//! measurements. `EXAMPLE_CIRCUIT=FILE` runs it on another circuit file of the model (the written session then
//! names that file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use circuitscope::analysis::ablate::{self, Means, NodeSet, TaskData};
use circuitscope::analysis::scan::{node_hooks, NodeScan, ScanIndex};
use circuitscope::circuit::{halved, CircuitFile, EdgeEnd, NodeId, Site};
use circuitscope::data::tasks::{self, Split};
use circuitscope::model::{Config, Gpt};
use circuitscope::session::{
    store, AblationMode, AblationSpec, Annotation, CircuitRef, Evidence, SavedPrompt, Session, SessionModel, Status,
};
use circuitscope::tokenize::Tokenizer;
use circuitscope::workbench::{self, Ablation, AblationKind, Engine, OpenOptions, RunSummary};

const MODEL: &str = "assets/models/tinypython-sparse";
const CIRCUIT: &str = "assets/circuits/tinypython-sparse/bracket_counting.json";
const SESSION: &str = "sessions/example.json";
const REPORT: &str = "docs/example-report.md";
const TASK: &str = "bracket_counting";
/// Test pairs for the task-level measurements (class means, ablation losses).
const PAIRS: usize = 128;
/// Exemplars read per node for its pivot statistics.
const EXEMPLARS: usize = 10;

/// The hand probes: the task's two cases, each as a minimal pair (depth 2 first).
const PROBES: &[(&str, &str)] = &[
    ("depth 2, hard (rows closed before)", "values = [[1, 2], [3, 4"),
    ("depth 1, hard (rows closed, then flat)", "values = [[1, 2], 3, 4"),
    ("depth 2, easy", "values = [[1, 2, 3"),
    ("depth 1, easy", "values = [1, 2, 3"),
];

/// An adversarial prompt: what the mechanism predicts and which way the model should go (true: `]]\n`).
struct Attack {
    name: &'static str,
    text: String,
    should_be_nested: bool,
    why: &'static str,
}

fn attacks() -> Vec<Attack> {
    let mut v = vec![
        Attack {
            name: "distractor `# [[` in a comment before a flat list",
            text: "# [[\nvalues = [1, 2, 3".into(),
            should_be_nested: false,
            why: "a detector of `[`/`[[` that does not know about comments would count the comment's brackets",
        },
        Attack {
            name: "distractor `[[` in a string before a flat list",
            text: "s = \"[[\"\nvalues = [1, 2, 3".into(),
            should_be_nested: false,
            why: "as above, the brackets inside a string literal",
        },
        Attack {
            name: "nested list closed early, then a flat list",
            text: "values = [[1, 2]]\nrow = [3, 4".into(),
            should_be_nested: false,
            why: "a depth signal averaged over the context still sees the earlier `[[`",
        },
        Attack {
            name: "two nested lists closed, then a flat list",
            text: "a = [[1, 2], [3, 4]]\nb = [[5, 6]]\nrow = [7, 8".into(),
            should_be_nested: false,
            why: "more earlier `[[` in the context",
        },
    ];
    // The dilution attack: a nested list whose last row grows; an averaged "open bracket" signal fades.
    for n in [4usize, 12, 24, 40] {
        let nums: Vec<String> = (0..n).map(|i| ((i * 7 + 3) % 10).to_string()).collect();
        v.push(Attack {
            name: match n {
                4 => "long nested row: 4 numbers",
                12 => "long nested row: 12 numbers",
                24 => "long nested row: 24 numbers",
                _ => "long nested row: 40 numbers",
            },
            text: format!("values = [[{}", nums.join(", ")),
            should_be_nested: true,
            why: "many tokens after the `[[` dilute an attention-averaged depth signal",
        });
    }
    for n in [4usize, 24] {
        let nums: Vec<String> = (0..n).map(|i| ((i * 3 + 1) % 10).to_string()).collect();
        v.push(Attack {
            name: if n == 4 {
                "long flat list after a closed nested one: 4 numbers"
            } else {
                "long flat list after a closed nested one: 24 numbers"
            },
            text: format!("values = [[1, 2], {}", nums.join(", ")),
            should_be_nested: false,
            why: "the control for dilution at depth 1",
        });
    }
    v
}

struct Lab {
    /// The workbench's engine on the bundled model: the prompt lab's runs, and the model and scan it opened.
    engine: Engine,
    cfg: Config,
    tok: Tokenizer,
    means: Means,
    circuit: CircuitFile,
    nodes: Vec<NodeId>,
    fingerprint: String,
    /// Every node of the model outside the circuit, mean-ablated: the circuit alone.
    outside: Vec<Ablation>,
}

impl Lab {
    /// Opens the bundled model on `circuit_path` as the workbench does (one load of the model, its scan and its
    /// tokenizer).
    fn open(circuit_path: &Path) -> Lab {
        let opened = workbench::open(&OpenOptions {
            model: PathBuf::from(MODEL),
            circuit: Some(circuit_path.to_path_buf()),
            task: TASK.into(),
            session: None,
            sae: None,
        })
        .unwrap_or_else(|e| panic!("{}: {e}", circuit_path.display()));
        let engine = opened.engine;
        let cfg = opened.config;
        let scan = engine.scan().expect("the bundled model has a scan").index();
        let means: Means = node_hooks(&cfg)
            .into_iter()
            .map(|h| {
                let m = scan.hook_means(&h.name).expect("the scan has every hook's means");
                (h.name, m)
            })
            .collect();
        let mut nodes = opened.circuit.node_ids();
        nodes.sort_by_key(|n| n.forward_order());
        let outside = NodeSet::of(&cfg, &nodes)
            .inverted()
            .ids()
            .into_iter()
            .map(|node| Ablation {
                node,
                kind: AblationKind::Mean,
            })
            .collect();
        Lab {
            tok: engine.tokenizer().clone(),
            engine,
            cfg,
            means,
            circuit: opened.circuit,
            nodes,
            fingerprint: opened.fingerprint,
            outside,
        }
    }

    fn model(&self) -> &Gpt {
        self.engine.model()
    }

    fn scan(&self) -> &ScanIndex {
        self.engine.scan().expect("the bundled model has a scan").index()
    }

    fn run(&mut self, text: &str, ablations: &[Ablation]) -> RunSummary {
        self.engine
            .run(0, text, ablations)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn run_circuit(&mut self, text: &str) -> RunSummary {
        let abl = self.outside.clone();
        self.run(text, &abl)
    }
}

fn tok_show(t: &str) -> String {
    t.replace('\n', "↵")
}

/// The most common pivot tokens of a list of exemplars, with counts, most common first.
fn pivot_counts(ex: &[circuitscope::circuit::Exemplar], tok: &Tokenizer, k: usize) -> Vec<(String, usize)> {
    let mut m: BTreeMap<String, usize> = BTreeMap::new();
    for e in ex.iter().take(k) {
        if let Some(&t) = e.tokens.get(e.pivot) {
            *m.entry(tok.token_display(t)).or_default() += 1;
        }
    }
    let mut v: Vec<(String, usize)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn show_counts(v: &[(String, usize)]) -> String {
    v.iter()
        .take(4)
        .map(|(t, c)| format!("`{}` ×{c}", tok_show(t)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What was measured about one node.
struct NodeFacts {
    id: NodeId,
    scan: NodeScan,
    top_pivots: Vec<(String, usize)>,
    bottom_pivots: Vec<(String, usize)>,
    /// Mean value at the last token over the task's depth-2 prompts, the depth-1 prompts, and the pooled std.
    depth2: f64,
    depth1: f64,
    pooled_sd: f64,
    /// Same on the hard pairs only (rows closed before the last one).
    hard2: f64,
    hard1: f64,
    /// Mean value over every token of the depth-2 task prompts at ` [[`-like tokens, single `[` tokens, closing
    /// `]` tokens and all other tokens.
    at_open2: f64,
    at_open1: f64,
    at_close: f64,
    at_other: f64,
    /// Value at the last token of each probe (full model).
    probe_last: Vec<f32>,
    /// Token of the largest |value| on probe 0 and its value.
    peak: (usize, f32),
    /// Halved loss change when the node is also ablated in the circuit (circuit file).
    delta_circuit: Option<f64>,
    /// Task loss of the full model with this node mean-ablated (raw), and the logit difference on probe 0 then.
    full_ablated_loss: f64,
    full_ablated_acc: f64,
    probe_ld_ablated: f32,
}

impl NodeFacts {
    /// Effect size of depth 2 vs depth 1 at the last token.
    fn depth_d(&self) -> f64 {
        (self.depth2 - self.depth1) / self.pooled_sd.max(1e-6)
    }

    /// The bracket token class this node responds to most, as (name, response in scan standard deviations).
    fn bracket_response(&self) -> (&'static str, f64) {
        let sd = (self.scan.std as f64).max(1e-6);
        [("` [[`", self.at_open2), ("`[`", self.at_open1), ("`]`", self.at_close)]
            .into_iter()
            .map(|(n, v)| (n, (v - self.at_other) / sd))
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap()
    }

    /// Whether the node sees only the current token (the first attention's inputs: embedding channels and the
    /// q/k/v computed from them), so that its value at the last token cannot depend on the depth.
    fn token_local(&self) -> bool {
        self.id.layer == Some(0) && matches!(self.id.site, Site::AttnActIn | Site::AttnQ | Site::AttnK | Site::AttnV)
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

fn role(n: &NodeId, d_head: usize) -> String {
    let l = n.layer.map_or(String::new(), |l| l.to_string());
    match n.site {
        Site::AttnActIn => format!("residual channel {} read by attention {l}", n.index),
        Site::AttnQ | Site::AttnK | Site::AttnV => {
            let (h, c) = n.head_channel(d_head).unwrap_or((0, n.index));
            let what = match n.site {
                Site::AttnQ => "query",
                Site::AttnK => "key",
                _ => "value",
            };
            format!("head {l}.{h} {what} channel {c}")
        }
        Site::AttnResidDelta => format!("attention {l} write to residual channel {}", n.index),
        Site::MlpActIn => format!("residual channel {} read by MLP {l}", n.index),
        Site::MlpPostAct => format!("MLP {l} neuron {}", n.index),
        Site::MlpResidDelta => format!("MLP {l} write to residual channel {}", n.index),
        Site::FinalResid => format!("final residual channel {} (read by the unembedding)", n.index),
        Site::Sae(_) => format!("SAE latent {} at {}", n.index, n.hook()),
    }
}

/// How strongly the node separates depth 2 from depth 1 at the last token: |d| ≥ this is "selective".
const DEPTH_D: f64 = 1.0;
/// A halved task-loss change (circuit file) of at least this much is "ablation matters".
const DELTA_MATTERS: f64 = 0.02;
/// A node whose mean at a bracket token class differs from its mean elsewhere by this many scan standard
/// deviations "responds" to that class.
const BRACKET_Z: f64 = 1.5;

/// 0: ` [[`-like (two or more open brackets), 1: one `[`, 2: a closing `]`, 3: anything else.
fn bracket_class(tok: &str) -> usize {
    if tok.contains("[[") {
        0
    } else if tok.contains('[') {
        1
    } else if tok.contains(']') {
        2
    } else {
        3
    }
}

/// The label, status, confidence, tags and notes a node's evidence supports.
fn label_node(f: &NodeFacts, d_head: usize, full_loss: f64, probe_ld: f32, probes_tokens: &[String]) -> Annotation {
    let d = f.depth_d();
    let local = f.token_local();
    let (bracket, z) = f.bracket_response();
    let mut parts: Vec<String> = Vec::new();
    let mut tags = vec![match f.id.site {
        Site::AttnQ | Site::AttnK | Site::AttnV => "attention".to_string(),
        Site::MlpPostAct => "mlp-neuron".to_string(),
        Site::FinalResid => "readout".to_string(),
        _ => "residual".to_string(),
    }];
    if let Some(l) = f.id.layer {
        tags.push(format!("layer-{l}"));
    }
    if local {
        tags.push("token-local".into());
    }
    // Exemplars: a pivot token that holds most of the top (or bottom) exemplars.
    let n_top = f.scan.top.len().min(EXEMPLARS);
    let n_bottom = f.scan.bottom.len().min(EXEMPLARS);
    let top = f.top_pivots.first().filter(|(_, c)| *c * 2 > n_top);
    let signed = f.scan.min < 0.0 && -f.scan.min > 0.25 * f.scan.max.abs();
    let bottom = f.bottom_pivots.first().filter(|(_, c)| *c * 2 > n_bottom && signed);
    match (top, bottom) {
        (Some((t, _)), Some((b, _))) if t != b => {
            parts.push(format!("exemplars + on `{}`, − on `{}`", tok_show(t), tok_show(b)))
        }
        (Some((t, _)), _) => parts.push(format!("exemplars peak on `{}`", tok_show(t))),
        (None, Some((b, _))) => parts.push(format!("exemplars most negative on `{}`", tok_show(b))),
        (None, None) => {}
    }
    let brackets = z.abs() >= BRACKET_Z;
    if brackets {
        tags.push("brackets".into());
        parts.push(format!(
            "{} on {bracket} in list prompts",
            if z > 0.0 { "high" } else { "low" }
        ));
    }
    let selective = !local && d.abs() >= DEPTH_D;
    if selective {
        tags.push("depth".into());
        parts.push(if d > 0.0 {
            "depth channel: higher at depth 2 (inside `[[`) than in a flat list".to_string()
        } else {
            "depth channel: lower at depth 2 (inside `[[`) than in a flat list".to_string()
        });
    }
    let delta = f.delta_circuit.unwrap_or(0.0);
    let matters = delta >= DELTA_MATTERS;
    if matters {
        tags.push("necessary".into());
    }
    let label = if selective || brackets {
        format!("{}: {}", role(&f.id, d_head), parts.join("; "))
    } else if parts.is_empty() {
        format!(
            "{}: no bracket or depth signal found (role unclear)",
            role(&f.id, d_head)
        )
    } else {
        format!(
            "{}: {}; no bracket or depth signal (role unclear)",
            role(&f.id, d_head),
            parts.join("; ")
        )
    };
    let signal = selective || brackets;
    let strength = if selective {
        d.abs() / DEPTH_D
    } else {
        z.abs() / BRACKET_Z
    };
    let (status, confidence) = match (signal, matters) {
        (true, true) => (Status::Supported, (0.6 + 0.1 * (strength - 1.0).min(2.5)).min(0.85)),
        (true, false) => (Status::Hypothesis, 0.45),
        (false, true) => (Status::Hypothesis, 0.3),
        (false, false) => (Status::Hypothesis, 0.15),
    };
    let peak_tok = probes_tokens.get(f.peak.0).map(|t| tok_show(t)).unwrap_or_default();
    let mut notes = String::new();
    let _ = write!(
        notes,
        "Scan (pretraining corpus): mean {:+.3}, std {:.3}, density {:.2}, range {:+.3} .. {:+.3}. Top-{n_top} exemplar pivots: {}",
        f.scan.mean,
        f.scan.std,
        f.scan.density,
        f.scan.min,
        f.scan.max,
        show_counts(&f.top_pivots)
    );
    if signed {
        let _ = write!(notes, "; bottom-{n_bottom} pivots: {}", show_counts(&f.bottom_pivots));
    }
    let _ = write!(
        notes,
        ".\n\nOver every token of the depth-2 task prompts: mean {:+.3} at ` [[`-like tokens, {:+.3} at `[`, {:+.3} at `]`, {:+.3} elsewhere (strongest: {bracket} at {z:+.1} scan std). On `{}` its largest |value| is {:+.3} at `{}` (token {}).",
        f.at_open2,
        f.at_open1,
        f.at_close,
        f.at_other,
        PROBES[0].1,
        f.peak.1,
        peak_tok,
        f.peak.0
    );
    if local {
        let _ = write!(
            notes,
            " It sees only the current token (before any attention), so its value at the last token cannot tell the depths apart: what matters is what it writes at the bracket tokens for attention to read."
        );
    } else {
        let _ = write!(
            notes,
            "\n\nAt the last token ({PAIRS} test pairs): depth 2 {:+.3}, depth 1 {:+.3} (effect size d = {:+.2}); hard pairs only (rows closed before): depth 2 {:+.3}, depth 1 {:+.3}. Probes: {}.",
            f.depth2,
            f.depth1,
            d,
            f.hard2,
            f.hard1,
            PROBES
                .iter()
                .zip(&f.probe_last)
                .map(|((name, _), v)| format!("{name} {v:+.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = write!(
        notes,
        "\n\nAblation: in the circuit (rest of the model mean-ablated) the task loss changes by {} (halved); in the full model, mean-ablating it alone takes the task loss from {:.4} to {:.4} (halved; accuracy {:.2}) and the logit difference on `{}` from {:+.3} to {:+.3}.",
        f.delta_circuit.map_or("— (not in the file)".into(), |x| format!("{x:+.4}")),
        halved(full_loss),
        halved(f.full_ablated_loss),
        f.full_ablated_acc,
        PROBES[0].1,
        probe_ld,
        f.probe_ld_ablated
    );
    let verdict = match (signal, matters) {
        (true, true) => "Probes and ablation agree: it carries bracket or depth information and the circuit needs it.",
        (true, false) => "It responds to brackets or depth, but ablating it changes the circuit's loss little: redundant or minor.",
        (false, true) => {
            "The circuit needs it, but it shows no bracket or depth signal here: perhaps a bias or context feature the others read; unclear."
        }
        (false, false) => "Neither the probes nor the ablation show a role in this task: unclear.",
    };
    let _ = write!(notes, " {verdict}");
    Annotation {
        label,
        notes,
        tags,
        status,
        confidence: Some(((confidence * 100.0) as f32).round() / 100.0),
        evidence: Vec::new(),
        conflict: Vec::new(),
    }
}

fn prompt_evidence(run: &RunSummary, pos: usize, nodes: &[NodeId], note: String) -> Evidence {
    Evidence::Prompt {
        prompt: run.text.clone(),
        tokens: run.tokens.clone(),
        position: pos,
        magnitudes: nodes
            .iter()
            .filter_map(|n| run.acts.get(n).and_then(|v| v.get(pos)).map(|v| (*n, *v)))
            .collect(),
        logit_diff: run.logit_diff(),
        ablations: run
            .ablations
            .iter()
            .map(|a| AblationSpec {
                node: a.node,
                mode: match a.kind {
                    AblationKind::Zero => AblationMode::Zero,
                    AblationKind::Mean => AblationMode::Mean,
                },
            })
            .collect(),
        note,
    }
}

fn top_token(run: &RunSummary) -> String {
    run.top
        .first()
        .map(|(t, p)| format!("`{}` ({p:.2})", tok_show(t)))
        .unwrap_or_default()
}

/// Measures the bundled model afresh and rewrites sessions/example.json and docs/example-report.md, from the
/// repository root.
pub fn build() {
    // The xtask crate sits one folder below the repository root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::set_current_dir(&root).unwrap();
    let circuit_path = std::env::var("EXAMPLE_CIRCUIT").unwrap_or_else(|_| CIRCUIT.to_string());
    let mut lab = Lab::open(Path::new(&circuit_path));
    let d_head = lab.cfg.d_head;
    let nodes = lab.nodes.clone();
    println!(
        "circuit {circuit_path}: {} nodes, {} edges, losses {:?}",
        nodes.len(),
        lab.circuit.edges.len(),
        lab.circuit.losses
    );

    // Task pairs: class means of every node at the last token, the logit differences, full and circuit alone.
    let task = tasks::resolve(TASK).unwrap();
    let pairs = tasks::split(task.as_ref(), Split::Test, PAIRS);
    let mut vals: BTreeMap<NodeId, [Vec<f64>; 4]> = nodes.iter().map(|n| (*n, Default::default())).collect();
    // Node → (sum, count) per bracket class, over every token of the depth-2 prompts.
    let mut by_class: BTreeMap<NodeId, [(f64, usize); 4]> = nodes.iter().map(|n| (*n, [(0.0, 0); 4])).collect();
    let (mut ld_full, mut ld_circ) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for p in &pairs {
        let hard = p.prompt.contains("], [");
        for (class, text) in [(0usize, &p.prompt), (1, &p.prompt_alt)] {
            let r = lab.run(text, &[]);
            let last = r.tokens.len() - 1;
            for n in &nodes {
                let v = r.acts[n][last] as f64;
                let e = vals.get_mut(n).unwrap();
                e[class].push(v);
                if hard {
                    e[2 + class].push(v);
                }
            }
            if class == 0 {
                for (i, t) in r.tokens.iter().enumerate() {
                    let c = bracket_class(t);
                    for n in &nodes {
                        let e = &mut by_class.get_mut(n).unwrap()[c];
                        e.0 += r.acts[n][i] as f64;
                        e.1 += 1;
                    }
                }
            }
            ld_full[class].push(r.logit_diff().unwrap() as f64);
            let rc = lab.run_circuit(text);
            ld_circ[class].push(rc.logit_diff().unwrap() as f64);
        }
    }
    let acc = |a: &[f64], b: &[f64]| a.iter().zip(b).filter(|(x, y)| x > y).count() as f64 / a.len() as f64;
    let task_stats = format!(
        "Mean logit difference `]]\\n` − `]\\n` over {} test pairs: full model {:+.2} at depth 2, {:+.2} at depth 1 (the depth-2 prompt above its depth-1 twin in {:.2} of the pairs); circuit alone {:+.2} and {:+.2} ({:.2})",
        pairs.len(),
        mean_sd(&ld_full[0]).0,
        mean_sd(&ld_full[1]).0,
        acc(&ld_full[0], &ld_full[1]),
        mean_sd(&ld_circ[0]).0,
        mean_sd(&ld_circ[1]).0,
        acc(&ld_circ[0], &ld_circ[1]),
    );
    println!("{task_stats}");

    // The full model's task loss, and with each node mean-ablated alone.
    let data = TaskData::new(&lab.tok, TASK, &pairs, lab.cfg.block_size).unwrap();
    let none = NodeSet::uniform(&lab.cfg, false);
    let full = ablate::evaluate(lab.model(), &data, &none, &lab.means).unwrap();
    let alone = ablate::evaluate(
        lab.model(),
        &data,
        &NodeSet::of(&lab.cfg, &nodes).inverted(),
        &lab.means,
    )
    .unwrap();
    println!(
        "task loss (halved): full {:.4} (acc {:.2}), circuit alone {:.4} (acc {:.2})",
        halved(full.loss),
        full.accuracy,
        halved(alone.loss),
        alone.accuracy
    );

    // Probes.
    let probe_runs: Vec<RunSummary> = PROBES.iter().map(|(_, t)| lab.run(t, &[])).collect();
    let probe_circ: Vec<RunSummary> = PROBES.iter().map(|(_, t)| lab.run_circuit(t)).collect();
    for (i, r) in probe_runs.iter().enumerate() {
        println!(
            "probe {:?}: logit diff {:+.3} (circuit alone {:+.3}), top {}",
            PROBES[i].1,
            r.logit_diff().unwrap(),
            probe_circ[i].logit_diff().unwrap(),
            top_token(r)
        );
    }
    let p0 = &probe_runs[0];
    let p0_last = p0.tokens.len() - 1;

    // Per node facts.
    let mut facts: Vec<NodeFacts> = Vec::new();
    for n in &nodes {
        let scan = lab.scan().node(n).unwrap();
        let top_pivots = pivot_counts(&scan.top, &lab.tok, EXEMPLARS);
        let bottom_pivots = pivot_counts(&scan.bottom, &lab.tok, EXEMPLARS);
        let v = &vals[n];
        let (m2, s2) = mean_sd(&v[0]);
        let (m1, s1) = mean_sd(&v[1]);
        let pooled = ((s2 * s2 + s1 * s1) / 2.0).sqrt();
        let peak = p0.acts[n]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(i, v)| (i, *v))
            .unwrap();
        let ablated = lab.run(
            PROBES[0].1,
            &[Ablation {
                node: *n,
                kind: AblationKind::Mean,
            }],
        );
        let fe = ablate::evaluate(lab.model(), &data, &NodeSet::of(&lab.cfg, &[*n]), &lab.means).unwrap();
        let cm = |c: usize| {
            let (s, k) = by_class[n][c];
            s / k.max(1) as f64
        };
        facts.push(NodeFacts {
            id: *n,
            at_open2: cm(0),
            at_open1: cm(1),
            at_close: cm(2),
            at_other: cm(3),
            top_pivots,
            bottom_pivots,
            depth2: m2,
            depth1: m1,
            pooled_sd: pooled.max(1e-3 * scan.std as f64),
            hard2: mean_sd(&v[2]).0,
            hard1: mean_sd(&v[3]).0,
            probe_last: probe_runs.iter().map(|r| *r.acts[n].last().unwrap()).collect(),
            peak,
            delta_circuit: lab.circuit.node(n).and_then(|c| c.delta_halved(&lab.circuit.losses)),
            full_ablated_loss: fe.loss,
            full_ablated_acc: fe.accuracy,
            probe_ld_ablated: ablated.logit_diff().unwrap(),
            scan,
        });
    }

    println!("\nnode | top pivots | bottom pivots | d2 d1 (d) | hard d2 d1 | peak on probe 0 | Δcircuit | full loss ablated | ld ablated");
    for f in &facts {
        println!(
            "{} | {} | {} | {:+.3} {:+.3} ({:+.2}) | {:+.3} {:+.3} | {:+.3}@{} `{}` | {} | {:.4} | {:+.3}",
            f.id,
            show_counts(&f.top_pivots),
            show_counts(&f.bottom_pivots),
            f.depth2,
            f.depth1,
            f.depth_d(),
            f.hard2,
            f.hard1,
            f.peak.1,
            f.peak.0,
            tok_show(&p0.tokens[f.peak.0]),
            f.delta_circuit.map_or("—".into(), |x| format!("{x:+.4}")),
            halved(f.full_ablated_loss),
            f.probe_ld_ablated
        );
    }

    // Attention of the circuit's heads on probe 0 (depth 2) and probe 1 (depth 1) at the last token.
    let mut attn_lines = Vec::new();
    for (r, name) in [(&probe_runs[0], PROBES[0].1), (&probe_runs[1], PROBES[1].1)] {
        let last = r.tokens.len() - 1;
        for ((l, h), pat) in &r.attention {
            let row = pat.row(last);
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let tops: Vec<String> = order
                .iter()
                .take(4)
                .map(|&j| format!("`{}`@{j} {:.2}", tok_show(&r.tokens[j]), row[j]))
                .collect();
            let line = format!(
                "head {l}.{h} on `{}` at the last token: {} (sink {:.2})",
                tok_show(name),
                tops.join(", "),
                pat.sink[last]
            );
            println!("{line}");
            attn_lines.push(line);
        }
    }

    let roles = Roles::find(&facts, &probe_runs, d_head);
    println!(
        "roles: detectors {:?}, carry {:?}, open head {:?}, depth {:?}, gate {:?} (value {:?})",
        roles.detectors, roles.carry, roles.open_head, roles.depth, roles.gate, roles.gate_value
    );

    // Adversarial prompts.
    // The depth channels the attacks are read on: depth-selective nodes after the first attention that the
    // circuit needs, most selective first.
    let key_nodes: Vec<NodeId> = {
        let mut v: Vec<&NodeFacts> = facts
            .iter()
            .filter(|f| !f.token_local() && f.delta_circuit.unwrap_or(0.0) >= 2.0 * DELTA_MATTERS)
            .collect();
        v.sort_by(|a, b| b.depth_d().abs().total_cmp(&a.depth_d().abs()));
        v.iter().take(5).map(|f| f.id).collect()
    };
    println!("attack evidence on: {key_nodes:?}");
    let mut attack_results = Vec::new();
    let mut attack_evidence = Vec::new();
    for a in attacks() {
        let r = lab.run(&a.text, &[]);
        let rc = lab.run_circuit(&a.text);
        let ld = r.logit_diff().unwrap();
        let ldc = rc.logit_diff().unwrap();
        let predicts_nested = ld > 0.0;
        let worked = predicts_nested != a.should_be_nested;
        let line = format!(
            "{}: {:?} ({} tokens): logit diff `]]\\n` − `]\\n` {:+.3} (circuit alone {:+.3}); correct is {}; the model's top token {}; attack {}",
            a.name,
            a.text,
            r.tokens.len(),
            ld,
            ldc,
            if a.should_be_nested { "`]]\\n`" } else { "`]\\n`" },
            top_token(&r),
            if worked { "WORKED" } else { "failed" }
        );
        println!("{line}");
        let note = format!(
            "attack: {}. Correct: {}; logit diff {:+.3} → the model prefers {} (circuit alone {:+.3}); the attack {}. Why it might work: {}.",
            a.name,
            if a.should_be_nested { "`]]\\n`" } else { "`]\\n`" },
            ld,
            if predicts_nested { "`]]\\n`" } else { "`]\\n`" },
            ldc,
            if worked { "worked" } else { "failed" },
            a.why
        );
        attack_evidence.push(prompt_evidence(&r, r.tokens.len() - 1, &key_nodes, note));
        attack_results.push(AttackResult {
            attack: a,
            ld,
            ldc,
            worked,
            tokens: r.tokens.clone(),
            head_sinks: r
                .attention
                .iter()
                .map(|(k, p)| (*k, p.sink[r.tokens.len() - 1]))
                .collect(),
            depth_signal: roles.depth.and_then(|n| r.acts.get(&n)).and_then(|v| v.last().copied()),
        });
    }

    // The session.
    let model_name = Path::new(MODEL).file_name().unwrap().to_string_lossy().into_owned();
    let mut session = Session::new(
        SessionModel {
            fingerprint: lab.fingerprint.clone(),
            name: Some(model_name),
            path: Some(MODEL.to_string()),
        },
        CircuitRef {
            path: circuit_path.clone(),
            task: TASK.into(),
            nodes: nodes.len(),
        },
    );
    // Stable times: the day the analysis was made, not the run's second.
    session.created = "2026-11-25T00:00:00Z".into();
    session.modified = session.created.clone();
    let p0_ld = p0.logit_diff().unwrap();
    for f in &facts {
        let mut a = label_node(f, d_head, full.loss, p0_ld, &p0.tokens);
        // Probes at the last token (depth 2 and depth 1 of each case), the peak, the ablations.
        for (i, (name, _)) in PROBES.iter().enumerate().take(2) {
            let r = &probe_runs[i];
            a.evidence.push(prompt_evidence(
                r,
                r.tokens.len() - 1,
                &[f.id],
                format!("probe: {name}"),
            ));
        }
        if f.peak.0 != p0_last {
            a.evidence.push(prompt_evidence(
                p0,
                f.peak.0,
                &[f.id],
                "probe: where this node's |value| peaks on the depth-2 probe".into(),
            ));
        }
        let spec = vec![AblationSpec {
            node: f.id,
            mode: AblationMode::Mean,
        }];
        if let Some(al) = lab.circuit.node(&f.id).and_then(|c| c.ablated_loss) {
            a.evidence.push(Evidence::Ablation {
                ablations: spec.clone(),
                prompt: String::new(),
                logit_diff_before: None,
                logit_diff_after: None,
                loss_before: Some(lab.circuit.losses.circuit),
                loss_after: Some(al),
                note: "from the circuit file: the circuit alone (rest of the model mean-ablated) with this node also mean-ablated".into(),
            });
        }
        a.evidence.push(Evidence::Ablation {
            ablations: spec,
            prompt: PROBES[0].1.into(),
            logit_diff_before: Some(p0_ld),
            logit_diff_after: Some(f.probe_ld_ablated),
            loss_before: Some(full.loss),
            loss_after: Some(f.full_ablated_loss),
            note: format!("full model, this node alone mean-ablated (scan means); loss over {PAIRS} test pairs"),
        });
        if key_nodes.contains(&f.id) {
            a.evidence.extend(attack_evidence.iter().cloned());
        }
        session.annotations.insert(f.id, a);
    }
    for ((name, text), run) in PROBES.iter().zip(&probe_runs) {
        session.saved_prompts.push(SavedPrompt {
            name: format!("probe: {name}"),
            text: text.to_string(),
            logit_diff: run.logit_diff(),
            ablations: Vec::new(),
        });
    }
    for a in &attack_results {
        session.saved_prompts.push(SavedPrompt {
            name: format!("attack: {}", a.attack.name),
            text: a.attack.text.clone(),
            logit_diff: Some(a.ld),
            ablations: Vec::new(),
        });
    }
    session.prompt = PROBES[0].1.into();
    session.pinned_prompt = Some(PROBES[1].1.into());
    session.cursor = key_nodes.first().copied();
    session.marks = key_nodes.clone();

    let summary = mechanism(&Mechanism {
        roles: &roles,
        facts: &facts,
        circuit: &lab.circuit,
        task_stats: &task_stats,
        full_loss: full.loss,
        full_acc: full.accuracy,
        alone_loss: alone.loss,
        alone_acc: alone.accuracy,
        attacks: &attack_results,
        attn_lines: &attn_lines,
    });
    println!("\n{summary}");
    session.summary = summary;

    std::fs::create_dir_all("sessions").unwrap();
    store::save(Path::new(SESSION), &session).unwrap();
    let md = workbench::report::markdown(&session, &lab.circuit, Some(lab.scan()), &lab.tok, 3, false);
    std::fs::create_dir_all("docs").unwrap();
    store::write_atomic(Path::new(REPORT), md.as_bytes()).unwrap();
    println!("\nwrote {SESSION} and {REPORT}");
}

struct AttackResult {
    attack: Attack,
    /// Logit difference `]]\n` − `]\n` at the last token: full model, circuit alone.
    ld: f32,
    ldc: f32,
    worked: bool,
    tokens: Vec<String>,
    /// (layer, head) → the sink's share of its attention at the last token.
    head_sinks: BTreeMap<(usize, usize), f32>,
    /// The depth signal ([`Roles::depth`]) at the last token.
    depth_signal: Option<f32>,
}

fn end_node(e: &EdgeEnd) -> Option<NodeId> {
    match e {
        EdgeEnd::Node(n) => Some(*n),
        _ => None,
    }
}

/// A layer-1 head "gates" on depth when its sink share differs by at least this much between the probes.
const GATE_SINK: f32 = 0.1;

/// The nodes and heads the mechanism write-up is about, chosen from the measurements by fixed rules, so that
/// the text follows the circuit of whatever model the bundled one is.
struct Roles {
    d_head: usize,
    /// Embedding channels read by attention 0 that respond most to ` [[`-tokens, by circuit Δ (up to two).
    detectors: Vec<NodeId>,
    /// Attention-0 q/k/v channels with the largest circuit Δ (up to three).
    carry: Vec<NodeId>,
    /// The layer-0 head with the most last-token attention on ` [[` tokens on the depth-2 probe:
    /// (head, share at depth 2, share at depth 1, sink share at depth 2).
    open_head: Option<(usize, f32, f32, f32)>,
    /// The attention-0 write the circuit needs (Δ ≥ DELTA_MATTERS) that separates the depths most.
    depth: Option<NodeId>,
    /// The layer-1 head whose sink share differs most between the depth-2 and depth-1 probes:
    /// (head, sink share at depth 2, at depth 1).
    gate: Option<(usize, f32, f32)>,
    /// That head's most depth-selective value channel in the circuit.
    gate_value: Option<NodeId>,
}

impl Roles {
    fn find(facts: &[NodeFacts], probes: &[RunSummary], d_head: usize) -> Roles {
        let by_delta = |pred: &dyn Fn(&NodeFacts) -> bool, n: usize| -> Vec<NodeId> {
            let mut v: Vec<&NodeFacts> = facts.iter().filter(|f| pred(f)).collect();
            v.sort_by(|a, b| {
                b.delta_circuit
                    .unwrap_or(0.0)
                    .total_cmp(&a.delta_circuit.unwrap_or(0.0))
            });
            v.iter().take(n).map(|f| f.id).collect()
        };
        let detectors = by_delta(
            &|f| {
                f.id.layer == Some(0) && f.id.site == Site::AttnActIn && {
                    let (class, z) = f.bracket_response();
                    class == "` [[`" && z >= BRACKET_Z
                }
            },
            2,
        );
        let carry = by_delta(
            &|f| f.id.layer == Some(0) && matches!(f.id.site, Site::AttnQ | Site::AttnK | Site::AttnV),
            3,
        );
        // (open share, sink share) of head (l, h) at the last token of a probe.
        let attn = |probe: usize, l: usize, h: usize| -> Option<(f32, f32)> {
            let r = probes.get(probe)?;
            let last = r.tokens.len() - 1;
            let p = r.attention.get(&(l, h))?;
            let row = p.row(last);
            let open: f32 = (0..row.len())
                .filter(|&j| bracket_class(&r.tokens[j]) == 0)
                .map(|j| row[j])
                .sum();
            Some((open, p.sink[last]))
        };
        let heads = |l: usize| -> Vec<usize> {
            let mut v: Vec<usize> = probes
                .first()
                .map(|r| r.attention.keys().filter(|k| k.0 == l).map(|k| k.1).collect())
                .unwrap_or_default();
            v.sort();
            v
        };
        let open_head = heads(0)
            .into_iter()
            .filter_map(|h| {
                let (o2, sink) = attn(0, 0, h)?;
                let (o1, _) = attn(1, 0, h)?;
                Some((h, o2, o1, sink))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let depth = facts
            .iter()
            .filter(|f| f.id.layer == Some(0) && f.id.site == Site::AttnResidDelta)
            .filter(|f| f.delta_circuit.unwrap_or(0.0) >= DELTA_MATTERS)
            .max_by(|a, b| a.depth_d().abs().total_cmp(&b.depth_d().abs()))
            .map(|f| f.id);
        let gate = heads(1)
            .into_iter()
            .filter_map(|h| Some((h, attn(0, 1, h)?.1, attn(1, 1, h)?.1)))
            .max_by(|a, b| (a.1 - a.2).abs().total_cmp(&(b.1 - b.2).abs()));
        let gate_value = gate.and_then(|(h, _, _)| {
            facts
                .iter()
                .filter(|f| f.id.layer == Some(1) && f.id.site == Site::AttnV && f.id.index / d_head == h)
                .max_by(|a, b| a.depth_d().abs().total_cmp(&b.depth_d().abs()))
                .map(|f| f.id)
        });
        Roles {
            d_head,
            detectors,
            carry,
            open_head,
            depth,
            gate,
            gate_value,
        }
    }
}

struct Mechanism<'a> {
    roles: &'a Roles,
    facts: &'a [NodeFacts],
    circuit: &'a CircuitFile,
    task_stats: &'a str,
    full_loss: f64,
    full_acc: f64,
    alone_loss: f64,
    alone_acc: f64,
    attacks: &'a [AttackResult],
    attn_lines: &'a [String],
}

/// The mechanism write-up: the text is the analyst's (written from what this generator printed), every number in
/// it is measured here.
fn mechanism(m: &Mechanism) -> String {
    let fact = |id: &str| -> Option<&NodeFacts> {
        let id: NodeId = id.parse().ok()?;
        m.facts.iter().find(|f| f.id == id)
    };
    let delta = |id: &str| {
        fact(id)
            .and_then(|f| f.delta_circuit)
            .map_or("—".into(), |d| format!("{d:+.3}"))
    };
    let depth = |id: &str| {
        fact(id).map_or("—".into(), |f| {
            format!(
                "{:+.2} at depth 2 vs {:+.2} at depth 1, d = {:+.2}",
                f.depth2,
                f.depth1,
                f.depth_d()
            )
        })
    };
    let open2 = |id: &str| {
        fact(id).map_or("—".into(), |f| {
            format!(
                "{:+.2} at ` [[`-like tokens vs {:+.2} elsewhere",
                f.at_open2, f.at_other
            )
        })
    };
    let count = |pred: &dyn Fn(&NodeFacts) -> bool| m.facts.iter().filter(|f| pred(f)).count();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Generated by tests/example_session.rs: every label, status and number below is circuitscope's own measurement (scan exemplars, prompt-lab runs with the scan's means for ablation, the circuit file's per-node ablations, task-loss ablations); the prose is the analyst's reading of them.\n"
    );
    let _ = writeln!(
        s,
        "Behaviour: {}. Task loss (halved, {PAIRS} test pairs): full model {:.4} (accuracy {:.2}), circuit alone {:.4} (accuracy {:.2}).\n",
        m.task_stats,
        halved(m.full_loss),
        m.full_acc,
        halved(m.alone_loss),
        m.alone_acc
    );
    let sup = |pred: &dyn Fn(&NodeFacts) -> bool| {
        let n = count(pred);
        let k = m
            .facts
            .iter()
            .filter(|f| pred(f))
            .filter(|f| {
                f.delta_circuit.unwrap_or(0.0) >= DELTA_MATTERS
                    && (f.depth_d().abs() >= DEPTH_D && !f.token_local() || f.bracket_response().1.abs() >= BRACKET_Z)
            })
            .count();
        format!("{n} ({k} supported)")
    };
    let _ = writeln!(
        s,
        "Roles ({} nodes). Token-local layer-0 channels (embedding channels read by attention 0 and the q/k/v made from them): {}. Layer-0 outputs and MLP 0: {}. Layer-1 attention (its inputs, q/k/v, outputs): {}. MLP 1: {}. Readout (final residual): {}. Many nodes are weakly involved: of the {} nodes the prune kept to reach the target loss, {} change the circuit's loss by less than {DELTA_MATTERS} when ablated.\n",
        m.facts.len(),
        sup(&|f: &NodeFacts| f.token_local()),
        sup(&|f: &NodeFacts| f.id.layer == Some(0) && !f.token_local()),
        sup(&|f: &NodeFacts| f.id.layer == Some(1) && f.id.site.is_attn()),
        sup(&|f: &NodeFacts| f.id.layer == Some(1) && !f.id.site.is_attn()),
        sup(&|f: &NodeFacts| f.id.site == Site::FinalResid),
        m.facts.len(),
        count(&|f: &NodeFacts| f.delta_circuit.unwrap_or(0.0) < DELTA_MATTERS),
    );
    let r = m.roles;
    let name = |n: Option<NodeId>| n.map_or("—".to_string(), |n| format!("`{n}`"));
    let dets: Vec<String> = r
        .detectors
        .iter()
        .map(|id| format!("`{id}` ({}, Δ {})", open2(&id.to_string()), delta(&id.to_string())))
        .collect();
    let _ = writeln!(
        s,
        "1. Detect. ` [[` is a single token in this tokenizer (so are ` [[-`, ` [[\"`, ` [['` and ` [[[`), so \"a nested list opens here\" is visible in one token's embedding. The embedding channels the circuit needs most among those that respond to ` [[`-tokens: {}.\n",
        if dets.is_empty() { "none of the circuit's embedding channels responds to ` [[`".to_string() } else { dets.join("; ") }
    );
    let carry: Vec<String> = r
        .carry
        .iter()
        .map(|id| format!("`{id}` ({}, Δ {})", open2(&id.to_string()), delta(&id.to_string())))
        .collect();
    let head_line = r.open_head.map_or(String::new(), |(h, o2, o1, sink)| {
        format!(
            " Head 0.{h} attends most to ` [[` tokens: {o2:.2} of its last-token attention on the depth-2 probe, {o1:.2} on the depth-1 probe (sink {sink:.2})."
        )
    });
    let writers: Vec<String> = match r.depth {
        Some(d) => {
            let mut v: Vec<usize> = m
                .circuit
                .edges
                .iter()
                .filter(|e| end_node(&e.target) == Some(d))
                .filter_map(|e| end_node(&e.source))
                .filter(|n| n.site == Site::AttnV && n.layer == Some(0))
                .map(|n| n.index / r.d_head)
                .collect();
            v.sort();
            v.dedup();
            v.iter().map(|h| format!("0.{h}")).collect()
        }
        None => Vec::new(),
    };
    let depth_id = r.depth.map(|d| d.to_string()).unwrap_or_default();
    let _ = writeln!(
        s,
        "2. Carry. Attention 0 moves it to the last token. Its q/k/v channels with the largest ablations: {}.{} What arrives is a depth signal: the most depth-selective attention-0 write the circuit needs is {}, {} at the last token{}. {}\n",
        if carry.is_empty() { "none".to_string() } else { carry.join("; ") },
        head_line,
        name(r.depth),
        depth(&depth_id),
        if writers.is_empty() {
            String::new()
        } else {
            format!(
                "; the circuit's edges into it come from value channels of heads {} (hedged: we did not ablate heads separately)",
                writers.join(", ")
            )
        },
        r.depth.map_or(String::new(), |d| format!(
            "It is read on as `1.attn.act_in[{c}]` ({}) and `final_resid[{c}]` ({}).",
            depth(&format!("1.attn.act_in[{}]", d.index)),
            depth(&format!("final_resid[{}]", d.index)),
            c = d.index
        ))
    );
    let gate = match r.gate {
        Some((h, s2, s1)) if (s2 - s1).abs() >= GATE_SINK => {
            let reads: Vec<String> = r.depth.map_or(Vec::new(), |d| {
                m.circuit
                    .edges
                    .iter()
                    .filter(|e| {
                        end_node(&e.source)
                            .is_some_and(|n| n.layer == Some(1) && n.site == Site::AttnActIn && n.index == d.index)
                    })
                    .filter(|e| {
                        end_node(&e.target)
                            .is_some_and(|n| matches!(n.site, Site::AttnK | Site::AttnQ) && n.index / r.d_head == h)
                    })
                    .map(|e| {
                        format!(
                            "`{}` (weight {:+.2}, edge ablation Δ {}; the node's own Δ {})",
                            e.target,
                            e.weight.unwrap_or(0.0),
                            e.ablation_delta.map_or("—".into(), |x| format!("{:+.3}", halved(x))),
                            delta(&e.target.to_string())
                        )
                    })
                    .collect()
            });
            format!(
                "Head 1.{h} behaves like a depth gate: on the depth-2 probe it puts {s2:.2} of its last-token attention on the sink, on the depth-1 probe {s1:.2}. {} Its most depth-selective value channel is {} ({}).",
                if reads.is_empty() {
                    "None of its query or key channels reads the depth channel directly in the circuit.".to_string()
                } else {
                    format!("It reads the depth channel through {}.", reads.join(", "))
                },
                name(r.gate_value),
                r.gate_value.map_or("—".into(), |v| depth(&v.to_string()))
            )
        }
        Some((h, s2, s1)) => format!(
            "No layer-1 head of the circuit gates on depth through its sink: the largest difference, head 1.{h}'s, is {s2:.2} at depth 2 vs {s1:.2} at depth 1."
        ),
        None => "The circuit keeps no layer-1 head.".into(),
    };
    let _ = writeln!(s, "3. Gate (layer 1, least certain). {gate}\n");
    let mut readout: Vec<&NodeFacts> = m.facts.iter().filter(|f| f.id.site == Site::FinalResid).collect();
    readout.sort_by(|a, b| b.depth_d().abs().total_cmp(&a.depth_d().abs()));
    let most_needed = m.facts.iter().filter(|f| f.id.site == Site::FinalResid).max_by(|a, b| {
        a.delta_circuit
            .unwrap_or(0.0)
            .total_cmp(&b.delta_circuit.unwrap_or(0.0))
    });
    let top_readout = readout.first().map(|f| f.id.index);
    let mlp_feed = top_readout
        .map(|c| format!("1.mlp.resid_delta[{c}]"))
        .filter(|id| fact(id).is_some())
        .map_or(String::new(), |id| {
            format!(" `{id}` ({}) feeds the most selective one.", depth(&id))
        });
    let _ = writeln!(
        s,
        "4. Decide. The unembedding reads the final residual; its most depth-selective channels are {}.{} The readout channel the circuit needs most is {}.\n",
        readout
            .iter()
            .take(4)
            .map(|f| format!("`{}` (d = {:+.2}, Δ {})", f.id, f.depth_d(), f.delta_circuit.map_or("—".into(), |d| format!("{d:+.3}"))))
            .collect::<Vec<_>>()
            .join(", "),
        mlp_feed,
        most_needed.map_or("—".into(), |f| format!(
            "`{}` (Δ {}, d = {:+.2}{})",
            f.id,
            f.delta_circuit.map_or("—".into(), |d| format!("{d:+.3}")),
            f.depth_d(),
            if f.depth_d().abs() < DEPTH_D { "; it does not separate the depths: a bias toward closing tokens, role unclear" } else { "" }
        ))
    );
    let _ = writeln!(
        s,
        "In short: ` [[`-token detectors in the embedding, attention 0 summing them into a depth signal ({}) at the last token, {}, and readout channels that turn the difference into `]]\\n` vs `]\\n`. On the hard minimal pairs (rows closed before the last one) the depth signal is {} at depth 2 vs {} at depth 1, against {} vs {} over all pairs: the earlier `],` tokens also draw attention.\n",
        name(r.depth),
        match r.gate {
            Some((h, s2, s1)) if (s2 - s1).abs() >= GATE_SINK => format!("a layer-1 head (1.{h}) whose sink share differs between the depths"),
            _ => "no layer-1 sink gate".to_string(),
        },
        fact(&depth_id).map_or("—".into(), |f| format!("{:+.2}", f.hard2)),
        fact(&depth_id).map_or("—".into(), |f| format!("{:+.2}", f.hard1)),
        fact(&depth_id).map_or("—".into(), |f| format!("{:+.2}", f.depth2)),
        fact(&depth_id).map_or("—".into(), |f| format!("{:+.2}", f.depth1)),
    );
    let gate_head = r.gate.map(|g| g.0);
    let _ = writeln!(
        s,
        "Adversarial prompts (logit difference `]]\\n` − `]\\n` at the last token, full model; circuit alone in brackets; the depth signal {} and head 1.{}'s sink share there):",
        name(r.depth),
        gate_head.map_or("—".into(), |h| h.to_string())
    );
    for a in m.attacks {
        let _ = writeln!(
            s,
            "- {}: {:+.2} ({:+.2}), depth signal {:+.2}, sink {:.2}; {} tokens ({}); correct {}: {}",
            a.attack.name,
            a.ld,
            a.ldc,
            a.depth_signal.unwrap_or(f32::NAN),
            gate_head
                .and_then(|h| a.head_sinks.get(&(1, h)).copied())
                .unwrap_or(f32::NAN),
            a.tokens.len(),
            if a.tokens.len() <= 16 {
                a.tokens
                    .iter()
                    .map(|t| format!("`{}`", tok_show(t)))
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                "…".into()
            },
            if a.attack.should_be_nested { "`]]\\n`" } else { "`]\\n`" },
            if a.worked {
                "the attack WORKED"
            } else {
                "the attack failed"
            }
        );
    }
    let _ = writeln!(s, "\n{}", attack_reading(m.attacks, m.roles));
    let _ = writeln!(
        s,
        "Attention at the last token of the hard probes:\n{}",
        m.attn_lines.join("\n")
    );
    s
}

/// What the attacks show, read against the mechanism (the analyst's text; the numbers and the verdicts measured).
fn attack_reading(attacks: &[AttackResult], roles: &Roles) -> String {
    let find = |prefix: &str| attacks.iter().find(|a| a.attack.name.starts_with(prefix));
    let verdict = |a: Option<&AttackResult>| match a {
        Some(a) if a.worked => format!("worked ({:+.2})", a.ld),
        Some(a) => format!("failed ({:+.2})", a.ld),
        None => "was not run".into(),
    };
    let comment = find("distractor `# [[`");
    let string = find("distractor `[[` in a string");
    let early = find("nested list closed early");
    let two = find("two nested lists");
    let rows: Vec<&AttackResult> = attacks
        .iter()
        .filter(|a| a.attack.name.starts_with("long nested row"))
        .collect();
    let first_flip = rows.iter().find(|a| a.worked);
    let mut s = String::from("Reading. ");
    let _ = write!(
        s,
        "The comment distractor {}: `# [[` tokenizes as `#`, ` [[`, the very token the embedding detectors ({}) respond to, and nothing in the circuit reads the comment context. The string distractor {}: inside `\"[[\"` the brackets are the tokens `[`, `[`, not ` [[`, so the detectors stay silent — the circuit counts a token, not brackets. ",
        verdict(comment),
        roles.detectors.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", "),
        verdict(string)
    );
    let _ = write!(
        s,
        "Closing a nested list early and opening a flat one {} on the full model, and {} on the circuit alone ({}); closing two nested lists {} on the model, {} on the circuit ({}).{} ",
        verdict(early),
        if early.is_some_and(|a| (a.ldc > 0.0) != a.attack.should_be_nested) { "worked" } else { "failed" },
        early.map_or("—".into(), |a| format!("{:+.2}", a.ldc)),
        verdict(two),
        if two.is_some_and(|a| (a.ldc > 0.0) != a.attack.should_be_nested) { "worked" } else { "failed" },
        two.map_or("—".into(), |a| format!("{:+.2}", a.ldc)),
        if early.is_some_and(|a| !a.worked && (a.ldc > 0.0) != a.attack.should_be_nested) {
            " Where an attack fools the circuit but not the model, the model has something the circuit lacks that notices the `]]` closers: the depth signal counts openers."
        } else {
            ""
        }
    );
    let _ = write!(
        s,
        "Dilution: a nested list whose row grows {}; the depth signal along the way: {}; head 1.{}'s sink share: {}. The circuit alone on the longest row: {}.",
        first_flip.map_or("never flips to `]\\n` within the context".into(), |a| format!(
            "flips to `]\\n` by {} ({} tokens)",
            a.attack.name.trim_start_matches("long nested row: "),
            a.tokens.len()
        )),
        rows.iter()
            .map(|a| format!("{}: {:+.2}", a.attack.name.trim_start_matches("long nested row: "), a.depth_signal.unwrap_or(f32::NAN)))
            .collect::<Vec<_>>()
            .join(", "),
        roles.gate.map_or("—".into(), |g| g.0.to_string()),
        rows.iter()
            .map(|a| format!("{:.2}", roles.gate.and_then(|g| a.head_sinks.get(&(1, g.0)).copied()).unwrap_or(f32::NAN)))
            .collect::<Vec<_>>()
            .join(" → "),
        rows.last().map_or("—".into(), |a| format!("{:+.2}", a.ldc))
    );
    s.push('\n');
    s
}
