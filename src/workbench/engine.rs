//! The engine: owns the model, the tokenizer and the scan, and answers [`Request`]s with owned summaries, so
//! that a UI never holds a tensor and drawing never waits for a forward pass. The measurements themselves live
//! in `analysis` (recorded runs, attention patterns, embedding tables, fallback means, the sweep); this module
//! keeps the per-open state and caches and dispatches.
//!
//! [`Engine::handle`] is synchronous (tests, scripts and the benchmark call it directly); [`spawn`] runs it on a
//! thread and hands every reply to a callback.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use super::attribution::{AttrTarget, AttributionView, ViewSetup};
use super::heads::HeadsView;
use super::pairs::{self, PairsSetup, PairsView};
use super::protocol::{
    Ablation, AblationKind, BridgeRunView, EmbeddingView, NodeDetail, QuantileView, Reply, Request, RunSummary,
    SweepResult, TaskView, TokenActs, EMBED_BINS, WPE_WINDOW,
};
use super::scan_source::ScanSource;
use crate::analysis::ablate::{self, TaskData, TaskEval};
use crate::analysis::attention_pattern::{self, AttnPattern};
use crate::analysis::attribution::{self, PruneOptions, TargetSpec, Targets};
use crate::analysis::bridge::{self, BridgeParts};
use crate::analysis::embedding_tables::{self, EmbeddingTables};
use crate::analysis::heads::{HeadsOptions, HeadsReport};
use crate::analysis::logit_attribution::{self, Readout};
use crate::analysis::recording::{self, Recorded};
use crate::analysis::sae::Sae;
use crate::analysis::{hook_means, next_token, sweep};
use crate::circuit::node_id::sae_group;
use crate::circuit::{CircuitFile, Exemplar, NodeId, QuantileExemplars, Site};
use crate::data::tasks::{self, Split, Task};
use crate::model::{Action, Checkpoint, Config, Gpt, HookName, HookSite, Hooks, Intervention};
use crate::tokenize::Tokenizer;

/// What `:bridge on` says on a model without bridges.
pub const NO_BRIDGES: &str =
    "this model has no bridges (no bridge.json beside it); :bridge needs a model trained with `train --bridge-to`";
/// How many task pairs the task view and the fallback means use.
const TASK_PAIRS: usize = 8;
/// How many next-token candidates a run reports.
const TOP_NEXT: usize = 8;
/// Held-out task pairs behind a run's task loss (measured once per distinct set of ablations).
const TASK_LOSS_PAIRS: usize = 32;
/// The most task pairs `:pairs` runs at once.
pub const MAX_PAIRS: usize = 256;
/// How many tokens the inspector's vocabulary links list.
const VOCAB_LINKS: usize = 10;
/// How many of a wte column's largest and smallest entries the embedding view lists.
const EMBED_EXTREMES: usize = 20;

/// Why the engine could not answer a request; the UI shows it on one line.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Running the model (or building its hooks) failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The prompt could not be tokenized.
    #[error(transparent)]
    Tokenize(#[from] crate::tokenize::TokenizeError),
    /// A sweep could not be run.
    #[error(transparent)]
    Sweep(#[from] sweep::SweepError),
    /// The prompt has no tokens.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt is longer than the context (and truncation is off).
    #[error("the prompt has {tokens} tokens but the model's context is {block_size}")]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// The model's context.
        block_size: usize,
    },
    /// A mean ablation of a hook with neither a scan nor task prompts to take the mean from.
    #[error("no means for `{hook}` (no scan and no task prompts)")]
    NoMeans {
        /// The hook.
        hook: String,
    },
    /// Measuring the task loss under the run's ablations failed.
    #[error("task loss: {0}")]
    TaskLoss(#[source] crate::analysis::ablate::AblateError),
    /// The direct effects of the circuit's nodes on the task direction could not be computed.
    #[error("direct effects: {0}")]
    DirectEffects(#[source] crate::analysis::logit_attribution::AttributionError),
    /// `:pairs` without a task that has pairs.
    #[error("no task with pairs is open (:task NAME opens one)")]
    NoPairsTask,
    /// The framework lens could not read the model.
    #[error("heads: {0}")]
    Heads(#[from] crate::analysis::framework::FrameworkError),
    /// The attribution graph could not be made.
    #[error("attribution: {0}")]
    Attribute(#[from] crate::analysis::attribution::AttributeError),
    /// An SAE could not be run, or a feature of it could not be read.
    #[error("SAE: {0}")]
    Sae(#[source] crate::analysis::sae::SaeError),
    /// A node that does not exist here (a feature without its SAE, or past its latents).
    #[error(transparent)]
    Node(crate::circuit::NodeCheckError),
    /// The attribution target asks for the task's pair, and the task has no single-token pair.
    #[error("the task has no single-token target pair to explain")]
    NoTargetPair,
    /// A pruning threshold outside 0..=1.
    #[error("threshold {0} is not a share between 0 and 1")]
    BadThreshold(f32),
    /// Carrying the lab's edits through the bridges failed.
    #[error("bridge: {message}")]
    Bridge {
        /// What went wrong.
        message: String,
    },
    /// A residual channel past the model's width.
    #[error("channel {channel} is past d_model = {d_model}")]
    NoSuchChannel {
        /// The channel asked for.
        channel: usize,
        /// The model's residual width.
        d_model: usize,
    },
}

type Result<T> = std::result::Result<T, EngineError>;

/// (embedding writers, unembedding promoted, unembedding suppressed), each (token, weight).
type VocabLinks = (Vec<(String, f32)>, Vec<(String, f32)>, Vec<(String, f32)>);

/// The worker's state for one opened model and circuit.
pub struct Engine {
    model: Gpt,
    tok: Tokenizer,
    cfg: Config,
    nodes: Vec<NodeId>,
    record_pattern: String,
    /// The heads with q or k nodes in the circuit, whose attention every run reports.
    pattern_heads: BTreeSet<(usize, usize)>,
    /// Records the attention patterns of those heads' layers.
    record_attention: String,
    tables: EmbeddingTables,
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
    task_loss_data: Option<Option<TaskData>>,
    /// Task loss and accuracy by ablation set, so that typing in the lab costs no extra evaluation.
    task_loss_cache: BTreeMap<Vec<Ablation>, TaskEval>,
    /// The readout of the task's targets for direct logit effects (None: no single-token targets, or a model
    /// whose residual stream is not a sum of writes).
    readout: Option<Readout>,
    /// Records what the direct logit effects read.
    record_direct: String,
    /// Prompts longer than the context keep their last `block_size` tokens instead of failing (`--truncate`).
    truncate: bool,
    /// The framework lens on the model's heads, computed on the Heads screen's first request.
    heads_report: Option<HeadsReport>,
    /// The SAE opened beside the model (`open --sae`), whose latents are feature nodes `<hook>.sae[i]`.
    sae: Option<SaeState>,
    /// Features every run reports beside the circuit's nodes ([`Request::WatchFeatures`]).
    watched: Vec<NodeId>,
    /// The dense model and bridges of a bridged model (None: the folder has none).
    bridge: Option<BridgeParts>,
    /// Runs also carry their ablations through the bridges (`:bridge on`).
    bridge_on: bool,
}

/// An SAE in the workbench: its features are read by encoding its hook's recorded activations.
struct SaeState {
    sae: Sae,
    /// The hook it reads, e.g. `1.resid_mid`.
    hook: String,
    /// Whether the scan holds this SAE's features (`scan --sae` with the same SAE): their statistics, exemplars
    /// and means are then the scan's.
    scanned: bool,
}

impl Engine {
    /// An engine on `model` (loaded from `ckpt`, whose embedding tables and sink logits it reads) for `circuit`,
    /// with `task`'s pairs and targets (an unknown task leaves them out).
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
        let record_direct = logit_attribution::record_pattern(cfg.n_layer);
        let mut engine = Engine {
            record_pattern: recording::record_pattern(&nodes),
            pattern_heads: attention_pattern::heads_of_qk_nodes(&nodes, cfg.d_head),
            record_attention: recording::pattern_record(attention_pattern::layers_of(
                &attention_pattern::heads_of_qk_nodes(&nodes, cfg.d_head),
            )),
            tables: EmbeddingTables::read(ckpt, &cfg)?,
            model,
            tok,
            cfg,
            nodes,
            scan,
            circuit_exemplars: circuit.exemplars.clone().unwrap_or_default(),
            task: None,
            target_ids: None,
            task_runs: None,
            fallback_means: BTreeMap::new(),
            task_loss_data: None,
            task_loss_cache: BTreeMap::new(),
            readout: None,
            record_direct,
            truncate: false,
            heads_report: None,
            sae: None,
            watched: Vec::new(),
            bridge: None,
            bridge_on: false,
        };
        engine.set_task(task);
        Ok(engine)
    }

    /// Opens `sae` (checked against the model by the caller) beside the model: its latents become feature nodes
    /// `<hook>.sae[i]` for details, the task view and ablations. Returns what the user should know about the
    /// scan's view of it (no statistics when the scan did not run this SAE).
    pub fn set_sae(&mut self, sae: Sae) -> Result<Vec<String>> {
        let hook = sae.hook().to_string();
        let group = sae_group(&hook);
        let mut warnings = Vec::new();
        let scanned = match self.scan.as_ref().map(|s| s.index().meta().sae(&group)) {
            Some(Some(entry)) if entry.fingerprint == sae.fingerprint().map_err(EngineError::Sae)? => true,
            Some(Some(entry)) => {
                warnings.push(format!(
                    "the scan's features of `{group}` are of another SAE ({}); feature statistics not shown",
                    entry.path
                ));
                false
            }
            Some(None) => {
                warnings.push(format!(
                    "the scan has no statistics for `{group}` (rescan with `circuitscope scan --sae DIR`)"
                ));
                false
            }
            None => false,
        };
        self.record_pattern = format!("{}|{}$", self.record_pattern, regex::escape(&hook));
        // Task runs recorded before the SAE lack its hook.
        self.task_runs = None;
        self.fallback_means.clear();
        self.sae = Some(SaeState { sae, hook, scanned });
        Ok(warnings)
    }

    /// Whether the scan holds the statistics of the SAE opened (made with `scan --sae` and this very SAE).
    pub fn features_scanned(&self) -> bool {
        self.sae.as_ref().is_some_and(|s| s.scanned)
    }

    /// The SAE opened beside the model, as (the hook it reads, its latent count).
    pub fn sae_shape(&self) -> Option<(crate::model::HookName, usize)> {
        self.sae.as_ref().map(|s| (s.sae.hook(), s.sae.config.n_latents))
    }

    /// Adds the SAE's code to a recording that holds its hook, under `<hook>.sae`, so that
    /// [`Recorded::node_values`] reads features as it reads channels.
    fn add_features(&self, rec: &mut Recorded) -> Result<()> {
        let Some(st) = &self.sae else { return Ok(()) };
        let Some((w, x)) = rec.hooks.get(&st.hook) else {
            return Ok(());
        };
        let x = candle_core::Tensor::from_slice(x, (x.len() / (*w).max(1), *w), &candle_core::Device::Cpu)?;
        let z = st.sae.encode(&x).map_err(EngineError::Sae)?; // (T, n_latents)
        let n = st.sae.config.n_latents;
        rec.hooks.insert(sae_group(&st.hook), (n, z.flatten_all()?.to_vec1()?));
        Ok(())
    }

    /// Refuses a feature node unless it is a latent of the SAE opened.
    fn check_feature(&self, node: &NodeId) -> Result<()> {
        if node.is_feature() {
            node.check_with_sae(&self.cfg, self.sae_shape())
                .map_err(EngineError::Node)?;
        }
        Ok(())
    }

    /// Gives the engine the dense half of a bridged model, for `:bridge on`.
    pub fn attach_bridge(&mut self, parts: BridgeParts) {
        self.bridge = Some(parts);
    }

    /// The dense model's folder when the engine has bridges.
    pub fn bridge_dense(&self) -> Option<&std::path::Path> {
        self.bridge.as_ref().map(|b| b.dense_dir.as_path())
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The model, for measurements beyond the protocol (the example-session generator's task evaluations).
    pub fn model(&self) -> &Gpt {
        &self.model
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }

    /// The model's scan, when it has a usable one.
    pub fn scan(&self) -> Option<&ScanSource> {
        self.scan.as_ref()
    }

    /// Each circuit node's standard deviation over the scan corpus (empty without a scan), and each feature's
    /// when the scan ran the SAE opened: the unit the lab's table can sort changes in.
    pub fn node_stds(&self) -> BTreeMap<NodeId, f32> {
        let Some(scan) = &self.scan else { return BTreeMap::new() };
        // Every latent of an SAE the scan ran, so that features the lab shows later have theirs.
        let features: Vec<NodeId> = match &self.sae {
            Some(st) if st.scanned => (0..st.sae.config.n_latents)
                .filter_map(|i| NodeId::feature(st.sae.hook(), i))
                .collect(),
            _ => Vec::new(),
        };
        self.nodes
            .iter()
            .chain(&features)
            .filter_map(|n| Some((*n, scan.std(n)?)))
            .collect()
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
        // A model whose residual is not a sum of writes has no direct effects; the column then stays empty.
        self.readout = self.target_ids.and_then(|(a, b)| Readout::new(&self.model, a, b).ok());
    }

    fn single_token(&self, s: &str) -> Option<u32> {
        match self.tok.encode(s).ok()?.as_slice() {
            [id] => Some(*id),
            _ => None,
        }
    }

    /// A token as the UI shows it (escapes for whitespace and undecodable bytes).
    pub fn token_text(&self, id: u32) -> String {
        self.tok.token_display(id)
    }

    /// The markdown report of a session, with the scan's top exemplars.
    pub fn export(&self, session: &crate::session::Session, circuit: &CircuitFile) -> String {
        super::report::markdown(
            session,
            circuit,
            self.scan.as_ref().map(|s| s.index()),
            &self.tok,
            super::report::TOP_EXEMPLARS,
            self.features_scanned(),
        )
    }

    /// Answers one request.
    pub fn handle(&mut self, req: Request) -> Reply {
        match req {
            Request::Export { session, circuit, path } => {
                let md = self.export(&session, &circuit);
                match crate::session::store::write_atomic(&path, md.as_bytes()) {
                    Ok(()) => Reply::Info(format!("exported {}", path.display())),
                    Err(e) => Reply::Error(format!("export failed: {e}")),
                }
            }
            Request::WatchFeatures(nodes) => match nodes.iter().try_for_each(|n| self.check_feature(n)) {
                Err(e) => Reply::Error(e.to_string()),
                Ok(()) => {
                    self.watched = nodes.into_iter().filter(NodeId::is_feature).collect();
                    self.watched.sort();
                    self.watched.dedup();
                    Reply::Info(format!(
                        "the lab shows {} SAE feature(s) beside the circuit's nodes",
                        self.watched.len()
                    ))
                }
            },
            Request::PinRun { id, text } => match self.run(id, &text, &[]) {
                Ok(r) => Reply::Ran(Box::new(r)),
                Err(e) => Reply::RunFailed(id, e.to_string()),
            },
            Request::Run { id, text, ablations } => match self.run(id, &text, &ablations) {
                Ok(r) => Reply::Ran(Box::new(r)),
                Err(e) => Reply::RunFailed(id, e.to_string()),
            },
            Request::Truncate(on) => {
                self.truncate = on;
                Reply::Info(if on {
                    format!(
                        "prompts longer than the context keep their last {} tokens",
                        self.cfg.block_size
                    )
                } else {
                    "prompts longer than the context are refused (:truncate keeps their end)".into()
                })
            }
            Request::Bridge(on) => match (&self.bridge, on) {
                (None, true) => Reply::Error(NO_BRIDGES.into()),
                (Some(parts), true) => {
                    self.bridge_on = true;
                    Reply::Info(format!(
                        "bridge on: the lab's ablations also steer the dense model {} through the bridges",
                        parts.dense_dir.display()
                    ))
                }
                (_, false) => {
                    self.bridge_on = false;
                    Reply::Info("bridge off".into())
                }
            },
            Request::Pairs { n, ablations } => match self.pairs(n, &ablations) {
                Ok(v) => Reply::Pairs(Box::new(v)),
                Err(e) => Reply::Error(format!("pairs: {e}")),
            },
            Request::Heads { text } => match self.heads(&text) {
                Ok(v) => Reply::Heads(Box::new(v)),
                Err(e) => Reply::Error(format!("heads: {e}")),
            },
            Request::Attribute {
                text,
                target,
                node_threshold,
                edge_threshold,
            } => match self.attribute(&text, target, (node_threshold, edge_threshold)) {
                Ok(v) => Reply::Attribution(Box::new(v)),
                Err(e) => Reply::AttributionFailed(e.to_string()),
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
                ablations,
            } => match self.sweep(&text, at, &fragment, max_n, &ablations) {
                Ok(s) => Reply::Swept(s),
                Err(e) => Reply::Error(format!("sweep: {e}")),
            },
        }
    }

    fn hooks_for(&mut self, ablations: &[Ablation]) -> Result<Hooks> {
        let mut hooks = Hooks::recording(&self.record_pattern)?;
        for (hook, iv) in self.interventions_for(ablations)? {
            hooks.intervene(&hook, iv);
        }
        Ok(hooks)
    }

    /// The ablations as (hook, intervention): one per hook and kind.
    fn interventions_for(&mut self, ablations: &[Ablation]) -> Result<Vec<(String, Intervention)>> {
        let mut out = Vec::new();
        let mut by_hook: BTreeMap<(String, AblationKind), Vec<usize>> = BTreeMap::new();
        let mut features = Vec::new();
        for a in ablations {
            if a.node.is_feature() {
                self.check_feature(&a.node)?;
                features.push(*a);
                continue;
            }
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
            out.push((hook, Intervention::new(action).channels(channels)));
        }
        if !features.is_empty() {
            // Ablating a feature subtracts what it writes at the SAE's hook: (z_i − c)·W_dec[i], c = 0 or its mean.
            let mut latents = Vec::with_capacity(features.len());
            for a in &features {
                let keep = match a.kind {
                    AblationKind::Zero => 0.0,
                    AblationKind::Mean => self.feature_mean(&a.node)?,
                };
                latents.push((a.node.index, crate::analysis::sae::LatentEdit::Set(keep)));
            }
            let st = self.sae.as_ref().expect("checked by check_feature");
            let iv = st.sae.edit(&latents).map_err(EngineError::Sae)?;
            out.push((st.hook.clone(), iv));
        }
        Ok(out)
    }

    /// The lab's ablations carried through the bridge into the dense model (see [`bridge::steer`]), when
    /// `:bridge on` and the model has bridges.
    fn bridge_run(&mut self, ids: &[u32], ablations: &[Ablation]) -> Result<Option<BridgeRunView>> {
        if !self.bridge_on || self.bridge.is_none() {
            return Ok(None);
        }
        let edits = self.interventions_for(ablations)?;
        let n_layer = self.cfg.n_layer;
        let mut site = 0;
        for a in ablations {
            let hook: HookName = a.node.hook_name().parse().map_err(|_| EngineError::Bridge {
                message: format!("{}: not a hook", a.node),
            })?;
            site = site.max(bridge::site_after(hook, n_layer));
        }
        let parts = self.bridge.as_ref().expect("checked above");
        let outcome = bridge::steer_many(&self.model, &parts.dense, &parts.bridges, ids, &[edits], site)
            .map_err(|e| EngineError::Bridge { message: e.to_string() })?
            .pop()
            .expect("one edit set, one outcome");
        let top = |logits: &[f32]| -> Vec<(String, f32)> {
            next_token::top_k(&next_token::softmax(logits), TOP_NEXT)
                .into_iter()
                .map(|(i, p)| (self.token_text(i), p))
                .collect()
        };
        let targets = |l: &[f32]| self.target_ids.map(|(a, b)| (l[a as usize], l[b as usize]));
        Ok(Some(BridgeRunView {
            site: bridge::site_label(site),
            top_before: top(&outcome.dense_before),
            top_after: top(&outcome.dense_after),
            target_logits: targets(&outcome.dense_before).zip(targets(&outcome.dense_after)),
            dense_delta_norm: outcome.dense_delta_norm.last().copied().unwrap_or(0.0),
        }))
    }

    /// A feature's mean activation for mean ablation: the scan's when it ran this SAE, else over the task
    /// prompts.
    fn feature_mean(&mut self, node: &NodeId) -> Result<f32> {
        let group = node.group();
        if self.sae.as_ref().is_some_and(|s| s.scanned) {
            if let Some(m) = self.scan.as_ref().and_then(|s| s.hook_means(&group)) {
                return Ok(m.get(node.index).copied().unwrap_or(0.0));
            }
        }
        self.ensure_task_runs()?;
        self.fallback_means
            .get(&group)
            .and_then(|m| m.get(node.index).copied())
            .ok_or(EngineError::NoMeans { hook: group })
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
            .ok_or_else(|| EngineError::NoMeans { hook: hook.to_string() })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self.tok.encode(text)?;
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if ids.len() > self.cfg.block_size {
            return Err(EngineError::PromptTooLong {
                tokens: ids.len(),
                block_size: self.cfg.block_size,
            });
        }
        Ok(ids)
    }

    /// A lab prompt's tokens and how many were dropped from its start: with truncation on, a prompt longer
    /// than the context keeps its last `block_size` tokens (the decision token is the last one).
    fn encode_prompt(&self, text: &str) -> Result<(Vec<u32>, usize)> {
        if !self.truncate {
            return Ok((self.encode(text)?, 0));
        }
        let ids = self.tok.encode(text)?;
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let dropped = ids.len().saturating_sub(self.cfg.block_size);
        Ok((ids[dropped..].to_vec(), dropped))
    }

    /// Runs `text` with the circuit's hooks recorded and `ablations` applied.
    pub fn run(&mut self, id: u64, text: &str, ablations: &[Ablation]) -> Result<RunSummary> {
        let start = Instant::now();
        let (ids, dropped) = self.encode_prompt(text)?;
        let mut hooks = self.hooks_for(ablations)?;
        hooks.set_record_patterns(&self.record_attention)?;
        if self.readout.is_some() {
            hooks.set_record(&format!("{}|{}", self.record_pattern, self.record_direct))?;
        }
        let mut rec = recording::record(&self.model, &ids, &mut hooks)?;
        self.add_features(&mut rec)?;
        let features = ablations.iter().map(|a| &a.node).filter(|n| n.is_feature());
        let acts: BTreeMap<NodeId, Vec<f32>> = self
            .nodes
            .iter()
            .chain(&self.watched)
            .chain(features)
            .map(|n| (*n, rec.node_values(n)))
            .collect();
        let direct_effects = match &self.readout {
            Some(r) => r.node_effects(&rec, &self.nodes).map_err(EngineError::DirectEffects)?,
            None => BTreeMap::new(),
        };
        let probs = next_token::softmax(&rec.last_logits);
        let top = next_token::top_k(&probs, TOP_NEXT)
            .into_iter()
            .map(|(i, p)| (self.token_text(i), p))
            .collect();
        let target_logits = self
            .target_ids
            .map(|(a, b)| (rec.last_logits[a as usize], rec.last_logits[b as usize]));
        let attention = self.attention(&rec);
        let task_eval = self.task_loss(ablations)?;
        let bridge = self.bridge_run(&ids, ablations)?;
        let task_pairs = match &self.task_loss_data {
            Some(Some(d)) => d.len(),
            _ => 0,
        };
        Ok(RunSummary {
            id,
            text: text.to_string(),
            tokens: ids.iter().map(|&i| self.token_text(i)).collect(),
            ids,
            dropped,
            acts,
            top,
            target_logits,
            attention,
            ablations: ablations.to_vec(),
            task_loss: task_eval.map(|e| e.loss),
            task_accuracy: task_eval.map(|e| e.accuracy),
            task_pairs,
            direct_effects,
            bridge,
            elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The task's loss and accuracy on held-out pairs with `ablations` applied, cached per ablation set.
    fn task_loss(&mut self, ablations: &[Ablation]) -> Result<Option<TaskEval>> {
        let mut key = ablations.to_vec();
        key.sort();
        if let Some(&l) = self.task_loss_cache.get(&key) {
            return Ok(Some(l));
        }
        if self.task_loss_data.is_none() {
            let data = self.task.as_ref().and_then(|t| {
                let pairs = tasks::split(t.as_ref(), Split::Test, TASK_LOSS_PAIRS);
                TaskData::new(&self.tok, t.name(), &pairs, self.cfg.block_size).ok()
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
        let (pos, neg) = ablate::last_logits(&self.model, data, &hooks).map_err(EngineError::TaskLoss)?;
        let eval = ablate::score_logits(data, &pos, &neg);
        self.task_loss_cache.insert(key, eval);
        Ok(Some(eval))
    }

    /// Runs the task's first `n` training pairs (the pairs the inspector's task view starts with; at most
    /// [`MAX_PAIRS`]) with `ablations` and compares every circuit node at the decision token (see [`pairs`]).
    /// Prompts longer than the context keep their last block_size tokens, as the task loss does.
    pub fn pairs(&mut self, n: usize, ablations: &[Ablation]) -> Result<PairsView> {
        let Some(task) = &self.task else {
            return Err(EngineError::NoPairsTask);
        };
        let name = task.name().to_string();
        let n = n.clamp(1, MAX_PAIRS);
        let task_pairs = tasks::split(task.as_ref(), Split::Train, n);
        let heads = pairs::heads_of_qkv_nodes(&self.nodes, self.cfg.d_head);
        let record_patterns = recording::pattern_record(attention_pattern::layers_of(&heads));
        let (mut runs, mut skipped) = (Vec::new(), 0);
        for p in &task_pairs {
            let (Ok(a), Ok(b)) = (self.tok.encode(&p.prompt), self.tok.encode(&p.prompt_alt)) else {
                skipped += 1;
                continue;
            };
            if p.is_one_sided() || a.is_empty() || b.is_empty() {
                skipped += 1;
                continue;
            }
            let mut side = |mut ids: Vec<u32>| -> Result<Recorded> {
                ids.drain(..ids.len().saturating_sub(self.cfg.block_size));
                let mut hooks = self.hooks_for(ablations)?;
                hooks.set_record_patterns(&record_patterns)?;
                Ok(recording::record(&self.model, &ids, &mut hooks)?)
            };
            let ra = side(a)?;
            let rb = side(b)?;
            runs.push((ra, rb));
        }
        let setup = PairsSetup {
            task: &name,
            asked: n,
            skipped,
            nodes: &self.nodes,
            heads: &heads,
            sink: self.cfg.sink,
            targets: self.target_ids,
            ablations,
        };
        Ok(pairs::build(&setup, &runs, |i| self.token_text(i)))
    }

    /// The Heads screen's view: the framework lens on every head (`circuitscope heads` with its defaults,
    /// computed once) and every head's attention on `text` (truncated as the lab's runs are).
    pub fn heads(&mut self, text: &str) -> Result<HeadsView> {
        if self.heads_report.is_none() {
            self.heads_report = Some(crate::analysis::heads::heads(&self.model, &HeadsOptions::default())?);
        }
        let (ids, _) = self.encode_prompt(text)?;
        let layers: BTreeSet<usize> = (0..self.cfg.n_layer).collect();
        let all: BTreeSet<(usize, usize)> = (0..self.cfg.n_layer)
            .flat_map(|l| (0..self.cfg.n_head).map(move |h| (l, h)))
            .collect();
        let mut hooks = Hooks::recording("$^")?;
        hooks.set_record_patterns(&recording::pattern_record(layers))?;
        let rec = recording::record(&self.model, &ids, &mut hooks)?;
        let patterns = attention_pattern::patterns(&rec, &all, self.cfg.sink)
            .into_values()
            .collect();
        let tokens = ids.iter().map(|&i| self.token_text(i)).collect();
        let report = self.heads_report.as_ref().expect("computed above");
        Ok(HeadsView::build(report, text, tokens, patterns, |i| self.token_text(i)))
    }

    /// The Attribution screen's view: the exact attribution graph of `text` (truncated as the lab's runs are)
    /// for `target`, pruned with the (node, edge) `thresholds` ([`crate::analysis::attribution`]).
    pub fn attribute(&mut self, text: &str, target: AttrTarget, thresholds: (f32, f32)) -> Result<AttributionView> {
        let start = Instant::now();
        for t in [thresholds.0, thresholds.1] {
            if !(0.0..=1.0).contains(&t) {
                return Err(EngineError::BadThreshold(t));
            }
        }
        let (ids, _) = self.encode_prompt(text)?;
        let targets = match target {
            AttrTarget::TopLogit => Targets::Top { cover: 1.0, max: 1 },
            AttrTarget::TaskPair => {
                let (a, b) = self.target_ids.ok_or(EngineError::NoTargetPair)?;
                Targets::Given(vec![TargetSpec {
                    token: a,
                    alt: Some(b),
                    weight: 1.0,
                }])
            }
        };
        let g = attribution::build(&self.model, &ids, &targets)?;
        let opts = PruneOptions {
            node_threshold: thresholds.0,
            edge_threshold: thresholds.1,
        };
        let p = attribution::prune(&g, opts);
        let setup = ViewSetup {
            text,
            thresholds,
            elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        };
        Ok(AttributionView::build(&g, &p, setup, |i| self.token_text(i)))
    }

    /// The attention of every head that has q or k nodes in the circuit.
    fn attention(&self, rec: &Recorded) -> BTreeMap<(usize, usize), AttnPattern> {
        attention_pattern::patterns(rec, &self.pattern_heads, self.cfg.sink)
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
                let mut rec = recording::record(&self.model, &ids, &mut hooks)?;
                self.add_features(&mut rec)?;
                out.push(rec);
            }
        }
        self.fallback_means = hook_means::mean_over_tokens(a.iter().chain(&b));
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

    /// Statistics, exemplars, task view and vocabulary links of one node.
    pub fn detail(&mut self, node: NodeId) -> Result<NodeDetail> {
        self.check_feature(&node)?;
        // A feature's statistics are the scan's only when the scan ran this very SAE.
        let scanned = !node.is_feature() || self.sae.as_ref().is_some_and(|s| s.scanned);
        let stats = self.scan.as_ref().filter(|_| scanned).and_then(|s| s.node(&node));
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
        let (embed_tokens, unembed_tokens, suppressed_tokens) = if node.is_feature() {
            self.feature_vocab(&node)?
        } else if residual {
            (
                self.column_top(&self.tables.wte, node.index, true),
                self.column_top(&self.tables.unembed, node.index, false),
                Vec::new(),
            )
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        Ok(NodeDetail {
            node,
            stats,
            quantiles,
            task,
            embed_tokens,
            unembed_tokens,
            suppressed_tokens,
        })
    }

    /// A feature's decoder direction read through the vocabulary: the tokens whose embedding points along it
    /// (by |cosine-free dot product|), and the tokens whose unembedding it promotes and suppresses (the direct
    /// path, final norm left out). Empty when the SAE's hook is not in the residual basis (its width is not
    /// d_model, or it is a normalised sublayer input).
    fn feature_vocab(&self, node: &NodeId) -> Result<VocabLinks> {
        let st = self.sae.as_ref().expect("checked by check_feature");
        let in_residual = matches!(
            node.site,
            Site::Sae(
                None | Some(
                    HookSite::ResidIn | HookSite::ResidMid | HookSite::AttnResidDelta | HookSite::MlpResidDelta
                )
            )
        );
        let d = self.tables.d_model;
        if !in_residual || st.sae.config.d_in != d {
            return Ok((Vec::new(), Vec::new(), Vec::new()));
        }
        let dir = st.sae.decoder_direction(node.index).map_err(EngineError::Sae)?;
        let project = |table: &[f32]| -> Vec<(u32, f32)> {
            table
                .chunks_exact(d)
                .enumerate()
                .map(|(v, row)| (v as u32, row.iter().zip(&dir).map(|(a, b)| a * b).sum::<f32>()))
                .collect()
        };
        let named = |v: &[(u32, f32)]| -> Vec<(String, f32)> {
            v.iter()
                .take(VOCAB_LINKS)
                .map(|&(t, x)| (self.token_text(t), x))
                .collect()
        };
        let mut emb = project(&self.tables.wte);
        emb.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        let mut un = project(&self.tables.unembed);
        un.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let promoted = named(&un);
        un.reverse();
        let suppressed = named(&un);
        Ok((named(&emb), promoted, suppressed))
    }

    /// The tokens with the largest entries in column `c` of a (V, D) table: by |value| when `abs`, else the
    /// most positive.
    fn column_top(&self, table: &[f32], c: usize, abs: bool) -> Vec<(String, f32)> {
        self.tables
            .column_sorted(table, c, abs)
            .into_iter()
            .take(VOCAB_LINKS)
            .map(|(t, x)| (self.token_text(t), x))
            .collect()
    }

    /// The embedding tab's view of residual channel `channel`: the same wte column the inspector's "embedding
    /// writes it" list reads, all of it, plus a window of wpe.
    pub fn embedding(&self, channel: usize) -> Result<EmbeddingView> {
        let d = self.cfg.d_model;
        if channel >= d {
            return Err(EngineError::NoSuchChannel { channel, d_model: d });
        }
        let col = self.tables.column_sorted(&self.tables.wte, channel, false);
        let shown = |(t, x): &(u32, f32)| (*t, self.token_text(*t).replace(' ', "␣"), *x);
        let top: Vec<_> = col.iter().take(EMBED_EXTREMES).map(shown).collect();
        let bottom: Vec<_> = col.iter().rev().take(EMBED_EXTREMES).map(shown).collect();
        let (hist, range) = embedding_tables::histogram(col.iter().map(|x| x.1), EMBED_BINS);
        Ok(EmbeddingView {
            channel,
            d_model: d,
            vocab: self.cfg.vocab_size,
            nonzero: col.len(),
            top,
            bottom,
            hist,
            range,
            wpe: self.tables.wpe_window(channel, WPE_WINDOW),
        })
    }

    /// Inserts `fragment` 0..=max_n times at byte `at` of `text` and measures every circuit node at the last
    /// token and the prediction; stops at the first insertion count whose prompt does not fit the context
    /// (longer ones only overflow further) and says so in the result.
    pub fn sweep(
        &mut self,
        text: &str,
        at: usize,
        fragment: &str,
        max_n: usize,
        ablations: &[Ablation],
    ) -> Result<SweepResult> {
        let mut points = Vec::new();
        let mut stop = None;
        let nodes = self.nodes.clone();
        for (n, t) in sweep::insertions(text, at, fragment, max_n)?.iter().enumerate() {
            let ids = self.tok.encode(t)?;
            if ids.len() > self.cfg.block_size {
                stop = Some(sweep::SweepStop {
                    n,
                    tokens: ids.len(),
                    context: self.cfg.block_size,
                });
                break;
            }
            if ids.is_empty() {
                return Err(EngineError::EmptyPrompt);
            }
            let mut hooks = self.hooks_for(ablations)?;
            let rec = recording::record(&self.model, &ids, &mut hooks)?;
            points.push(sweep::point(n, &rec, &nodes, self.target_ids, |i| self.token_text(i)));
        }
        Ok(SweepResult {
            text: text.to_string(),
            at,
            fragment: fragment.to_string(),
            max_n,
            points,
            stop,
        })
    }
}

/// Runs the engine on its own thread: requests in, every reply handed to `on_reply` (which returns false once
/// nobody listens any more). The thread ends when the request sender is dropped or `on_reply` returns false.
pub fn spawn(
    mut engine: Engine,
    mut on_reply: impl FnMut(Reply) -> bool + Send + 'static,
) -> std::io::Result<Sender<Request>> {
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
                        } else if !on_reply(engine.handle(next)) {
                            return;
                        }
                    }
                }
                if !on_reply(engine.handle(req)) {
                    return;
                }
            }
        })?;
    Ok(tx)
}
