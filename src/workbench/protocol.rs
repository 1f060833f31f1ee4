//! The worker's protocol: the requests the UI (or a script) sends and the owned replies it gets back. No tensor
//! crosses it: summaries are `Vec<f32>`s and strings.

use std::collections::BTreeMap;

pub use super::attribution::{AttrEdgeRow, AttrNodeRow, AttrTarget, AttributionView};
pub use super::heads::{HeadRow, HeadsView};
pub use super::pairs::{AttnRow, PairNodeRow, PairView, PairsView};
pub use super::scan_source::NodeStats;
pub use crate::analysis::attention_pattern::AttnPattern;
pub use crate::analysis::embedding_tables::WpeWindow;
pub use crate::analysis::sweep::{SweepPoint, SweepResult, SweepStop};
use crate::circuit::{CircuitFile, NodeId};

/// What an ablated node is set to: zero, or its mean (the scan's, else the task prompts').
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AblationKind {
    /// Set to zero.
    Zero,
    /// Set to its mean.
    Mean,
}

impl AblationKind {
    /// The name sessions and the UI use.
    pub fn name(self) -> &'static str {
        match self {
            AblationKind::Zero => "zero",
            AblationKind::Mean => "mean",
        }
    }
}

/// One node ablated in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ablation {
    /// The node.
    pub node: NodeId,
    /// What it is set to.
    pub kind: AblationKind,
}

/// What the engine is asked to do.
#[derive(Debug, Clone)]
pub enum Request {
    /// Run a prompt with the circuit's hooks recorded and the ablations applied.
    Run {
        /// Echoed in the reply, so that the UI can drop answers to superseded requests.
        id: u64,
        /// The prompt.
        text: String,
        /// Nodes to ablate.
        ablations: Vec<Ablation>,
    },
    /// A run of the pinned baseline prompt (no ablations); never skipped as superseded.
    PinRun {
        /// Echoed in the reply.
        id: u64,
        /// The prompt.
        text: String,
    },
    /// Statistics, exemplars, task view and vocabulary links of one node.
    NodeDetail {
        /// The node.
        node: NodeId,
    },
    /// Insert `fragment` repeated n times (n = 0..=max_n) at byte `at` of `text`; report every circuit node's
    /// value at the last token and the prediction for each n, up to the context's limit.
    Sweep {
        /// The prompt.
        text: String,
        /// Byte offset of the insertion in `text`.
        at: usize,
        /// The text inserted n times.
        fragment: String,
        /// The largest n.
        max_n: usize,
        /// Nodes ablated in every run.
        ablations: Vec<Ablation>,
    },
    /// Whether later runs keep the last `block_size` tokens of a prompt longer than the context (the CLI's
    /// `--truncate`) instead of failing; answered with an [`Reply::Info`] saying which rule is in force.
    Truncate(bool),
    /// Whether later runs also carry their ablations through the bridges into the dense model (`:bridge on|off`;
    /// a bridged model only); answered with an [`Reply::Info`], or an [`Reply::Error`] when the model has no
    /// bridges.
    Bridge(bool),
    /// The embedding tab's view of one residual channel: its wte column and a window of wpe.
    Embedding {
        /// The residual channel.
        channel: usize,
    },
    /// Run the first `n` task pairs (both prompts) with `ablations` and compare every circuit node at the
    /// decision token (`:pairs N`).
    Pairs {
        /// How many pairs.
        n: usize,
        /// The lab's ablations, applied to both prompts.
        ablations: Vec<Ablation>,
    },
    /// The framework lens on every head (scores, QK/OV top tokens, composition; computed once per open) and
    /// every head's attention on `text`, for the Heads screen.
    Heads {
        /// The prompt whose attention patterns are shown (the lab's).
        text: String,
    },
    /// The pruned attribution graph of `text` (truncated as the lab's runs are), for the Attribution screen.
    Attribute {
        /// The prompt (the lab's).
        text: String,
        /// The logits explained.
        target: AttrTarget,
        /// Keep the nodes carrying this share of the influence on the target.
        node_threshold: f32,
        /// Keep the edges carrying this share of the influence.
        edge_threshold: f32,
    },
    /// The SAE features (`open --sae`) whose activations every later run reports beside the circuit's nodes, so
    /// that the lab's table shows them; answered with an [`Reply::Info`] (or an error naming a feature that is
    /// not the SAE's).
    WatchFeatures(Vec<NodeId>),
    /// Write the markdown report of a session (the engine holds the scan and the tokenizer).
    Export {
        /// The session to report.
        session: Box<crate::session::Session>,
        /// Its circuit.
        circuit: Box<CircuitFile>,
        /// The markdown file to write.
        path: std::path::PathBuf,
    },
}

/// One prompt run: tokens, every circuit node's activations, the prediction and the attention of the circuit's heads.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The request's id.
    pub id: u64,
    /// The prompt as sent.
    pub text: String,
    /// Its token ids (after truncation).
    pub ids: Vec<u32>,
    /// Tokens dropped from the prompt's start to fit the context (0 unless truncation is on).
    pub dropped: usize,
    /// Display text of each token.
    pub tokens: Vec<String>,
    /// Every circuit node's activation at every token, and the watched and ablated SAE features'.
    pub acts: BTreeMap<NodeId, Vec<f32>>,
    /// The next token after the last one: (display text, probability), most probable first.
    pub top: Vec<(String, f32)>,
    /// Logits of the task's two targets at the last token.
    pub target_logits: Option<(f32, f32)>,
    /// (layer, head) → pattern, for the heads with q or k nodes in the circuit.
    pub attention: BTreeMap<(usize, usize), AttnPattern>,
    /// The ablations applied.
    pub ablations: Vec<Ablation>,
    /// The task loss (raw, 2× scale) on held-out task pairs under this run's ablations; None without a task.
    pub task_loss: Option<f64>,
    /// The fraction of those pairs where both prompts prefer their own target, under the same ablations.
    pub task_accuracy: Option<f64>,
    /// How many held-out pairs the task loss and accuracy are measured on.
    pub task_pairs: usize,
    /// Each circuit node's direct effect on logit(A) − logit(B) at the last token (final norm scale frozen);
    /// nodes without a direct path to the logits (reads, queries, keys) are absent, and so is everything when
    /// the task has no single-token targets.
    pub direct_effects: BTreeMap<NodeId, f32>,
    /// With `:bridge on`: the run's ablations carried through the bridge into the dense model (None when off).
    pub bridge: Option<BridgeRunView>,
    /// Wall time of the run in the engine.
    pub elapsed_ms: f64,
}

/// The dense model under a lab run's edits carried through the bridge (see [`crate::analysis::bridge::steer`]):
/// its next-token distribution and the task's logit difference without and with them.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeRunView {
    /// The bridge site the change crossed: the first one after every ablated node (`embed` without ablations).
    pub site: String,
    /// The dense model's most probable next tokens without the edits: (display text, probability).
    pub top_before: Vec<(String, f32)>,
    /// The same with the edits carried over.
    pub top_after: Vec<(String, f32)>,
    /// The dense model's logits of the task's two targets without and with the edits (None: no single-token
    /// targets).
    pub target_logits: Option<((f32, f32), (f32, f32))>,
    /// The L2 norm of the change added to the dense residual stream at the last token.
    pub dense_delta_norm: f32,
}

impl BridgeRunView {
    /// The dense model's logit(A) − logit(B) without and with the edits.
    pub fn logit_diff(&self) -> Option<(f32, f32)> {
        self.target_logits.map(|((a, b), (a2, b2))| (a - b, a2 - b2))
    }
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
    /// Display text of each token.
    pub tokens: Vec<String>,
    /// The node's activation at each token.
    pub acts: Vec<f32>,
    /// The boxed token, if any.
    pub pivot: Option<usize>,
}

/// Exemplars at one quantile of a node's activations (0: the outermost, top and bottom).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileView {
    /// The quantile (0: the extremes).
    pub quantile: f64,
    /// Exemplars at the low end.
    pub bottom: Vec<TokenActs>,
    /// Exemplars at the high end.
    pub top: Vec<TokenActs>,
}

/// A node on the task's pairs: class A, class B and their difference.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskView {
    /// The node on the prompts of the task's first class.
    pub class_a: Vec<TokenActs>,
    /// The node on the prompts of the task's second class.
    pub class_b: Vec<TokenActs>,
    /// class B − class A, position by position over the common length (class B's tokens).
    pub diff: Vec<TokenActs>,
}

/// Everything the inspector shows about one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDetail {
    /// The node.
    pub node: NodeId,
    /// Its statistics over the scan corpus (None without a scan).
    pub stats: Option<NodeStats>,
    /// From the scan, else from the circuit file.
    pub quantiles: Vec<QuantileView>,
    /// The node on the task's pairs.
    pub task: TaskView,
    /// Residual channels: the tokens whose embedding writes the channel most, (token, weight).
    pub embed_tokens: Vec<(String, f32)>,
    /// Residual channels: the tokens whose unembedding reads the channel most (promoted by a positive value);
    /// SAE features: the tokens their decoder direction promotes most through the unembedding.
    pub unembed_tokens: Vec<(String, f32)>,
    /// SAE features: the tokens their decoder direction suppresses most (most negative first); empty otherwise.
    pub suppressed_tokens: Vec<(String, f32)>,
}

/// How many channels of wpe the embedding view shows around the selected one.
pub const WPE_WINDOW: usize = 16;
/// Histogram bins of a wte column's nonzero values.
pub const EMBED_BINS: usize = 40;

/// One residual channel as the embedding tab shows it (the reference viewer's "wte/wpe viz").
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingView {
    /// The residual channel.
    pub channel: usize,
    /// The model's residual width.
    pub d_model: usize,
    /// The vocabulary size.
    pub vocab: usize,
    /// Tokens whose wte entry in this channel is nonzero.
    pub nonzero: usize,
    /// The 20 largest and 20 smallest nonzero entries of wte[:, channel]: (token id, display text, weight).
    pub top: Vec<(u32, String, f32)>,
    /// The smallest, as `top`.
    pub bottom: Vec<(u32, String, f32)>,
    /// Histogram of the column's nonzero values over `range`.
    pub hist: Vec<u64>,
    /// (min, max) of the column's nonzero values.
    pub range: (f32, f32),
    /// wpe[:, first..first + channels] as (positions, channels) row-major, when the model has a position table
    /// indexed by residual channel.
    pub wpe: Option<WpeWindow>,
}

/// The engine's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A prompt run.
    Ran(Box<RunSummary>),
    /// A run that failed (e.g. the prompt is too long): the request id and the message.
    RunFailed(u64, String),
    /// A node's detail.
    Detail(Box<NodeDetail>),
    /// A sweep's points.
    Swept(SweepResult),
    /// A residual channel's embedding view.
    Embedding(Box<EmbeddingView>),
    /// The `:pairs` comparison at the decision token.
    Pairs(Box<PairsView>),
    /// The Heads screen's view.
    Heads(Box<HeadsView>),
    /// The Attribution screen's pruned graph.
    Attribution(Box<AttributionView>),
    /// An attribution graph that could not be made: the message for the screen and the status bar.
    AttributionFailed(String),
    /// A request that failed, its message for the status bar.
    Error(String),
    /// A message for the status bar.
    Info(String),
}
