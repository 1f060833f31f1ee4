//! What N2G asks of a model: a node's activation at the end of many short token sequences (suffixes, suffixes
//! with a token padded out), and every node's activation over held-out text. [`ModelProbe`] answers with batched
//! forwards that record only the hooks of the nodes asked about; tests answer with planted functions.

use std::collections::{BTreeMap, BTreeSet};

use candle_core::{Device, Tensor};

use super::error::{ExplainError, Result};
use crate::analysis::recording::record_pattern;
use crate::analysis::sae::Sae;
use crate::circuit::node_id::sae_group;
use crate::circuit::NodeId;
use crate::model::{Gpt, Hooks};

/// One question: the node's activation at the last token of `tokens`, run as a sequence of its own (starting at
/// position 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The node.
    pub node: NodeId,
    /// The sequence (non-empty).
    pub tokens: Vec<u32>,
}

/// Answers activation questions about nodes.
pub trait Probe {
    /// For each query, the node's activation at the query's last token (same order as `queries`).
    fn last_values(&self, queries: &[Query]) -> Result<Vec<f32>>;

    /// The activations of `nodes` at every token of `tokens`, cut into sequences of `seq_len` (the last may be
    /// shorter), each run on its own: one vector of `tokens.len()` values per node.
    fn stream_values(&self, tokens: &[u32], seq_len: usize, nodes: &[NodeId]) -> Result<Vec<Vec<f32>>>;
}

/// A [`Probe`] backed by a model's forward pass with hooks.
pub struct ModelProbe<'a> {
    model: &'a Gpt,
    /// Tokens per forward pass: bounds the recorded activations' memory.
    batch_tokens: usize,
    /// The SAE whose features (`<hook>.sae[i]`) are read by encoding its hook.
    sae: Option<&'a Sae>,
}

impl<'a> ModelProbe<'a> {
    /// Probes `model`, `batch_tokens` tokens per forward.
    pub fn new(model: &'a Gpt, batch_tokens: usize) -> Self {
        ModelProbe {
            model,
            batch_tokens: batch_tokens.max(1),
            sae: None,
        }
    }

    /// Reads the features of `sae` too (its latents, encoded from its hook's recorded activations).
    pub fn with_sae(mut self, sae: &'a Sae) -> Self {
        self.sae = Some(sae);
        self
    }

    /// One forward of `rows` equal-length sequences (flattened in `ids`) recording the hooks of `nodes`:
    /// hook name → (width, values (rows·t, width)).
    fn run(&self, ids: &[u32], rows: usize, t: usize, nodes: &[NodeId]) -> Result<BTreeMap<String, (usize, Vec<f32>)>> {
        let input = Tensor::from_slice(ids, (rows, t), &Device::Cpu).map_err(crate::model::ModelError::from)?;
        let mut hooks = Hooks::recording(&record_pattern(nodes))?;
        self.model.forward(&input, &mut hooks)?;
        let mut out = BTreeMap::new();
        if let Some(sae) = self.sae {
            let hook = sae.hook().to_string();
            if let Some(x) = hooks.recorded.get(&hook) {
                // (rows, t, d_in) → (rows·t, n_latents), under the features' group name.
                let z = sae.encode(x).map_err(|e| ExplainError::Sae(Box::new(e)))?;
                let v: Vec<f32> = z
                    .flatten_all()
                    .and_then(|a| a.to_vec1())
                    .map_err(crate::model::ModelError::from)?;
                out.insert(sae_group(&hook), (sae.config.n_latents, v));
            }
        }
        for (name, act) in hooks.recorded {
            let w = *act.dims().last().unwrap_or(&1);
            let v: Vec<f32> = act
                .flatten_all()
                .and_then(|a| a.to_vec1())
                .map_err(crate::model::ModelError::from)?;
            out.insert(name, (w, v));
        }
        Ok(out)
    }
}

/// The value of `node` at flat row `row` of a recording.
fn pick(rec: &BTreeMap<String, (usize, Vec<f32>)>, node: &NodeId, row: usize) -> Result<f32> {
    let hook = node.group();
    let (w, v) = rec
        .get(&hook)
        .ok_or_else(|| ExplainError::NotRecorded { hook: hook.clone() })?;
    v.get(row * w + node.index)
        .copied()
        .ok_or_else(|| ExplainError::NotRecorded { hook })
}

impl Probe for ModelProbe<'_> {
    fn last_values(&self, queries: &[Query]) -> Result<Vec<f32>> {
        let mut out = vec![0f32; queries.len()];
        // Equal lengths share a forward: no padding, and causality makes padding unnecessary anyway.
        let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, q) in queries.iter().enumerate() {
            if q.tokens.is_empty() {
                return Err(ExplainError::EmptyQuery { node: q.node });
            }
            by_len.entry(q.tokens.len()).or_default().push(i);
        }
        for (t, idx) in by_len {
            let per = (self.batch_tokens / t).max(1);
            for chunk in idx.chunks(per) {
                let ids: Vec<u32> = chunk.iter().flat_map(|&i| queries[i].tokens.iter().copied()).collect();
                let nodes: BTreeSet<NodeId> = chunk.iter().map(|&i| queries[i].node).collect();
                let nodes: Vec<NodeId> = nodes.into_iter().collect();
                let rec = self.run(&ids, chunk.len(), t, &nodes)?;
                for (r, &i) in chunk.iter().enumerate() {
                    out[i] = pick(&rec, &queries[i].node, r * t + t - 1)?;
                }
            }
        }
        Ok(out)
    }

    fn stream_values(&self, tokens: &[u32], seq_len: usize, nodes: &[NodeId]) -> Result<Vec<Vec<f32>>> {
        let seq_len = seq_len.max(1);
        let mut out = vec![Vec::with_capacity(tokens.len()); nodes.len()];
        let per = (self.batch_tokens / seq_len).max(1) * seq_len;
        for chunk in tokens.chunks(per) {
            // Whole sequences first, then a shorter remainder as its own forward.
            let full = chunk.len() / seq_len * seq_len;
            for (part, t) in [(&chunk[..full], seq_len), (&chunk[full..], chunk.len() - full)] {
                if part.is_empty() {
                    continue;
                }
                let rec = self.run(part, part.len() / t, t, nodes)?;
                for (n, o) in nodes.iter().zip(out.iter_mut()) {
                    for row in 0..part.len() {
                        o.push(pick(&rec, n, row)?);
                    }
                }
            }
        }
        Ok(out)
    }
}
