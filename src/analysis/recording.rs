//! One forward pass with hooks recorded, flattened into owned rows, so that lenses read node values without
//! touching tensors.

use std::collections::{BTreeMap, BTreeSet};

use candle_core::{DType, Tensor};

use crate::circuit::NodeId;
use crate::model::{Gpt, Hooks, ModelError};

/// One recorded run: the prompt's ids, the logits at its last token and every recorded hook as (width, values),
/// the values (T, width) row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The prompt's token ids.
    pub ids: Vec<u32>,
    /// (V) logits at the last token.
    pub last_logits: Vec<f32>,
    /// Hook name → (width, values (T, width) row-major).
    pub hooks: BTreeMap<String, (usize, Vec<f32>)>,
}

impl Recorded {
    /// The node's value at every token (zeros when its hook was not recorded).
    pub fn node_values(&self, n: &NodeId) -> Vec<f32> {
        match self.hooks.get(&n.hook_name()) {
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
    for (name, t) in &hooks.recorded {
        out.insert(name.clone(), flatten(t)?);
    }
    Ok(Recorded {
        ids: ids.to_vec(),
        last_logits,
        hooks: out,
    })
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
