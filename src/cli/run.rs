//! `circuitscope run`: one forward pass with the top next tokens, channel magnitudes, hook summaries,
//! interventions, and an optional safetensors dump of everything recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use serde_json::json;

use super::circuit::load_model_parts;
use super::common::{
    load_model, matching_hooks, parse_hook_channels, print_json, resolve_tokenizer, token_text, HookChannel,
};
use crate::analysis::ablate::{Means, TaskData};
use crate::analysis::logit_attribution::{self, Decomposition, Readout};
use crate::analysis::sae::LatentEdit;
use crate::analysis::scan::ScanIndex;
use crate::analysis::{hook_means, recording};
use crate::circuit::node_id::{sae_group, SAE_SUFFIX};
use crate::circuit::{CircuitFile, NodeId};
use crate::data::tasks::{self, Split};
use crate::model::{checkpoint, Action, Gpt, Hooks, Intervention, LoadOptions, Stored};
use crate::tokenize::Tokenizer;

/// Arguments of `circuitscope run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Model directory (config.json + model.safetensors, or beeg_config.json + final_model.pt).
    #[arg(long)]
    pub model: PathBuf,
    /// Load-time checks and their opt-outs.
    #[command(flatten)]
    pub checks: super::common::LoadChecks,
    /// Prompt text (tokenized with the model's tokenizer.json or --tokenizer).
    #[arg(long, conflicts_with = "tokens")]
    pub prompt: Option<String>,
    /// Explicit token ids instead of a prompt, e.g. 5,17,2.
    #[arg(long, value_delimiter = ',')]
    pub tokens: Option<Vec<u32>>,
    /// tokenizer.json to use instead of the model directory's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// How many next-token candidates to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Record every hook whose name starts with a match of this regex (e.g. `.*`, `1\.mlp`, `final_resid`) and
    /// print a summary of each at the last token.
    #[arg(long)]
    pub hooks: Option<String>,
    /// Channels to print, comma-separated: HOOK[i] or HOOK[i:j], e.g. 0.attn.q[3],1.mlp.post_act[0:4]; a feature
    /// of --sae, HOOK.sae[i], prints the latent.
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
    /// Print channel values at every token instead of the last one.
    #[arg(long)]
    pub per_token: bool,
    /// Interventions: HOOK[i]=VALUE sets a channel, HOOK[i]=mean sets it to its mean (see --scan and
    /// --means-task), HOOK[i]*=FACTOR scales it; add @POS after the bracket to touch one position only (negative
    /// counts from the end), e.g. 1.mlp.post_act[7]@-1=0. An SAE feature of --sae (`1.resid_mid.sae[3]=0`)
    /// changes the activation by (z' − z)·W_dec[i], its `=mean` the scan's (`scan --sae`).
    #[arg(long, num_args = 1..)]
    pub intervene: Vec<String>,
    /// The scan whose per-channel means `=mean` uses [default: <model>/scan], the means pruning and the
    /// workbench ablate with.
    #[arg(long)]
    pub scan: Option<PathBuf>,
    /// Take the means of `=mean` over this task's first 64 training pairs (both prompts, every token) instead
    /// of a scan, as `prune --means task` does.
    #[arg(long)]
    pub means_task: Option<String>,
    /// Direct logit attribution at the last token: TOKEN's logit, or with TOKEN,ALT the difference
    /// logit(TOKEN) − logit(ALT), split into each component's direct contribution (final norm scale frozen).
    /// Tokens are text that is one token (a comma is given by its id) or ids written #ID.
    #[arg(long, value_delimiter = ',', num_args = 1..=2, value_names = ["TOKEN", "ALT"], conflicts_with = "logit_diff")]
    pub dla: Option<Vec<String>>,
    /// The older spelling of `--dla A,B`: logit(A) − logit(B) and its split (kept for scripts).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub logit_diff: Option<Vec<String>>,
    /// With --dla (or --logit-diff): also each node of this circuit file's direct effect.
    #[arg(long)]
    pub circuit: Option<PathBuf>,
    /// Keep the last block_size tokens of a prompt that is too long instead of refusing it.
    #[arg(long)]
    pub truncate: bool,
    /// Write logits and every recorded hook to this safetensors file (`logits`, `hook.<name>`, positions x width).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Use dense matmul for every matrix (default: CSR kernel below density 0.25).
    #[arg(long)]
    pub dense: bool,
    /// An SAE folder (ours or SAELens's) whose latents --steer adds and whose features (`HOOK.sae[i]`)
    /// --intervene can set, scale or mean-ablate.
    #[arg(long)]
    pub sae: Option<PathBuf>,
    /// FEATURE=SCALE[@POS]: add SCALE × the decoder direction of the --sae latent FEATURE at the SAE's hook, at
    /// every position or at POS only (negative counts from the end); repeatable. Prints the change in the
    /// next-token distribution.
    #[arg(long, num_args = 1..)]
    pub steer: Vec<String>,
    /// Generate N tokens after the prompt (greedy, or sampled with --seed), with the interventions; with --steer
    /// also without the steering, for comparison.
    #[arg(long)]
    pub generate: Option<usize>,
    /// Sample the --generate tokens with this seed instead of decoding greedily.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sampling temperature with --seed.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Steering through a bridge (the model must be a bridged one, docs/bridges.md): NODE=VALUE[@POS] sets a
    /// sparse-model node (VALUE a number, `mean`, or with --means-task `class_a`/`class_b`: the node's mean at
    /// the last token of the task's prompts/counterfactual prompts), carries the change of the sparse residual
    /// at the next bridge site through the decoder into the dense model, and shows both models before and after;
    /// repeatable.
    #[arg(long, num_args = 1..)]
    pub bridge_steer: Vec<String>,
    /// With --bridge-steer: the dense model [default: the one named in the model's bridge.json].
    #[arg(long, requires = "bridge_steer")]
    pub bridge_dense: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a parsed `--intervene` item does to its channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpecAction {
    /// `=VALUE`.
    Set(f32),
    /// `*=FACTOR`.
    Scale(f32),
    /// `=mean`: the channel's mean (from the scan, or over a task's prompts).
    Mean,
}

/// A parsed `--intervene` item.
#[derive(Debug, Clone, PartialEq)]
pub struct InterventionSpec {
    /// The channel intervened on.
    pub target: HookChannel,
    /// The position (negative: from the end); `None`: every position.
    pub position: Option<i64>,
    /// What it does to the channel.
    pub action: SpecAction,
}

impl InterventionSpec {
    /// Parses `HOOK[i]=v`, `HOOK[i]*=v` either with `@POS` after the bracket, checked against the model's hooks.
    pub fn parse(spec: &str, model: &Gpt) -> Result<Self> {
        let (target, position, action) = spec_parts(spec)?;
        let mut chans = parse_hook_channels(target, model).with_context(|| format!("--intervene `{spec}`"))?;
        if chans.len() != 1 {
            bail!("--intervene `{spec}`: give one channel per intervention");
        }
        Ok(InterventionSpec {
            target: chans.remove(0),
            position,
            action,
        })
    }

    /// The intervention; `means` is the hook's full-width mean vector, needed by `=mean` only.
    pub fn to_intervention(&self, means: Option<&[f32]>) -> Result<Intervention> {
        let action = match self.action {
            SpecAction::Scale(f) => Action::Scale(f),
            SpecAction::Set(v) => Action::Set(v),
            SpecAction::Mean => match means {
                Some(m) => Action::MeanAblate(m.to_vec()),
                None => bail!("no mean for {}", self.target),
            },
        };
        let iv = Intervention::new(action).channels(vec![self.target.channel]);
        Ok(match self.position {
            Some(p) => iv.positions(vec![p]),
            None => iv,
        })
    }
}

/// The parts of an `--intervene` item: the target (`HOOK[i]` or a feature `HOOK.sae[i]`), the position after
/// `@` and the action.
fn spec_parts(spec: &str) -> Result<(&str, Option<i64>, SpecAction)> {
    let (lhs, rhs, scale) = if let Some((l, r)) = spec.split_once("*=") {
        (l, r, true)
    } else if let Some((l, r)) = spec.split_once('=') {
        (l, r, false)
    } else {
        bail!("--intervene `{spec}`: expected HOOK[i]=VALUE, HOOK[i]=mean or HOOK[i]*=FACTOR");
    };
    let (target, position) = match lhs.rsplit_once('@') {
        Some((t, p)) => (
            t,
            Some(
                p.trim()
                    .parse::<i64>()
                    .with_context(|| format!("--intervene `{spec}`: bad position `{p}`"))?,
            ),
        ),
        None => (lhs, None),
    };
    let action = if rhs.trim() == "mean" {
        if scale {
            bail!("--intervene `{spec}`: a channel is set to its mean (`=mean`), not scaled by it");
        }
        SpecAction::Mean
    } else {
        let value: f32 = rhs
            .trim()
            .parse()
            .with_context(|| format!("--intervene `{spec}`: `{rhs}` is not a number or `mean`"))?;
        if !value.is_finite() {
            bail!("--intervene `{spec}`: the value must be finite, not {value}");
        }
        if scale {
            SpecAction::Scale(value)
        } else {
            SpecAction::Set(value)
        }
    };
    Ok((target.trim(), position, action))
}

/// A parsed `--intervene` item on an SAE feature (`1.resid_mid.sae[3]=0`), applied to the --sae SAE's code.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    /// The feature.
    pub node: NodeId,
    /// The position (negative: from the end); `None`: every position.
    pub position: Option<i64>,
    /// What it does to the latent.
    pub action: SpecAction,
}

impl FeatureSpec {
    /// Parses an item whose target is a feature id (ours or TransformerLens's spelling); None when the target is
    /// not one (a channel, for [`InterventionSpec::parse`]).
    pub fn parse(spec: &str, model: &Gpt) -> Result<Option<Self>> {
        let (target, position, action) = spec_parts(spec)?;
        if !target.contains(SAE_SUFFIX) {
            return Ok(None);
        }
        let cfg = &model.config;
        let node =
            NodeId::parse_for(target, cfg.n_layer, cfg.d_head).with_context(|| format!("--intervene `{spec}`"))?;
        Ok(node.is_feature().then_some(FeatureSpec { node, position, action }))
    }
}

/// The interventions of `--intervene` items on features, at the --sae SAE's hook: each sets its latent (`=v`,
/// `=mean` from the scan of this SAE) or scales it (`*=f`), the activation changing by (z' − z)·W_dec[i].
fn feature_interventions(args: &RunArgs, model: &Gpt, specs: &[FeatureSpec]) -> Result<Vec<(String, Intervention)>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let Some(dir) = &args.sae else {
        bail!(
            "--intervene `{}`: an SAE feature; name its SAE with --sae DIR",
            args.intervene
                .iter()
                .find(|s| s.contains(SAE_SUFFIX))
                .map_or("", String::as_str)
        );
    };
    let sae = super::sae::load_sae(dir, &args.model, model)?;
    let shape = Some((sae.hook(), sae.config.n_latents));
    for f in specs {
        f.node
            .check_feature(shape)
            .with_context(|| format!("--sae {}", dir.display()))?;
    }
    let means = if specs.iter().any(|f| f.action == SpecAction::Mean) {
        Some(feature_means(args, &sae)?)
    } else {
        None
    };
    let hook = sae.hook().to_string();
    specs
        .iter()
        .map(|f| {
            let edit = match f.action {
                SpecAction::Set(v) => LatentEdit::Set(v),
                SpecAction::Scale(x) => LatentEdit::Scale(x),
                SpecAction::Mean => LatentEdit::Set(means.as_ref().map_or(0.0, |m| m[f.node.index])),
            };
            let iv = sae.edit(&[(f.node.index, edit)])?;
            Ok((
                hook.clone(),
                match f.position {
                    Some(p) => iv.positions(vec![p]),
                    None => iv,
                },
            ))
        })
        .collect()
}

/// A `--channels` item that is a feature of the --sae SAE (`1.resid_mid.sae[3]`), checked against it.
fn feature_channel(spec: &str, sae: &crate::analysis::sae::Sae, model: &Gpt) -> Result<NodeId> {
    let cfg = &model.config;
    let node = NodeId::parse_for(spec, cfg.n_layer, cfg.d_head).with_context(|| format!("--channels `{spec}`"))?;
    node.check_feature(Some((sae.hook(), sae.config.n_latents)))
        .with_context(|| format!("--channels `{spec}`"))?;
    Ok(node)
}

/// Every latent's mean from the scan, which must have scanned this very SAE (`scan --sae`).
fn feature_means(args: &RunArgs, sae: &crate::analysis::sae::Sae) -> Result<Vec<f32>> {
    if args.means_task.is_some() {
        bail!("`=mean` on a feature takes the scan's mean (`scan --sae`); --means-task averages channels only");
    }
    let dir = args.scan.clone().unwrap_or_else(|| ScanIndex::default_dir(&args.model));
    let parts = load_model_parts(&args.model)?;
    let index = ScanIndex::open_for(&dir, &parts.fingerprint)?;
    let group = sae_group(sae.hook());
    match index.meta().sae(&group) {
        Some(entry) if entry.fingerprint == sae.fingerprint()? => {}
        Some(entry) => bail!(
            "{}: the scan's `{group}` features are of another SAE ({}); rescan with `scan --sae`",
            dir.display(),
            entry.path
        ),
        None => bail!(
            "{}: the scan has no means for `{group}`; rescan with `circuitscope scan --sae DIR`",
            dir.display()
        ),
    }
    index
        .hook_means(&group)
        .with_context(|| format!("{}: no means for `{group}`", dir.display()))
}

/// Training pairs behind `--means-task`.
const MEAN_TASK_PAIRS: usize = 64;

/// The full-width means of every hook that a `=mean` intervention touches: from `--means-task`'s prompts, else
/// from the scan.
pub(super) fn means_for(
    args: &RunArgs,
    model: &Gpt,
    tok: Option<&Tokenizer>,
    ivs: &[InterventionSpec],
) -> Result<Means> {
    let hooks: BTreeSet<&str> = ivs
        .iter()
        .filter(|iv| iv.action == SpecAction::Mean)
        .map(|iv| iv.target.hook.as_str())
        .collect();
    if hooks.is_empty() {
        return Ok(Means::new());
    }
    if let Some(name) = &args.means_task {
        let task = tasks::resolve(name)?;
        let Some(tok) = tok else {
            bail!("--means-task {name}: the task's prompts need a tokenizer; pass --tokenizer FILE");
        };
        let pairs = tasks::split(task.as_ref(), Split::Train, MEAN_TASK_PAIRS);
        let data = TaskData::new(tok, task.name(), &pairs, model.config.block_size)?;
        let pattern = hooks
            .iter()
            .map(|h| regex::escape(h) + "$")
            .collect::<Vec<_>>()
            .join("|");
        let mut runs = Vec::new();
        for seq in data.pos.iter().chain(&data.neg) {
            runs.push(recording::record(model, seq, &mut Hooks::recording(&pattern)?)?);
        }
        return Ok(hook_means::mean_over_tokens(&runs));
    }
    let dir = args.scan.clone().unwrap_or_else(|| ScanIndex::default_dir(&args.model));
    if !dir.join("index.json").exists() {
        bail!(
            "{}: no scan for `=mean`; run `circuitscope scan --model {}` first, or pass --means-task NAME",
            dir.display(),
            args.model.display()
        );
    }
    let parts = load_model_parts(&args.model)?;
    let index = ScanIndex::open_for(&dir, &parts.fingerprint)?;
    hooks
        .into_iter()
        .map(|h| {
            let m = index.hook_means(h).with_context(|| {
                format!(
                    "{}: the scan has no means for hook {h} (scans cover the circuit-node hooks); pass --means-task NAME",
                    dir.display()
                )
            })?;
            Ok((h.to_string(), m))
        })
        .collect()
}

/// A `--dla` / `--logit-diff` token (`flag` names the option in errors): `#ID`, else text that is one token
/// with the tokenizer, else (no tokenizer) an id.
pub(super) fn target_token(flag: &str, spec: &str, tok: Option<&Tokenizer>, vocab: usize) -> Result<u32> {
    let id = if let Some(n) = spec.strip_prefix('#') {
        n.parse::<u32>()
            .with_context(|| format!("{flag} `{spec}`: `{n}` is not a token id"))?
    } else if spec.is_empty() {
        bail!("{flag}: an empty token; give a token's text or its id as #ID (a comma is #ID)");
    } else if let Some(t) = tok {
        match t.encode(spec)?.as_slice() {
            [id] => *id,
            ids => bail!(
                "{flag} `{spec}`: {} tokens with this tokenizer; give one token's text or its id as #ID",
                ids.len()
            ),
        }
    } else {
        spec.parse::<u32>().with_context(|| {
            format!("{flag} `{spec}`: no tokenizer to read text with; give token ids (#ID or a number)")
        })?
    };
    if id as usize >= vocab {
        bail!("{flag} `{spec}`: token id {id} is outside the vocabulary (size {vocab})");
    }
    Ok(id)
}

/// The `--dla` (`--logit-diff`) result: the decomposition, and each circuit node's direct effect (largest first).
struct LogitDiffReport {
    decomposition: Decomposition,
    nodes: Option<Vec<(NodeId, f32)>>,
}

fn logit_diff_report(
    args: &RunArgs,
    model: &Gpt,
    ids: &[u32],
    tok: Option<&Tokenizer>,
    interventions: &[(String, Intervention)],
) -> Result<Option<LogitDiffReport>> {
    let (flag, specs) = match (&args.dla, &args.logit_diff) {
        (Some(s), _) => ("--dla", s),
        (None, Some(s)) => ("--logit-diff", s),
        (None, None) => {
            if args.circuit.is_some() {
                bail!("--circuit lists the circuit's direct effects on a logit: give --dla TOKEN[,ALT] too");
            }
            return Ok(None);
        }
    };
    let vocab = model.config.vocab_size;
    let a = target_token(flag, &specs[0], tok, vocab)?;
    let b = specs.get(1).map(|s| target_token(flag, s, tok, vocab)).transpose()?;
    let nodes = match &args.circuit {
        Some(path) => {
            let c = CircuitFile::load(path).with_context(|| format!("reading {}", path.display()))?;
            let nodes = c.node_ids();
            for n in &nodes {
                if let Err(e) = n.check(&model.config) {
                    bail!("{}: {e}", path.display());
                }
            }
            Some(nodes)
        }
        None => None,
    };
    let readout = Readout::of(model, a, b).context(flag)?;
    let mut pattern = logit_attribution::record_pattern(model.config.n_layer);
    if let Some(nodes) = &nodes {
        pattern = format!("{pattern}|{}", recording::record_pattern(nodes));
    }
    let mut hooks = Hooks::recording(&pattern)?;
    for (hook, iv) in interventions {
        hooks.intervene(hook, iv.clone());
    }
    let rec = recording::record(model, ids, &mut hooks)?;
    let decomposition = readout.decompose(&rec)?;
    let nodes = match nodes {
        Some(nodes) => {
            let mut effects: Vec<(NodeId, f32)> = readout.node_effects(&rec, &nodes)?.into_iter().collect();
            effects.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()).then(x.0.cmp(&y.0)));
            Some(effects)
        }
        None => None,
    };
    Ok(Some(LogitDiffReport { decomposition, nodes }))
}

/// Runs the subcommand.
pub fn run(args: RunArgs) -> Result<()> {
    let opts = if args.dense {
        LoadOptions::ALL_DENSE
    } else {
        LoadOptions::default()
    };
    let model = load_model(&args.model, args.checks.apply(opts))?;
    let tok = resolve_tokenizer(args.tokenizer.as_deref(), &args.model)?;
    let mut ids = match (&args.prompt, &args.tokens) {
        (Some(p), _) => {
            let Some(t) = &tok else {
                bail!(
                    "{}: no tokenizer.json beside the model; pass --tokenizer FILE or use --tokens",
                    args.model.display()
                );
            };
            t.encode(p)?
        }
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give --prompt TEXT or --tokens IDS"),
    };
    if ids.is_empty() {
        bail!("the prompt is empty");
    }
    let block = model.config.block_size;
    if ids.len() > block {
        if !args.truncate {
            bail!(
                "the prompt has {} tokens but the model's context is {block}; shorten it or pass --truncate",
                ids.len()
            );
        }
        ids.drain(..ids.len() - block);
    }
    model.check_tokens(&ids)?;

    // The --sae SAE when `--channels` asks for features' values.
    let channel_sae = match (&args.sae, args.channels.iter().find(|s| s.contains(SAE_SUFFIX))) {
        (Some(dir), Some(_)) => Some(super::sae::load_sae(dir, &args.model, &model)?),
        (None, Some(spec)) => bail!("--channels `{spec}`: an SAE feature; name its SAE with --sae DIR"),
        _ => None,
    };
    let (mut channels, mut feature_channels) = (Vec::new(), Vec::new());
    for spec in &args.channels {
        match &channel_sae {
            Some(sae) if spec.contains(SAE_SUFFIX) => feature_channels.push(feature_channel(spec, sae, &model)?),
            _ => channels.extend(parse_hook_channels(spec, &model)?),
        }
    }
    let (mut ivs, mut feature_specs) = (Vec::new(), Vec::new());
    for s in &args.intervene {
        match FeatureSpec::parse(s, &model)? {
            Some(f) => feature_specs.push(f),
            None => ivs.push(InterventionSpec::parse(s, &model)?),
        }
    }

    if let Some(h) = &args.hooks {
        if let Err(e) = regex::Regex::new(h) {
            // The regex error spans several lines (pattern, caret, reason); keep the reason.
            let msg = e.to_string();
            let reason = msg.lines().last().unwrap_or(&msg).trim().trim_start_matches("error: ");
            bail!("--hooks `{h}`: invalid regex: {reason}");
        }
    }
    let mut hooks = Hooks::none();
    let hook_names: Vec<String> = match &args.hooks {
        Some(h) => matching_hooks(h, &model)?,
        None => vec![],
    };
    let sae_hook = channel_sae.as_ref().map(|s| s.hook().to_string());
    let pattern: Vec<String> = channels
        .iter()
        .map(|c| &c.hook)
        .chain(&hook_names)
        .chain(&sae_hook)
        .map(|h| regex::escape(h) + "$")
        .collect();
    if !pattern.is_empty() {
        hooks.set_record(&pattern.join("|"))?;
    }
    let means = means_for(&args, &model, tok.as_ref(), &ivs)?;
    let interventions = ivs
        .iter()
        .map(|iv| {
            Ok((
                iv.target.hook.clone(),
                iv.to_intervention(means.get(&iv.target.hook).map(Vec::as_slice))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    // Feature edits join the channel interventions: `--steer`'s comparison keeps them in its baseline too.
    let mut interventions = interventions;
    interventions.extend(feature_interventions(&args, &model, &feature_specs)?);
    let steering = super::steer::steering(&args, &model)?;
    for (hook, iv) in interventions.iter().chain(&steering) {
        hooks.intervene(hook, iv.clone());
    }
    let logits = model.forward_ids(&ids, &mut hooks)?; // (T, V)
    let t = ids.len();
    let last = logits.get(t - 1)?;
    let probs = candle_nn::ops::softmax_last_dim(&last)?;
    let last_values = last.to_vec1::<f32>()?;
    let non_finite = last_values.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        // Flagged, not hidden: with --allow-nonfinite this is what the user asked to see.
        eprintln!(
            "warning: {non_finite} of the last position's logits are NaN or infinite; probabilities are meaningless"
        );
    }
    let top = top_k(&last_values, &probs.to_vec1::<f32>()?, args.top);

    let positions: Vec<usize> = if args.per_token { (0..t).collect() } else { vec![t - 1] };
    let mut channel_rows = Vec::new();
    for c in &channels {
        let act = hooks
            .recorded
            .get(&c.hook)
            .context("hook was not recorded")?
            .squeeze(0)?; // (T, W)
        let col: Vec<f32> = act.narrow(1, c.channel, 1)?.squeeze(1)?.to_vec1()?;
        channel_rows.push((c.to_string(), positions.iter().map(|&p| col[p]).collect::<Vec<f32>>()));
    }
    if let (Some(sae), Some(hook)) = (&channel_sae, &sae_hook) {
        // The SAE's code of the hook as the (intervened) forward left it: (T, n_latents).
        let x = hooks.recorded.get(hook).context("the SAE's hook was not recorded")?;
        let z: Vec<Vec<f32>> = sae.encode(x)?.to_vec2()?;
        for f in &feature_channels {
            channel_rows.push((
                f.to_string(),
                positions.iter().map(|&p| z[p][f.index]).collect::<Vec<f32>>(),
            ));
        }
    }
    let mut hook_rows = Vec::new();
    for name in &hook_names {
        let act = hooks.recorded[name].squeeze(0)?.get(t - 1)?; // (W)
        hook_rows.push((name.clone(), HookSummary::of(&act.to_vec1()?)));
    }

    if let Some(path) = &args.dump {
        dump(path, &logits, &hooks.recorded)?;
    }
    let all_interventions: Vec<(String, Intervention)> = interventions.iter().chain(&steering).cloned().collect();
    let logit_diff = logit_diff_report(&args, &model, &ids, tok.as_ref(), &all_interventions)?;
    let steer_report = super::steer::report(&args, &model, &ids, &interventions, &steering)?;
    let bridge_report = super::bridge::steer_report(&args, &model, &ids, tok.as_ref(), args.checks.apply(opts))?;

    if args.json {
        let out = json!({
            "tokens": ids.iter().enumerate().map(|(i, &id)| json!({"position": i, "id": id, "text": token_text(tok.as_ref(), id)})).collect::<Vec<_>>(),
            "top": top.iter().map(|&(id, logit, prob)| json!({"id": id, "token": token_text(tok.as_ref(), id), "prob": prob, "logit": logit})).collect::<Vec<_>>(),
            "positions": positions,
            "channels": channel_rows.iter().map(|(id, v)| json!({"id": id, "values": v})).collect::<Vec<_>>(),
            "hooks": hook_rows.iter().map(|(n, s)| json!({"name": n, "width": s.width, "nonzero": s.nonzero, "l2": s.l2, "top": s.top.iter().map(|&(c, v)| json!([c, v])).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "interventions": args.intervene,
            "dump": args.dump.as_ref().map(|p| p.display().to_string()),
            "dla": logit_diff.as_ref().map(|r| logit_diff_json(r, tok.as_ref())),
            // The older key of the same object, for scripts written against `--logit-diff`.
            "logit_diff": logit_diff.as_ref().map(|r| logit_diff_json(r, tok.as_ref())),
            "steer": steer_report.as_ref().map(|r| r.json(&args, tok.as_ref())),
            "bridge_steer": bridge_report.as_ref().map(|r| r.json(tok.as_ref())),
        });
        return print_json(&out);
    }
    let shown: Vec<String> = ids.iter().map(|&id| token_text(tok.as_ref(), id)).collect();
    println!(
        "{} tokens: {}",
        t,
        shown.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" ")
    );
    if !args.intervene.is_empty() {
        println!("interventions: {}", args.intervene.join(", "));
    }
    println!("\nnext token after {:?}:", shown[t - 1]);
    println!("  {:>4}  {:>8}  {:>9}  {:>8}  token", "rank", "id", "prob", "logit");
    for (rank, &(id, logit, prob)) in top.iter().enumerate() {
        println!(
            "  {:>4}  {:>8}  {:>9.5}  {:>8.3}  {:?}",
            rank + 1,
            id,
            prob,
            logit,
            token_text(tok.as_ref(), id)
        );
    }
    if !channel_rows.is_empty() {
        println!("\nchannels{}:", if args.per_token { "" } else { " at the last token" });
        if args.per_token {
            print!("  {:<28}", "channel");
            for p in &positions {
                print!(" {:>8}", p);
            }
            println!();
        }
        for (id, vals) in &channel_rows {
            print!("  {id:<28}");
            for v in vals {
                print!(" {v:>8.4}");
            }
            println!();
        }
    }
    if !hook_rows.is_empty() {
        println!("\nhooks at the last token (width, nonzero, L2, largest |value| channels):");
        for (name, s) in &hook_rows {
            let tops: Vec<String> = s.top.iter().map(|(c, v)| format!("[{c}]={v:.3}")).collect();
            println!(
                "  {name:<20} {:>6} {:>6} {:>9.4}  {}",
                s.width,
                s.nonzero,
                s.l2,
                tops.join(" ")
            );
        }
    }
    if let Some(r) = &logit_diff {
        print_logit_diff(r, tok.as_ref());
    }
    if let Some(r) = &steer_report {
        print!("{}", r.render(&args, tok.as_ref()));
    }
    if let Some(r) = &bridge_report {
        print!("{}", r.render(tok.as_ref(), args.top));
    }
    if let Some(p) = &args.dump {
        println!("\nwrote {}", p.display());
    }
    Ok(())
}

fn logit_diff_json(r: &LogitDiffReport, tok: Option<&Tokenizer>) -> serde_json::Value {
    let d = &r.decomposition;
    json!({
        "a": {"id": d.a, "token": token_text(tok, d.a), "logit": d.logit_a},
        "b": d.b.map(|b| json!({"id": b, "token": token_text(tok, b), "logit": d.logit_b})),
        "diff": d.logit_diff,
        "unembed_bias": d.unembed_bias,
        "norm_scale": d.norm_scale,
        "components": d.components,
        "nodes": r.nodes.as_ref().map(|ns| ns.iter().map(|(n, v)| json!({"id": n.to_string(), "value": v})).collect::<Vec<_>>()),
    })
}

fn print_logit_diff(r: &LogitDiffReport, tok: Option<&Tokenizer>) {
    let d = &r.decomposition;
    match (d.b, d.logit_b) {
        (Some(b), Some(logit_b)) => println!(
            "\nlogit diff at the last token: logit({:?}) {:.4} − logit({:?}) {:.4} = {:+.4}",
            token_text(tok, d.a),
            d.logit_a,
            token_text(tok, b),
            logit_b,
            d.logit_diff
        ),
        _ => println!(
            "\nlogit at the last token: logit({:?}) = {:+.4}",
            token_text(tok, d.a),
            d.logit_a
        ),
    }
    println!(
        "direct contributions (final norm scale {:.5} frozen; the rows sum to the {} less the unembedding bias \
         {:+.4}):",
        d.norm_scale,
        if d.b.is_some() { "difference" } else { "logit" },
        d.unembed_bias
    );
    for c in &d.components {
        println!("  {:<24} {:>+10.4}", c.name, c.value);
    }
    let total: f32 = d.components.iter().map(|c| c.value).sum();
    println!("  {:<24} {:>+10.4}", "sum of the rows", total);
    if let Some(nodes) = &r.nodes {
        println!("\ncircuit nodes' direct effects, largest first (reads, queries and keys have no direct path):");
        for (n, v) in nodes {
            println!("  {:<24} {:>+10.4}", n.to_string(), v);
        }
    }
}

/// (id, logit, prob) of the k most probable tokens.
pub fn top_k(logits: &[f32], probs: &[f32], k: usize) -> Vec<(u32, f32, f32)> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| (i as u32, logits[i], probs[i]))
        .collect()
}

/// What `run` prints of one recorded hook at the last position.
pub struct HookSummary {
    /// Channels.
    pub width: usize,
    /// Nonzero channels.
    pub nonzero: usize,
    /// L2 norm.
    pub l2: f32,
    /// The five largest-|value| channels.
    pub top: Vec<(usize, f32)>,
}

impl HookSummary {
    /// The summary of one activation vector.
    pub fn of(v: &[f32]) -> Self {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[b].abs().total_cmp(&v[a].abs()).then(a.cmp(&b)));
        HookSummary {
            width: v.len(),
            nonzero: v.iter().filter(|x| **x != 0.0).count(),
            l2: v.iter().map(|x| x * x).sum::<f32>().sqrt(),
            top: idx
                .into_iter()
                .take(5)
                .filter(|&i| v[i] != 0.0)
                .map(|i| (i, v[i]))
                .collect(),
        }
    }
}

/// Writes `logits` (T, V) and `hook.<name>` (T, W) for a single-sequence run.
fn dump(path: &std::path::Path, logits: &Tensor, recorded: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut tensors = BTreeMap::new();
    tensors.insert("logits".to_string(), Stored::Dense(logits.to_dtype(DType::F32)?));
    for (name, t) in recorded {
        let t = if t.rank() == 3 { t.squeeze(0)? } else { t.clone() };
        tensors.insert(format!("hook.{name}"), Stored::Dense(t));
    }
    checkpoint::write_safetensors(path, &tensors, &[("content".into(), "circuitscope run dump".into())])
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
