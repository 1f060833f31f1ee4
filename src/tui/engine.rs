//! The engine worker: owns the model, the tokenizer and the scan, and answers requests with owned summaries
//! (`Vec<f32>`, strings), so that the UI never holds a tensor and drawing never waits for a forward pass.
//!
//! [`Engine::handle`] is synchronous (tests and the benchmark call it directly); [`spawn`] runs it on a thread
//! that posts every reply as a [`Msg::Engine`] on the UI's one channel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use candle_core::Tensor;

use super::msg::Msg;
use super::scan_source::{NodeStats, ScanSource};
use crate::circuit::{CircuitFile, Exemplar, NodeId, QuantileExemplars, Site};
use crate::data::tasks::{self, Split, Task};
use crate::model::{Action, Checkpoint, Config, Gpt, Hooks, Intervention};
use crate::tokenize::Tokenizer;

/// How many task pairs the task view and the fallback means use.
const TASK_PAIRS: usize = 8;
/// How many next-token candidates a run reports.
const TOP_NEXT: usize = 8;
/// Held-out task pairs behind a run's task loss (measured once per distinct set of ablations).
const TASK_LOSS_PAIRS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AblationKind {
    Zero,
    Mean,
}

impl AblationKind {
    pub fn name(self) -> &'static str {
        match self {
            AblationKind::Zero => "zero",
            AblationKind::Mean => "mean",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ablation {
    pub node: NodeId,
    pub kind: AblationKind,
}

#[derive(Debug, Clone)]
pub enum Request {
    /// Run a prompt with the circuit's hooks recorded and the ablations applied.
    Run {
        id: u64,
        text: String,
        ablations: Vec<Ablation>,
    },
    /// A run of the pinned baseline prompt (no ablations); never skipped as superseded.
    PinRun { id: u64, text: String },
    /// Statistics, exemplars, task view and vocabulary links of one node.
    NodeDetail { node: NodeId },
    /// Insert `fragment` repeated n times (n = 0..=max_n) at byte `at` of `text`; report the node's value at
    /// the last token and the prediction for each n.
    Sweep {
        text: String,
        at: usize,
        fragment: String,
        max_n: usize,
        node: NodeId,
        ablations: Vec<Ablation>,
    },
    /// The embedding tab's view of one residual channel: its wte column and a window of wpe.
    Embedding { channel: usize },
    /// Write the markdown report of a session (the engine holds the scan and the tokenizer).
    Export {
        session: Box<crate::session::Session>,
        circuit: Box<CircuitFile>,
        path: std::path::PathBuf,
    },
}

/// The attention of one head on one prompt: (T, T) weights, query-major, and the sink's weight per query.
#[derive(Debug, Clone, PartialEq)]
pub struct AttnPattern {
    pub t: usize,
    pub weights: Vec<f32>,
    pub sink: Vec<f32>,
}

impl AttnPattern {
    /// The weights of query `q` on keys 0..=q.
    pub fn row(&self, q: usize) -> &[f32] {
        &self.weights[q * self.t..q * self.t + q + 1]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub id: u64,
    pub text: String,
    pub ids: Vec<u32>,
    /// Display text of each token.
    pub tokens: Vec<String>,
    /// Every circuit node's activation at every token.
    pub acts: BTreeMap<NodeId, Vec<f32>>,
    /// The next token after the last one: (display text, probability), most probable first.
    pub top: Vec<(String, f32)>,
    /// Logits of the task's two targets at the last token.
    pub target_logits: Option<(f32, f32)>,
    /// (layer, head) → pattern, for the heads with q or k nodes in the circuit.
    pub attention: BTreeMap<(usize, usize), AttnPattern>,
    pub ablations: Vec<Ablation>,
    /// The task loss (raw, 2× scale) on held-out task pairs under this run's ablations; None without a task.
    pub task_loss: Option<f64>,
    pub elapsed_ms: f64,
}

impl RunSummary {
    /// Logit of target A minus target B at the last token.
    pub fn logit_diff(&self) -> Option<f32> {
        self.target_logits.map(|(a, b)| a - b)
    }
}

/// Tokens with one node's activation at each, as shown in heat strips.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenActs {
    pub tokens: Vec<String>,
    pub acts: Vec<f32>,
    /// The boxed token, if any.
    pub pivot: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantileView {
    pub quantile: f64,
    pub bottom: Vec<TokenActs>,
    pub top: Vec<TokenActs>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskView {
    pub class_a: Vec<TokenActs>,
    pub class_b: Vec<TokenActs>,
    /// class B − class A, position by position over the common length (class B's tokens).
    pub diff: Vec<TokenActs>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeDetail {
    pub node: NodeId,
    pub stats: Option<NodeStats>,
    /// From the scan, else from the circuit file.
    pub quantiles: Vec<QuantileView>,
    pub task: TaskView,
    /// Residual channels: the tokens whose embedding writes the channel most, (token, weight).
    pub embed_tokens: Vec<(String, f32)>,
    /// Residual channels: the tokens whose unembedding reads the channel most (promoted by a positive value).
    pub unembed_tokens: Vec<(String, f32)>,
}

/// How many channels of wpe the embedding view shows around the selected one.
pub const WPE_WINDOW: usize = 16;
/// Histogram bins of a wte column's nonzero values.
pub const EMBED_BINS: usize = 40;

/// One residual channel as the embedding tab shows it (the reference viewer's "wte/wpe viz").
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingView {
    pub channel: usize,
    pub d_model: usize,
    pub vocab: usize,
    /// Tokens whose wte entry in this channel is nonzero.
    pub nonzero: usize,
    /// The 20 largest and 20 smallest nonzero entries of wte[:, channel]: (token id, display text, weight).
    pub top: Vec<(u32, String, f32)>,
    pub bottom: Vec<(u32, String, f32)>,
    /// Histogram of the column's nonzero values over `range`.
    pub hist: Vec<u64>,
    pub range: (f32, f32),
    /// wpe[:, first..first + channels] as (positions, channels) row-major, when the model has a position table
    /// indexed by residual channel.
    pub wpe: Option<WpeWindow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WpeWindow {
    pub positions: usize,
    pub first: usize,
    pub channels: usize,
    pub values: Vec<f32>,
}

impl WpeWindow {
    pub fn at(&self, pos: usize, ch: usize) -> f32 {
        self.values[pos * self.channels + (ch - self.first)]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub n: usize,
    pub tokens: usize,
    pub value: f32,
    pub logit_diff: Option<f32>,
    pub top: String,
    pub top_prob: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SweepResult {
    pub node: NodeId,
    pub fragment: String,
    pub points: Vec<SweepPoint>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ran(RunSummary),
    /// A run that failed (e.g. the prompt is too long): the request id and the message.
    RunFailed(u64, String),
    Detail(Box<NodeDetail>),
    Swept(SweepResult),
    Embedding(Box<EmbeddingView>),
    Error(String),
    /// A message for the status bar.
    Info(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Tokenize(#[from] crate::tokenize::TokenizeError),
    #[error("{0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, EngineError>;

/// One recorded run, flattened: hook → (T, W) row-major values.
struct Recorded {
    ids: Vec<u32>,
    last_logits: Vec<f32>,
    hooks: BTreeMap<String, (usize, Vec<f32>)>,
}

impl Recorded {
    fn node_values(&self, n: &NodeId) -> Vec<f32> {
        match self.hooks.get(&n.hook_name()) {
            Some((w, v)) => v.chunks(*w).map(|row| row[n.index]).collect(),
            None => vec![0.0; self.ids.len()],
        }
    }
}

pub struct Engine {
    model: Gpt,
    tok: Tokenizer,
    cfg: Config,
    nodes: Vec<NodeId>,
    record_pattern: String,
    sink: Vec<Option<Vec<f32>>>,
    /// (V, D) token embedding and unembedding, row-major.
    wte: Vec<f32>,
    unembed: Vec<f32>,
    /// (rows, cols, values) of the position table, row-major; None when the model has none.
    wpe: Option<(usize, usize, Vec<f32>)>,
    scan: Option<ScanSource>,
    circuit_exemplars: BTreeMap<NodeId, Vec<QuantileExemplars>>,
    task: Option<Box<dyn Task>>,
    target_ids: Option<(u32, u32)>,
    /// Task-pair runs (class A then class B), made on first use.
    task_runs: Option<(Vec<Recorded>, Vec<Recorded>)>,
    /// Mean of each recorded hook over the task prompts: the mean ablation used when there is no scan.
    fallback_means: BTreeMap<String, Vec<f32>>,
    /// Held-out pairs for the task loss, tokenized on first use (None: no task, or its targets are not single
    /// tokens with this tokenizer).
    task_loss_data: Option<Option<crate::analysis::ablate::TaskData>>,
    /// Task loss by ablation set, so that typing in the lab costs no extra evaluation.
    task_loss_cache: BTreeMap<Vec<Ablation>, f64>,
}

impl Engine {
    pub fn new(
        model: Gpt,
        ckpt: &Checkpoint,
        tok: Tokenizer,
        circuit: &CircuitFile,
        task: &str,
        scan: Option<ScanSource>,
    ) -> Result<Engine> {
        let cfg = model.config.clone();
        let nodes = circuit.node_ids();
        let hooks: BTreeSet<String> = nodes.iter().map(|n| n.hook_name()).collect();
        let record_pattern = if hooks.is_empty() {
            // Matches no hook name.
            "$^".to_string()
        } else {
            hooks
                .iter()
                .map(|h| format!("{}$", regex::escape(h)))
                .collect::<Vec<_>>()
                .join("|")
        };
        let mut sink = Vec::new();
        for l in 0..cfg.n_layer {
            sink.push(match ckpt.get(&format!("transformer.h.{l}.attn.attn_imp.sink_logit")) {
                Some(s) => Some(s.to_dense()?.flatten_all()?.to_vec1()?),
                None => None,
            });
        }
        let dense = |name: &str| -> Result<Vec<f32>> {
            let t = ckpt
                .require(name, &[cfg.vocab_size, cfg.d_model])?
                .to_dense()?
                .to_dtype(candle_core::DType::F32)?;
            Ok(t.flatten_all()?.to_vec1()?)
        };
        let wte = dense("transformer.wte.weight")?;
        let unembed = if ckpt.get("lm_head.weight").is_some() {
            dense("lm_head.weight")?
        } else {
            wte.clone()
        };
        let wpe = match ckpt.get("transformer.wpe.weight") {
            Some(t) => {
                let t = t.to_dense()?.to_dtype(candle_core::DType::F32)?;
                match t.dims() {
                    [rows, cols] => Some((*rows, *cols, t.flatten_all()?.to_vec1()?)),
                    _ => None,
                }
            }
            None => None,
        };
        let mut engine = Engine {
            model,
            tok,
            cfg,
            nodes,
            record_pattern,
            sink,
            wte,
            unembed,
            wpe,
            scan,
            circuit_exemplars: circuit.exemplars.clone().unwrap_or_default(),
            task: None,
            target_ids: None,
            task_runs: None,
            fallback_means: BTreeMap::new(),
            task_loss_data: None,
            task_loss_cache: BTreeMap::new(),
        };
        engine.set_task(task);
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Switches the task whose targets and pairs the lab and the task view use; unknown names clear it.
    pub fn set_task(&mut self, name: &str) {
        self.task = tasks::resolve(name).ok();
        self.task_runs = None;
        self.task_loss_data = None;
        self.task_loss_cache.clear();
        self.fallback_means.clear();
        self.target_ids = self.task.as_ref().and_then(|t| {
            let targets = t.targets();
            let a = self.single_token(targets.first()?)?;
            let b = self.single_token(targets.get(1)?)?;
            Some((a, b))
        });
    }

    fn single_token(&self, s: &str) -> Option<u32> {
        match self.tok.encode(s).ok()?.as_slice() {
            [id] => Some(*id),
            _ => None,
        }
    }

    pub fn token_text(&self, id: u32) -> String {
        self.tok.token_display(id)
    }

    /// The markdown report of a session, with the scan's top exemplars.
    pub fn export(&self, session: &crate::session::Session, circuit: &CircuitFile) -> String {
        let exemplars = match &self.scan {
            Some(s) => crate::export::scan_exemplars(s.index(), &self.tok, circuit.node_ids(), 3),
            None => BTreeMap::new(),
        };
        crate::export::markdown(&crate::export::ReportInput {
            session,
            circuit,
            exemplars,
            top_k: 3,
        })
    }

    pub fn handle(&mut self, req: Request) -> Reply {
        match req {
            Request::Export { session, circuit, path } => {
                let md = self.export(&session, &circuit);
                match crate::session::store::write_atomic(&path, md.as_bytes()) {
                    Ok(()) => Reply::Info(format!("exported {}", path.display())),
                    Err(e) => Reply::Error(format!("export failed: {e}")),
                }
            }
            Request::PinRun { id, text } => match self.run(id, &text, &[]) {
                Ok(r) => Reply::Ran(r),
                Err(e) => Reply::RunFailed(id, e.to_string()),
            },
            Request::Run { id, text, ablations } => match self.run(id, &text, &ablations) {
                Ok(r) => Reply::Ran(r),
                Err(e) => Reply::RunFailed(id, e.to_string()),
            },
            Request::Embedding { channel } => match self.embedding(channel) {
                Ok(v) => Reply::Embedding(Box::new(v)),
                Err(e) => Reply::Error(format!("embedding: {e}")),
            },
            Request::NodeDetail { node } => match self.detail(node) {
                Ok(d) => Reply::Detail(Box::new(d)),
                Err(e) => Reply::Error(format!("{node}: {e}")),
            },
            Request::Sweep {
                text,
                at,
                fragment,
                max_n,
                node,
                ablations,
            } => match self.sweep(&text, at, &fragment, max_n, node, &ablations) {
                Ok(s) => Reply::Swept(s),
                Err(e) => Reply::Error(format!("sweep: {e}")),
            },
        }
    }

    fn hooks_for(&mut self, ablations: &[Ablation]) -> Result<Hooks> {
        let mut hooks = Hooks::recording(&self.record_pattern)?;
        let mut by_hook: BTreeMap<(String, AblationKind), Vec<usize>> = BTreeMap::new();
        for a in ablations {
            by_hook
                .entry((a.node.hook_name(), a.kind))
                .or_default()
                .push(a.node.index);
        }
        for ((hook, kind), channels) in by_hook {
            let action = match kind {
                AblationKind::Zero => Action::Set(0.0),
                AblationKind::Mean => Action::MeanAblate(self.means(&hook)?),
            };
            hooks.intervene(&hook, Intervention::new(action).channels(channels));
        }
        Ok(hooks)
    }

    /// The means of a hook for mean ablation: the scan's, else the task prompts'.
    fn means(&mut self, hook: &str) -> Result<Vec<f32>> {
        if let Some(m) = self.scan.as_ref().and_then(|s| s.hook_means(hook)) {
            return Ok(m);
        }
        self.ensure_task_runs()?;
        self.fallback_means
            .get(hook)
            .cloned()
            .ok_or_else(|| EngineError::Other(format!("no means for `{hook}` (no scan and no task prompts)")))
    }

    fn forward(&self, ids: &[u32], hooks: &mut Hooks) -> Result<Recorded> {
        let logits = self.model.forward_ids(ids, hooks)?; // (T, V)
        let last_logits: Vec<f32> = logits.get(ids.len() - 1)?.to_vec1()?;
        let mut out = BTreeMap::new();
        for (name, t) in &hooks.recorded {
            out.insert(name.clone(), flatten(t)?);
        }
        Ok(Recorded {
            ids: ids.to_vec(),
            last_logits,
            hooks: out,
        })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self.tok.encode(text)?;
        if ids.is_empty() {
            return Err(EngineError::Other("the prompt is empty".into()));
        }
        if ids.len() > self.cfg.block_size {
            return Err(EngineError::Other(format!(
                "the prompt has {} tokens but the model's context is {}",
                ids.len(),
                self.cfg.block_size
            )));
        }
        Ok(ids)
    }

    pub fn run(&mut self, id: u64, text: &str, ablations: &[Ablation]) -> Result<RunSummary> {
        let start = Instant::now();
        let ids = self.encode(text)?;
        let mut hooks = self.hooks_for(ablations)?;
        let rec = self.forward(&ids, &mut hooks)?;
        let acts: BTreeMap<NodeId, Vec<f32>> = self.nodes.iter().map(|n| (*n, rec.node_values(n))).collect();
        let probs = softmax(&rec.last_logits);
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let top = order
            .iter()
            .take(TOP_NEXT)
            .map(|&i| (self.token_text(i as u32), probs[i]))
            .collect();
        let target_logits = self
            .target_ids
            .map(|(a, b)| (rec.last_logits[a as usize], rec.last_logits[b as usize]));
        let attention = self.attention(&rec);
        let task_loss = self.task_loss(ablations)?;
        Ok(RunSummary {
            id,
            text: text.to_string(),
            tokens: ids.iter().map(|&i| self.token_text(i)).collect(),
            ids,
            acts,
            top,
            target_logits,
            attention,
            ablations: ablations.to_vec(),
            task_loss,
            elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The task's loss on held-out pairs with `ablations` applied, cached per ablation set.
    fn task_loss(&mut self, ablations: &[Ablation]) -> Result<Option<f64>> {
        let mut key = ablations.to_vec();
        key.sort();
        if let Some(&l) = self.task_loss_cache.get(&key) {
            return Ok(Some(l));
        }
        if self.task_loss_data.is_none() {
            let data = self.task.as_ref().and_then(|t| {
                let pairs = tasks::split(t.as_ref(), Split::Test, TASK_LOSS_PAIRS);
                crate::analysis::ablate::TaskData::new(&self.tok, t.name(), &pairs, self.cfg.block_size).ok()
            });
            self.task_loss_data = Some(data);
        }
        if !matches!(self.task_loss_data, Some(Some(_))) {
            return Ok(None);
        }
        let mut hooks = self.hooks_for(ablations)?;
        hooks.set_record("$^")?; // interventions only: nothing is read back
        let Some(Some(data)) = &self.task_loss_data else {
            return Ok(None);
        };
        let (pos, neg) = crate::analysis::ablate::last_logits(&self.model, data, &hooks)
            .map_err(|e| EngineError::Other(format!("task loss: {e}")))?;
        let loss = crate::analysis::ablate::score_logits(data, &pos, &neg).loss;
        self.task_loss_cache.insert(key, loss);
        Ok(Some(loss))
    }

    /// The full attention of every head that has q or k nodes in the circuit, from the recorded q and k (after
    /// AbsTopK and any ablation) and the head's sink logit, as the model computes it.
    fn attention(&self, rec: &Recorded) -> BTreeMap<(usize, usize), AttnPattern> {
        let dh = self.cfg.d_head;
        let heads: BTreeSet<(usize, usize)> = self
            .nodes
            .iter()
            .filter(|n| matches!(n.site, Site::AttnQ | Site::AttnK))
            .filter_map(|n| Some((n.layer?, n.index / dh)))
            .collect();
        let mut out = BTreeMap::new();
        for (l, h) in heads {
            let (Some((wq, q)), Some((wk, k))) = (
                rec.hooks.get(&format!("{l}.attn.q")),
                rec.hooks.get(&format!("{l}.attn.k")),
            ) else {
                continue;
            };
            let t = rec.ids.len();
            let scale = 1.0 / (dh as f32).sqrt();
            let sink_logit = self.sink.get(l).and_then(|s| s.as_ref()).map(|s| s[h]);
            let mut weights = vec![0f32; t * t];
            let mut sink = vec![0f32; t];
            for i in 0..t {
                let qi = &q[i * wq + h * dh..i * wq + (h + 1) * dh];
                let scores: Vec<f32> = (0..=i)
                    .map(|j| {
                        let kj = &k[j * wk + h * dh..j * wk + (h + 1) * dh];
                        qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
                    })
                    .collect();
                let m = scores
                    .iter()
                    .copied()
                    .chain(sink_logit)
                    .fold(f32::NEG_INFINITY, f32::max);
                let z: f32 =
                    scores.iter().map(|s| (s - m).exp()).sum::<f32>() + sink_logit.map_or(0.0, |s| (s - m).exp());
                for (j, s) in scores.iter().enumerate() {
                    weights[i * t + j] = (s - m).exp() / z;
                }
                sink[i] = sink_logit.map_or(0.0, |s| (s - m).exp() / z);
            }
            out.insert((l, h), AttnPattern { t, weights, sink });
        }
        out
    }

    fn ensure_task_runs(&mut self) -> Result<()> {
        if self.task_runs.is_some() {
            return Ok(());
        }
        let pairs = match &self.task {
            Some(t) => tasks::split(t.as_ref(), Split::Train, TASK_PAIRS),
            None => Vec::new(),
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for p in &pairs {
            for (text, out) in [(&p.prompt, &mut a), (&p.prompt_alt, &mut b)] {
                let Ok(ids) = self.encode(text) else { continue };
                let mut hooks = Hooks::recording(&self.record_pattern)?;
                out.push(self.forward(&ids, &mut hooks)?);
            }
        }
        let mut sums: BTreeMap<String, (usize, Vec<f64>)> = BTreeMap::new();
        for r in a.iter().chain(&b) {
            for (name, (w, v)) in &r.hooks {
                let e = sums.entry(name.clone()).or_insert_with(|| (0, vec![0.0; *w]));
                for row in v.chunks(*w) {
                    e.0 += 1;
                    for (s, x) in e.1.iter_mut().zip(row) {
                        *s += *x as f64;
                    }
                }
            }
        }
        self.fallback_means = sums
            .into_iter()
            .map(|(k, (n, s))| (k, s.iter().map(|x| (x / n.max(1) as f64) as f32).collect()))
            .collect();
        self.task_runs = Some((a, b));
        Ok(())
    }

    fn token_acts(&self, ids: &[u32], acts: Vec<f32>, pivot: Option<usize>) -> TokenActs {
        TokenActs {
            tokens: ids.iter().map(|&i| self.token_text(i)).collect(),
            acts,
            pivot,
        }
    }

    fn exemplar_view(&self, e: &Exemplar) -> TokenActs {
        self.token_acts(&e.tokens, e.acts.clone(), Some(e.pivot))
    }

    pub fn detail(&mut self, node: NodeId) -> Result<NodeDetail> {
        let stats = self.scan.as_ref().and_then(|s| s.node(&node));
        let quantiles: Vec<QuantileExemplars> = match &stats {
            Some(s) if !s.quantiles.is_empty() => s.quantiles.clone(),
            _ => self.circuit_exemplars.get(&node).cloned().unwrap_or_default(),
        };
        let quantiles = quantiles
            .iter()
            .map(|q| QuantileView {
                quantile: q.quantile,
                bottom: q.bottom.iter().map(|e| self.exemplar_view(e)).collect(),
                top: q.top.iter().map(|e| self.exemplar_view(e)).collect(),
            })
            .collect();
        self.ensure_task_runs()?;
        let mut task = TaskView::default();
        if let Some((a, b)) = &self.task_runs {
            for (ra, rb) in a.iter().zip(b) {
                let va = ra.node_values(&node);
                let vb = rb.node_values(&node);
                let n = va.len().min(vb.len());
                let diff: Vec<f32> = (0..n).map(|i| vb[i] - va[i]).collect();
                task.diff.push(self.token_acts(&rb.ids[..n], diff, None));
                task.class_a.push(self.token_acts(&ra.ids, va, None));
                task.class_b.push(self.token_acts(&rb.ids, vb, None));
            }
        }
        let residual = matches!(
            node.site,
            Site::AttnActIn | Site::MlpActIn | Site::AttnResidDelta | Site::MlpResidDelta | Site::FinalResid
        ) && node.index < self.cfg.d_model;
        let (embed_tokens, unembed_tokens) = if residual {
            (
                self.column_top(&self.wte, node.index, true),
                self.column_top(&self.unembed, node.index, false),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(NodeDetail {
            node,
            stats,
            quantiles,
            task,
            embed_tokens,
            unembed_tokens,
        })
    }

    /// The nonzero entries of column `c` of a (V, D) matrix, sorted by |value| when `abs`, else largest first
    /// (ties by token id).
    fn column_sorted(&self, m: &[f32], c: usize, abs: bool) -> Vec<(usize, f32)> {
        let d = self.cfg.d_model;
        let mut col: Vec<(usize, f32)> = (0..self.cfg.vocab_size)
            .map(|t| (t, m[t * d + c]))
            .filter(|(_, x)| *x != 0.0)
            .collect();
        let key = |x: f32| if abs { x.abs() } else { x };
        col.sort_by(|a, b| key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0)));
        col
    }

    /// The tokens with the largest entries in column `c` of a (V, D) matrix: by |value| when `abs`, else the
    /// most positive.
    fn column_top(&self, m: &[f32], c: usize, abs: bool) -> Vec<(String, f32)> {
        self.column_sorted(m, c, abs)
            .into_iter()
            .take(10)
            .map(|(t, x)| (self.token_text(t as u32), x))
            .collect()
    }

    /// The embedding tab's view of residual channel `channel`: the same wte column the inspector's "embedding
    /// writes it" list reads, all of it, plus a window of wpe.
    pub fn embedding(&self, channel: usize) -> Result<EmbeddingView> {
        let d = self.cfg.d_model;
        if channel >= d {
            return Err(EngineError::Other(format!("channel {channel} is past d_model = {d}")));
        }
        let col = self.column_sorted(&self.wte, channel, false);
        let shown = |(t, x): &(usize, f32)| (*t as u32, self.token_text(*t as u32).replace(' ', "␣"), *x);
        let top: Vec<_> = col.iter().take(20).map(shown).collect();
        let bottom: Vec<_> = col.iter().rev().take(20).map(shown).collect();
        let lo = col.last().map_or(0.0, |x| x.1);
        let hi = col.first().map_or(0.0, |x| x.1);
        let mut hist = vec![0u64; EMBED_BINS];
        for (_, x) in &col {
            let f = if hi > lo { (x - lo) / (hi - lo) } else { 0.5 };
            hist[((f * EMBED_BINS as f32) as usize).min(EMBED_BINS - 1)] += 1;
        }
        let wpe = self
            .wpe
            .as_ref()
            .filter(|(_, cols, _)| *cols == d)
            .map(|(rows, cols, v)| {
                let channels = WPE_WINDOW.min(d);
                let first = channel.saturating_sub(channels / 2).min(d - channels);
                let mut values = Vec::with_capacity(rows * channels);
                for p in 0..*rows {
                    values.extend_from_slice(&v[p * cols + first..p * cols + first + channels]);
                }
                WpeWindow {
                    positions: *rows,
                    first,
                    channels,
                    values,
                }
            });
        Ok(EmbeddingView {
            channel,
            d_model: d,
            vocab: self.cfg.vocab_size,
            nonzero: col.len(),
            top,
            bottom,
            hist,
            range: (lo, hi),
            wpe,
        })
    }

    fn sweep(
        &mut self,
        text: &str,
        at: usize,
        fragment: &str,
        max_n: usize,
        node: NodeId,
        ablations: &[Ablation],
    ) -> Result<SweepResult> {
        if !text.is_char_boundary(at) {
            return Err(EngineError::Other("the insertion point is inside a character".into()));
        }
        if fragment.is_empty() {
            return Err(EngineError::Other("the fragment is empty".into()));
        }
        let mut points = Vec::new();
        for n in 0..=max_n {
            let t = format!("{}{}{}", &text[..at], fragment.repeat(n), &text[at..]);
            let ids = self.encode(&t);
            let Ok(ids) = ids else {
                // Longer repeats only overflow further.
                break;
            };
            let mut hooks = self.hooks_for(ablations)?;
            let rec = self.forward(&ids, &mut hooks)?;
            let value = rec.node_values(&node).last().copied().unwrap_or(0.0);
            let probs = softmax(&rec.last_logits);
            let (best, p) = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, p)| (i, *p))
                .unwrap_or((0, 0.0));
            points.push(SweepPoint {
                n,
                tokens: ids.len(),
                value,
                logit_diff: self
                    .target_ids
                    .map(|(a, b)| rec.last_logits[a as usize] - rec.last_logits[b as usize]),
                top: self.token_text(best as u32),
                top_prob: p,
            });
        }
        Ok(SweepResult {
            node,
            fragment: fragment.to_string(),
            points,
        })
    }

    /// The model directory's parts the engine needs, loaded: used by `open` and the tests.
    pub fn model_tokenizer(dir: &Path) -> std::result::Result<Tokenizer, String> {
        let files = crate::model::ModelFiles::locate(dir).map_err(|e| e.to_string())?;
        let path = files
            .tokenizer
            .ok_or_else(|| format!("{}: no tokenizer.json beside the model", dir.display()))?;
        Tokenizer::load(&path).map_err(|e| e.to_string())
    }
}

/// (1, T, W) or (T, W) → (W, values).
fn flatten(t: &Tensor) -> Result<(usize, Vec<f32>)> {
    let w = *t.dims().last().unwrap_or(&1);
    Ok((w, t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?))
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|x| (x - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// Runs the engine on its own thread: requests in, replies out as [`Msg::Engine`] on the UI's channel. The
/// thread ends when the request sender is dropped or the UI's receiver is gone.
pub fn spawn(mut engine: Engine, to_ui: Sender<Msg>) -> std::io::Result<Sender<Request>> {
    let (tx, rx): (Sender<Request>, Receiver<Request>) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("circuitscope-engine".into())
        .spawn(move || {
            while let Ok(mut req) = rx.recv() {
                // Only the newest prompt run matters: skip runs that a later one has superseded.
                if matches!(req, Request::Run { .. }) {
                    while let Ok(next) = rx.try_recv() {
                        if matches!(next, Request::Run { .. }) {
                            req = next;
                        } else {
                            let reply = engine.handle(next);
                            if to_ui.send(Msg::Engine(reply)).is_err() {
                                return;
                            }
                        }
                    }
                }
                let reply = engine.handle(req);
                if to_ui.send(Msg::Engine(reply)).is_err() {
                    return;
                }
            }
        })?;
    Ok(tx)
}
