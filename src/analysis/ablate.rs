//! Mean ablation of node sets and the task loss under it: what pruning optimises and what `circuit check`
//! measures (sufficiency: the circuit alone; necessity: the model without the circuit).

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::circuit::NodeId;
use crate::data::tasks::{self as loss, TaskPair};
use crate::model::{Action, Config, Gpt, Hooks, Intervention, ModelError};
use crate::tokenize::Tokenizer;

/// Why task data could not be built or a task evaluated under ablation.
#[derive(Debug, thiserror::Error)]
pub enum AblateError {
    /// Running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Tokenizing a prompt or target failed.
    #[error(transparent)]
    Tokenize(#[from] crate::tokenize::TokenizeError),
    /// A target string is not exactly one token with this tokenizer, so its logit cannot be read.
    #[error("task {task}: target {target:?} is {n} tokens with this tokenizer; task targets must be single tokens")]
    TargetNotSingle {
        /// The task's name.
        task: String,
        /// The target string.
        target: String,
        /// How many tokens it encodes to.
        n: usize,
    },
    /// The task has no pairs to evaluate.
    #[error("task {task}: no pairs to evaluate")]
    NoPairs {
        /// The task's name.
        task: String,
    },
    /// Mean ablation needs a hook's means that the scan does not have (or has at another width).
    #[error("no mean for hook {hook} (width {width}): the scan does not cover this model's hooks")]
    MissingMean {
        /// The hook name, e.g. `0.attn.q`.
        hook: String,
        /// The hook's width in this model.
        width: usize,
    },
}

/// Per-channel means of every node hook (`0.attn.q` → one mean per channel), the values that mean ablation puts in
/// place of a node. They come from a corpus scan (spec E.2: the pretraining distribution, all tokens).
pub type Means = BTreeMap<String, Vec<f32>>;

pub use super::scan::node_hooks;

/// Checks that `means` has a vector of the right width for every node hook.
pub fn check_means(cfg: &Config, means: &Means) -> Result<(), AblateError> {
    for h in node_hooks(cfg) {
        if means.get(&h.name).map(Vec::len) != Some(h.width) {
            return Err(AblateError::MissingMean {
                hook: h.name,
                width: h.width,
            });
        }
    }
    Ok(())
}

/// A set of nodes, as a keep flag per channel of every node hook.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSet {
    /// Hook name → one flag per channel.
    pub flags: BTreeMap<String, Vec<bool>>,
}

impl NodeSet {
    /// No node of `cfg` (or every node, with `all`).
    pub fn uniform(cfg: &Config, all: bool) -> Self {
        NodeSet {
            flags: node_hooks(cfg)
                .into_iter()
                .map(|h| (h.name, vec![all; h.width]))
                .collect(),
        }
    }

    /// Exactly `nodes` (ids must be valid for `cfg`: see [`NodeId::check`]).
    pub fn of(cfg: &Config, nodes: &[NodeId]) -> Self {
        let mut s = Self::uniform(cfg, false);
        for n in nodes {
            s.set(n, true);
        }
        s
    }

    /// Adds (`on`) or removes a node; ids outside the model are ignored.
    pub fn set(&mut self, n: &NodeId, on: bool) {
        if let Some(c) = self.flags.get_mut(&n.group()).and_then(|f| f.get_mut(n.index)) {
            *c = on;
        }
    }

    /// Whether `n` is in the set.
    pub fn contains(&self, n: &NodeId) -> bool {
        self.flags
            .get(&n.group())
            .and_then(|f| f.get(n.index))
            .copied()
            .unwrap_or(false)
    }

    /// Number of nodes in the set.
    pub fn len(&self) -> usize {
        self.flags.values().map(|f| f.iter().filter(|&&b| b).count()).sum()
    }

    /// Whether the set holds no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The complement.
    pub fn inverted(&self) -> Self {
        NodeSet {
            flags: self
                .flags
                .iter()
                .map(|(h, f)| (h.clone(), f.iter().map(|b| !b).collect()))
                .collect(),
        }
    }

    /// The member ids, in forward order.
    pub fn ids(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self
            .flags
            .iter()
            .flat_map(|(h, f)| {
                f.iter()
                    .enumerate()
                    .filter(|(_, &b)| b)
                    .filter_map(move |(i, _)| NodeId::from_hook(h, i))
            })
            .collect();
        out.sort_by_key(|n| n.forward_order());
        out
    }

    /// Hooks that mean-ablate every node of this set.
    pub fn ablation_hooks(&self, means: &Means) -> Hooks {
        let mut hooks = Hooks::none();
        for (hook, flags) in &self.flags {
            let channels: Vec<usize> = flags.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i).collect();
            if channels.is_empty() {
                continue;
            }
            if let Some(mu) = means.get(hook) {
                hooks.intervene(
                    hook,
                    Intervention::new(Action::MeanAblate(mu.clone())).channels(channels),
                );
            }
        }
        hooks
    }
}

/// A task's pairs as token ids, ready to run: left-truncated to the context, both sides of each pair.
#[derive(Debug, Clone)]
pub struct TaskData {
    /// The task's name, for messages.
    pub task: String,
    /// Class-1 prompts (`prompt`), one token list per pair.
    pub pos: Vec<Vec<u32>>,
    /// Counterfactual prompts (`prompt_alt`), aligned with `pos`.
    pub neg: Vec<Vec<u32>>,
    /// The token id of each pair's `target`.
    pub tok: Vec<u32>,
    /// The token id of each pair's `alt`, when it has one.
    pub alt: Vec<Option<u32>>,
}

impl TaskData {
    /// Tokenizes `pairs`, keeping each prompt's last `block` tokens; targets must be single tokens.
    pub fn new(tokenizer: &Tokenizer, task: &str, pairs: &[TaskPair], block: usize) -> Result<Self, AblateError> {
        if pairs.is_empty() {
            return Err(AblateError::NoPairs { task: task.to_string() });
        }
        let ids = |text: &str| -> Result<Vec<u32>, AblateError> {
            let mut v = tokenizer.encode(text)?;
            if v.len() > block {
                v.drain(..v.len() - block);
            }
            Ok(v)
        };
        let single = |s: &str| -> Result<u32, AblateError> {
            let v = tokenizer.encode(s)?;
            match v[..] {
                [id] => Ok(id),
                _ => Err(AblateError::TargetNotSingle {
                    task: task.to_string(),
                    target: s.to_string(),
                    n: v.len(),
                }),
            }
        };
        let mut d = TaskData {
            task: task.to_string(),
            pos: Vec::new(),
            neg: Vec::new(),
            tok: Vec::new(),
            alt: Vec::new(),
        };
        for p in pairs {
            d.pos.push(ids(&p.prompt)?);
            d.neg.push(ids(&p.prompt_alt)?);
            d.tok.push(single(&p.target)?);
            d.alt.push(p.alt.as_deref().map(single).transpose()?);
        }
        Ok(d)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.tok.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.tok.is_empty()
    }

    /// Pairs `range` as one right-padded batch: tokens (2n, T) with the n class-1 rows first, and the flat index
    /// `row·T + len − 1` of each row's last real token.
    pub fn batch(&self, range: std::ops::Range<usize>) -> Result<(Tensor, Vec<u32>), AblateError> {
        let rows: Vec<&Vec<u32>> = self.pos[range.clone()].iter().chain(&self.neg[range]).collect();
        let t = rows.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
        let mut flat = Vec::with_capacity(rows.len() * t);
        let mut last = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            flat.extend_from_slice(r);
            flat.extend(std::iter::repeat_n(0u32, t - r.len()));
            last.push((i * t + r.len().max(1) - 1) as u32);
        }
        Ok((Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu)?, last))
    }
}

/// Task loss (raw 2× scale, spec D.2) and accuracy.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TaskEval {
    /// Mean two-sided contrast loss over the pairs (raw 2× scale).
    pub loss: f64,
    /// Fraction of pairs where both sides prefer their own token.
    pub accuracy: f64,
}

/// Pairs per forward pass when evaluating (2× sequences).
const EVAL_BATCH: usize = 32;

/// One V-vector of logits per sequence.
pub type LogitRows = Vec<Vec<f32>>;

/// Last-position logits of both sides of every pair under `hooks` (its interventions applied; recordings
/// dropped): (class-1 rows, counterfactual rows).
pub fn last_logits(model: &Gpt, data: &TaskData, hooks: &Hooks) -> Result<(LogitRows, LogitRows), AblateError> {
    let (mut pos, mut neg) = (Vec::with_capacity(data.len()), Vec::with_capacity(data.len()));
    let mut start = 0;
    while start < data.len() {
        let end = (start + EVAL_BATCH).min(data.len());
        let (tokens, last) = data.batch(start..end)?;
        let mut h = hooks.clone();
        let logits = model.forward(&tokens, &mut h)?; // (2n, T, V)
        let (b, t, v) = logits.dims3()?;
        let idx = Tensor::from_vec(last, b, &Device::Cpu)?;
        let rows: Vec<Vec<f32>> = logits.reshape((b * t, v))?.index_select(&idx, 0)?.to_vec2()?;
        let n = end - start;
        let mut it = rows.into_iter();
        pos.extend(it.by_ref().take(n));
        neg.extend(it);
        start = end;
    }
    Ok((pos, neg))
}

/// Loss and accuracy of precomputed last logits.
pub fn score_logits(data: &TaskData, pos: &[Vec<f32>], neg: &[Vec<f32>]) -> TaskEval {
    let (mut l, mut c) = (0f64, 0usize);
    for i in 0..data.len() {
        if data.pos[i] == data.neg[i] {
            l += loss::one_sided_loss(&pos[i], data.tok[i], data.alt[i]) as f64;
            c += loss::one_sided_correct(&pos[i], data.tok[i], data.alt[i]) as usize;
        } else {
            l += loss::contrast_loss(&pos[i], &neg[i], data.tok[i], data.alt[i]) as f64;
            c += loss::pair_correct(&pos[i], &neg[i], data.tok[i], data.alt[i]) as usize;
        }
    }
    let n = data.len().max(1) as f64;
    TaskEval {
        loss: l / n,
        accuracy: c as f64 / n,
    }
}

/// The task's loss and accuracy with the nodes of `ablated` mean-ablated.
pub fn evaluate(model: &Gpt, data: &TaskData, ablated: &NodeSet, means: &Means) -> Result<TaskEval, AblateError> {
    let hooks = ablated.ablation_hooks(means);
    let (pos, neg) = last_logits(model, data, &hooks)?;
    Ok(score_logits(data, &pos, &neg))
}

/// What `circuit check` reports: the full model, the circuit alone (everything else mean-ablated: sufficiency)
/// and the model with only the circuit mean-ablated (necessity), on the same pairs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CircuitCheck {
    /// The unablated model.
    pub full: TaskEval,
    /// The circuit alone: every node outside it mean-ablated.
    pub sufficiency: TaskEval,
    /// The model with the circuit's nodes mean-ablated.
    pub necessity: TaskEval,
    /// Number of pairs evaluated.
    pub pairs: usize,
}

/// Measures the full model, the circuit's sufficiency and its necessity on `data` with mean ablation by `means`.
pub fn check_circuit(
    model: &Gpt,
    data: &TaskData,
    circuit: &NodeSet,
    means: &Means,
) -> Result<CircuitCheck, AblateError> {
    let none = NodeSet::uniform(&model.config, false);
    Ok(CircuitCheck {
        full: evaluate(model, data, &none, means)?,
        sufficiency: evaluate(model, data, &circuit.inverted(), means)?,
        necessity: evaluate(model, data, circuit, means)?,
        pairs: data.len(),
    })
}

/// Per-channel means of every node hook over all real tokens of `seqs` (no padding counted): the "mean over the
/// task" ablation of spec E.2's reimplementations, for models without a corpus scan.
pub fn means_over(model: &Gpt, seqs: &[Vec<u32>]) -> Result<Means, AblateError> {
    let hooks = node_hooks(&model.config);
    let pattern = hooks
        .iter()
        .map(|h| regex::escape(&h.name) + "$")
        .collect::<Vec<_>>()
        .join("|");
    let mut sums: BTreeMap<String, Vec<f64>> = hooks.iter().map(|h| (h.name.clone(), vec![0f64; h.width])).collect();
    let mut count = 0usize;
    for chunk in seqs.chunks(EVAL_BATCH) {
        for s in chunk {
            let mut rec = Hooks::recording(&pattern)?;
            model.forward_ids(s, &mut rec)?;
            for (h, t) in &rec.recorded {
                let rows: Vec<Vec<f32>> = t.squeeze(0)?.to_vec2()?; // (T, W)
                let acc = sums.get_mut(h).expect("recorded hooks are node hooks");
                for r in rows {
                    for (a, x) in acc.iter_mut().zip(r) {
                        *a += x as f64;
                    }
                }
            }
            count += s.len();
        }
    }
    let n = count.max(1) as f64;
    Ok(sums
        .into_iter()
        .map(|(h, v)| (h, v.into_iter().map(|x| (x / n) as f32).collect()))
        .collect())
}
