//! One forward pass with hooks recorded, flattened into owned rows, so that lenses read node values (and the
//! attention patterns the model recorded) without touching tensors.

use std::collections::{BTreeMap, BTreeSet};

use candle_core::{DType, Tensor};

use crate::circuit::NodeId;
use crate::model::{Gpt, HookName, HookSite, Hooks, ModelError};

/// One recorded run: the prompt's ids, the logits at its last token, every recorded activation hook as (width,
/// values), the values (T, width) row-major, and the recorded attention patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The prompt's token ids.
    pub ids: Vec<u32>,
    /// (V) logits at the last token.
    pub last_logits: Vec<f32>,
    /// Hook name → (width, values (T, width) row-major).
    pub hooks: BTreeMap<String, (usize, Vec<f32>)>,
    /// The attention weights of every layer whose `L.attn.pattern` was recorded (see [`pattern_record`]):
    /// (n_head, T, T) row-major, query-major within a head.
    pub patterns: BTreeMap<usize, Vec<f32>>,
}

impl Recorded {
    /// The node's value at every token (zeros when its hook was not recorded).
    pub fn node_values(&self, n: &NodeId) -> Vec<f32> {
        match self.hooks.get(&n.group()) {
            Some((w, v)) => v.chunks(*w).map(|row| row[n.index]).collect(),
            None => vec![0.0; self.ids.len()],
        }
    }

    /// Logit of `a` minus logit of `b` at the last token.
    pub fn logit_diff(&self, (a, b): (u32, u32)) -> f32 {
        self.last_logits[a as usize] - self.last_logits[b as usize]
    }
}

/// Runs `ids` (T tokens, non-empty) through the model with `hooks` and flattens what they recorded.
pub fn record(model: &Gpt, ids: &[u32], hooks: &mut Hooks) -> Result<Recorded, ModelError> {
    let logits = model.forward_ids(ids, hooks)?; // (T, V)
    let last = ids.len().checked_sub(1).ok_or_else(|| {
        ModelError::Candle(candle_core::Error::Msg(
            "a forward pass needs at least one token".into(),
        ))
    })?;
    let last_logits: Vec<f32> = logits.get(last)?.to_vec1()?;
    let mut out = BTreeMap::new();
    let mut patterns = BTreeMap::new();
    for (name, t) in &hooks.recorded {
        // Patterns are (1, H, T, T), not (T, width) rows: kept apart so that per-token lenses never see them.
        match name.parse::<HookName>() {
            Ok(HookName::Block {
                layer,
                site: HookSite::AttnPattern,
            }) => {
                patterns.insert(layer, flatten(t)?.1);
            }
            _ => {
                out.insert(name.clone(), flatten(t)?);
            }
        }
    }
    Ok(Recorded {
        ids: ids.to_vec(),
        last_logits,
        hooks: out,
        patterns,
    })
}

/// The pattern for [`Hooks::set_record_patterns`] that records the attention patterns of exactly `layers`
/// (and nothing when there are none).
pub fn pattern_record(layers: impl IntoIterator<Item = usize>) -> String {
    let names: BTreeSet<String> = layers
        .into_iter()
        .map(|l| HookName::block(l, HookSite::AttnPattern).to_string())
        .collect();
    if names.is_empty() {
        // Matches no hook name.
        return "$^".to_string();
    }
    names
        .iter()
        .map(|h| format!("{}$", regex::escape(h)))
        .collect::<Vec<_>>()
        .join("|")
}

/// The hook pattern that records exactly the hooks of `nodes` (and nothing when there are none).
pub fn record_pattern(nodes: &[NodeId]) -> String {
    let hooks: BTreeSet<String> = nodes.iter().map(|n| n.hook_name()).collect();
    if hooks.is_empty() {
        // Matches no hook name.
        return "$^".to_string();
    }
    hooks
        .iter()
        .map(|h| format!("{}$", regex::escape(h)))
        .collect::<Vec<_>>()
        .join("|")
}

/// (1, T, W) or (T, W) → (W, values).
fn flatten(t: &Tensor) -> Result<(usize, Vec<f32>), candle_core::Error> {
    let w = *t.dims().last().unwrap_or(&1);
    Ok((w, t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?))
}
