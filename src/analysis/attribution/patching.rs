//! Attribution patching on a minimal pair, beside exact activation patching of the same nodes.
//!
//! For the metric `m` = logit(target) − logit(alt) at the last position (or logit(target) alone), a node's
//! attribution-patching score is `(a_clean − a_corrupt) · ∂m/∂a` with the gradient taken on the clean run (one
//! backward pass through the whole model, nothing frozen); its activation-patching effect is
//! `m(clean) − m(clean with a set to a_corrupt)` (one forward per node). The first is the linear prediction of
//! the second, and their Spearman rank correlation says how far the prediction can be trusted on this pair.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};

use super::{AttributeError, AttributeInput};
use crate::analysis::recording::{record, Recorded};
use crate::circuit::{NodeId, PositionedNode, Site};
use crate::model::{Action, Gpt, HookName, Hooks, Intervention};

type Result<T> = std::result::Result<T, AttributeError>;

/// One node's two scores.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PatchedNode {
    /// The node.
    pub node: PositionedNode,
    /// Its value on the clean prompt.
    pub clean: f32,
    /// Its value on the corrupted prompt.
    pub corrupt: f32,
    /// `(clean − corrupt) · ∂m/∂a` on the clean run.
    pub attribution: f32,
    /// `m(clean) − m(clean with this node patched to its corrupt value)`.
    pub patching: f32,
}

/// The comparison over a pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PatchReport {
    /// The metric on the clean prompt.
    pub metric_clean: f32,
    /// The metric on the corrupted prompt.
    pub metric_corrupt: f32,
    /// How many nodes differ between the two runs.
    pub differing: usize,
    /// The nodes compared (those whose values differ most, at most the cap), by |patching effect|, largest first.
    pub nodes: Vec<PatchedNode>,
    /// Spearman rank correlation of the signed scores.
    pub spearman: f64,
    /// Spearman rank correlation of their magnitudes.
    pub spearman_abs: f64,
}

/// The hooks of every node site of the model, as (hook name, node site, layer).
fn node_hooks(n_layer: usize) -> Vec<(String, Site, Option<usize>)> {
    let mut out = Vec::new();
    for l in 0..n_layer {
        for s in Site::ALL.into_iter().filter(|s| *s != Site::FinalResid) {
            out.push((s.hook(l).to_string(), s, Some(l)));
        }
    }
    out.push((HookName::FinalResid.to_string(), Site::FinalResid, None));
    out
}

fn pattern(hooks: &[(String, Site, Option<usize>)]) -> String {
    hooks
        .iter()
        .map(|(h, _, _)| format!("{}$", regex::escape(h)))
        .collect::<Vec<_>>()
        .join("|")
}

/// Records every node-site hook of the run of `ids`: the values [`compare_with`] patches in.
pub fn record_node_sites(model: &Gpt, ids: &[u32]) -> Result<Recorded> {
    let pat = pattern(&node_hooks(model.config.n_layer));
    Ok(record(model, ids, &mut Hooks::recording(&pat)?)?)
}

/// The metric on a row of last-position logits.
fn metric(logits: &[f32], (a, b): (u32, Option<u32>)) -> f32 {
    logits[a as usize] - b.map_or(0.0, |b| logits[b as usize])
}

/// Ranks with ties averaged (1-based).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut r = vec![0f64; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson's on the ranks, ties averaged); 0 when either side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// ∂m/∂(every recorded node-site hook) on the run of `ids`: hook name → (T·W) gradient.
fn gradients(
    model: &Gpt,
    ids: &[u32],
    hooks: &[(String, Site, Option<usize>)],
    target: (u32, Option<u32>),
) -> Result<std::collections::HashMap<String, Vec<f32>>> {
    let t = ids.len();
    let mut h = Hooks::none();
    h.differentiable = true;
    let mut vars = Vec::new();
    for (name, site, layer) in hooks {
        let width = match layer {
            Some(_) => site
                .width(&model.config)
                .expect("node_hooks lists the model's own sites"),
            None => model.config.d_model,
        };
        let var = Var::zeros((1, t, width), DType::F32, &Device::Cpu)?;
        let added = var.as_tensor().clone();
        let f: crate::model::hooks::HookFn = Arc::new(move |x: &Tensor| x.broadcast_add(&added));
        h.intervene(name, Intervention::new(Action::Custom(f)));
        vars.push((name.clone(), var));
    }
    let tokens = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
    let logits = model.forward(&tokens, &mut h)?; // (1, T, V)
    let last = logits.get(0)?.get(t - 1)?; // (V)
    let m = match target.1 {
        Some(b) => (last.get(target.0 as usize)? - last.get(b as usize)?)?,
        None => last.get(target.0 as usize)?,
    };
    let grads = m.backward()?;
    let mut out = std::collections::HashMap::new();
    for (name, var) in vars {
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; var.as_tensor().elem_count()],
        };
        out.insert(name, g);
    }
    Ok(out)
}

/// The nodes (hook, position, channel) whose values differ between two recordings, largest difference first.
fn differing(
    clean: &Recorded,
    corrupt: &Recorded,
    hooks: &[(String, Site, Option<usize>)],
) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for (hi, (name, _, _)) in hooks.iter().enumerate() {
        let (Some((w, a)), Some((_, b))) = (clean.hooks.get(name), corrupt.hooks.get(name)) else {
            continue;
        };
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if x != y {
                out.push((hi, i / w, i % w));
            }
        }
    }
    let diff = |&(hi, p, c): &(usize, usize, usize)| {
        let (w, a) = &clean.hooks[&hooks[hi].0];
        let b = &corrupt.hooks[&hooks[hi].0].1;
        (a[p * w + c] - b[p * w + c]).abs()
    };
    out.sort_by(|x, y| diff(y).total_cmp(&diff(x)).then(x.cmp(y)));
    out
}

/// Attribution patching beside activation patching for the pair (`clean`, `corrupt`), which must have the same
/// number of tokens, over the (at most `max_nodes`) node-site channels whose values differ most between them.
pub fn compare(
    model: &Gpt,
    clean: &[u32],
    corrupt: &[u32],
    target: (u32, Option<u32>),
    max_nodes: usize,
) -> Result<PatchReport> {
    if clean.is_empty() || clean.len() != corrupt.len() {
        return Err(AttributeInput::PromptLengths {
            clean: clean.len(),
            corrupt: corrupt.len(),
        }
        .into());
    }
    let rec_corrupt = record_node_sites(model, corrupt)?;
    compare_with(model, clean, &rec_corrupt, target, max_nodes)
}

/// [`compare`] against given corrupted values: `corrupt` holds every node-site hook of `clean`'s length (a
/// recorded run of the corrupted prompt, or any values to patch in).
pub fn compare_with(
    model: &Gpt,
    clean: &[u32],
    rec_corrupt: &Recorded,
    target: (u32, Option<u32>),
    max_nodes: usize,
) -> Result<PatchReport> {
    let v = model.config.vocab_size;
    for tok in std::iter::once(target.0).chain(target.1) {
        if tok as usize >= v {
            return Err(AttributeInput::TargetOutsideVocab { token: tok, vocab: v }.into());
        }
    }
    let hooks = node_hooks(model.config.n_layer);
    let rec_clean = record_node_sites(model, clean)?;
    for (name, _, _) in &hooks {
        let ok = match (rec_clean.hooks.get(name), rec_corrupt.hooks.get(name)) {
            (Some((w, a)), Some((w2, b))) => w == w2 && a.len() == b.len(),
            _ => false,
        };
        if !ok {
            return Err(AttributeInput::CorruptShape { hook: name.clone() }.into());
        }
    }
    let m_clean = metric(&rec_clean.last_logits, target);
    let m_corrupt = metric(&rec_corrupt.last_logits, target);
    let diff = differing(&rec_clean, rec_corrupt, &hooks);
    let chosen: Vec<(usize, usize, usize)> = diff.iter().copied().take(max_nodes).collect();
    let grads = gradients(model, clean, &hooks, target)?;
    let mut nodes = Vec::with_capacity(chosen.len());
    for (hi, p, c) in chosen {
        let (name, site, layer) = &hooks[hi];
        let (w, a) = &rec_clean.hooks[name];
        let (x, y) = (a[p * w + c], rec_corrupt.hooks[name].1[p * w + c]);
        let g = grads[name][p * w + c];
        let mut h = Hooks::none();
        h.intervene(
            name,
            Intervention::new(Action::Set(y))
                .channels(vec![c])
                .positions(vec![p as i64]),
        );
        let logits = model.forward_ids(clean, &mut h)?;
        let last: Vec<f32> = logits.get(clean.len() - 1)?.to_vec1()?;
        let node = match layer {
            Some(l) => NodeId::new(*l, *site, c),
            None => NodeId::final_resid(c),
        };
        nodes.push(PatchedNode {
            node: PositionedNode { node, pos: p },
            clean: x,
            corrupt: y,
            attribution: ((x - y) as f64 * g as f64) as f32,
            patching: m_clean - metric(&last, target),
        });
    }
    let att: Vec<f64> = nodes.iter().map(|n| n.attribution as f64).collect();
    let pat_: Vec<f64> = nodes.iter().map(|n| n.patching as f64).collect();
    let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let spearman_signed = spearman(&att, &pat_);
    let spearman_abs = spearman(&abs(&att), &abs(&pat_));
    nodes.sort_by(|a, b| b.patching.abs().total_cmp(&a.patching.abs()));
    Ok(PatchReport {
        metric_clean: m_clean,
        metric_corrupt: m_corrupt,
        differing: diff.len(),
        nodes,
        spearman: spearman_signed,
        spearman_abs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_and_reversed_and_ties() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((spearman(&x, &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&x, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
        assert_eq!(spearman(&x, &[1.0, 1.0, 1.0, 1.0]), 0.0);
    }
}
