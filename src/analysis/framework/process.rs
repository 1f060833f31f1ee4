//! Weight processing as TransformerLens' `process_weights_` does it (in its order): fold each norm's gain (and a
//! LayerNorm's bias) into the weights that read it, centre the weights that write to the residual stream, centre
//! the unembedding, fold the value biases into the output bias. Each step is applied only where it leaves the
//! model's log-probabilities unchanged for this model's forward; the report says which steps ran and why the
//! others did not.

use serde::Serialize;

use super::mat::Mat;
use super::weights::{FrameworkWeights, NormKind, NormParams};

/// One processing step and whether it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessStep {
    /// The step (`fold_norms`, `fold_final_norm`, `centre_writing_weights`, `centre_unembed`,
    /// `fold_value_biases`).
    pub step: &'static str,
    /// Whether it was applied.
    pub applied: bool,
    /// Why it was not (or what part of it was left out).
    pub note: Option<String>,
}

/// Processes `w` in place, TransformerLens' default steps, each only where exact; returns what was done.
pub fn process(w: &mut FrameworkWeights) -> Vec<ProcessStep> {
    let nl = w.nonlinear;
    let mut steps = Vec::new();
    let is_layer_norm = matches!(w.norm, NormKind::Layer { .. });

    if nl.topk_on_reads {
        steps.push(skipped(
            "fold_norms",
            "AbsTopK runs on the blocks' normalised inputs, so a folded gain would change which entries it keeps",
        ));
    } else {
        fold_block_norms(w);
        steps.push(applied("fold_norms"));
    }
    fold_final_norm(w);
    steps.push(applied("fold_final_norm"));

    let centre_blocker = if !is_layer_norm {
        Some("only a LayerNorm removes the mean that centring takes out (TransformerLens skips it for RMSNorm)")
    } else if nl.topk_on_writes {
        Some("AbsTopK runs on the sublayers' outputs, so centred outputs would keep other entries")
    } else if nl.residual_activation {
        Some("a nonlinearity acts on the residual stream itself")
    } else {
        None
    };
    match centre_blocker {
        Some(why) => steps.push(skipped("centre_writing_weights", why)),
        None => {
            centre_writing_weights(w);
            steps.push(applied("centre_writing_weights"));
        }
    }

    centre_unembed(w);
    steps.push(ProcessStep {
        step: "centre_unembed",
        applied: true,
        note: w
            .bigram
            .is_some()
            .then(|| "the bigram table's rows are centred the same way".to_string()),
    });

    let has_sink = w.layers.iter().any(|l| l.sink_logit.is_some());
    if has_sink {
        steps.push(skipped(
            "fold_value_biases",
            "the sink slot takes attention weight without a value, so a value bias reaches the output scaled by \
             one minus the sink's share",
        ));
    } else if nl.topk_on_values {
        steps.push(skipped(
            "fold_value_biases",
            "AbsTopK runs on the values after their bias",
        ));
    } else {
        fold_value_biases(w);
        steps.push(applied("fold_value_biases"));
    }
    steps
}

fn applied(step: &'static str) -> ProcessStep {
    ProcessStep {
        step,
        applied: true,
        note: None,
    }
}

fn skipped(step: &'static str, why: &str) -> ProcessStep {
    ProcessStep {
        step,
        applied: false,
        note: Some(why.to_string()),
    }
}

/// Folds a norm into a matrix `m (d_model, n)` that reads it and its bias `(n)`: the bias gains `b_norm · m`,
/// the rows are scaled by the gain, and (LayerNorm) the columns are centred, since the normalised input has
/// zero mean.
fn fold_into(norm: &NormParams, m: &mut Mat, bias: &mut [f32], centre: bool) {
    if let Some(b) = &norm.b {
        for (acc, add) in bias.iter_mut().zip(m.left_mul(b)) {
            *acc += add;
        }
    }
    m.scale_rows(&norm.w);
    if centre {
        m.centre_cols();
    }
}

/// Folds ln1 into every head's W_Q, W_K, W_V (and biases) and ln2 into W_in; the norms become parameter-free.
pub fn fold_block_norms(w: &mut FrameworkWeights) {
    let centre = matches!(w.norm, NormKind::Layer { .. });
    for layer in &mut w.layers {
        if let Some(ln1) = layer.ln1.take() {
            for h in &mut layer.heads {
                fold_into(&ln1, &mut h.w_q, &mut h.b_q, centre);
                fold_into(&ln1, &mut h.w_k, &mut h.b_k, centre);
                fold_into(&ln1, &mut h.w_v, &mut h.b_v, centre);
            }
        }
        if let Some(ln2) = layer.ln2.take() {
            match &mut layer.mlp {
                Some(m) => fold_into(&ln2, &mut m.w_in, &mut m.b_in, centre),
                // An ln2 without an MLP reads nothing: keep it rather than lose it silently.
                None => layer.ln2 = Some(ln2),
            }
        }
    }
}

/// Folds the final norm into W_U and b_U.
pub fn fold_final_norm(w: &mut FrameworkWeights) {
    let centre = matches!(w.norm, NormKind::Layer { .. });
    if let Some(lnf) = w.ln_final.take() {
        fold_into(&lnf, &mut w.w_u, &mut w.b_u, centre);
    }
}

/// Removes the mean over d_model from everything that writes to the residual stream: W_E, W_pos, each head's
/// W_O, b_O, and the MLPs' W_out and b_out.
pub fn centre_writing_weights(w: &mut FrameworkWeights) {
    w.w_e.centre_rows();
    w.w_pos.centre_rows();
    for layer in &mut w.layers {
        for h in &mut layer.heads {
            h.w_o.centre_rows();
        }
        centre(&mut layer.b_o);
        if let Some(m) = &mut layer.mlp {
            m.w_out.centre_rows();
            centre(&mut m.b_out);
        }
    }
}

/// Removes the mean over the vocabulary from W_U, b_U and the bigram table's rows (softmax ignores it).
pub fn centre_unembed(w: &mut FrameworkWeights) {
    w.w_u.centre_rows();
    centre(&mut w.b_u);
    if let Some(b) = &mut w.bigram {
        b.centre_rows();
    }
}

/// Moves each head's value bias into the block's output bias (`b_O += Σ_h b_V[h] · W_O[h]`): with pattern rows
/// summing to one, every position's output carries exactly this constant.
pub fn fold_value_biases(w: &mut FrameworkWeights) {
    for layer in &mut w.layers {
        for h in &mut layer.heads {
            for (acc, add) in layer.b_o.iter_mut().zip(h.w_o.left_mul(&h.b_v)) {
                *acc += add;
            }
            h.b_v.iter_mut().for_each(|v| *v = 0.0);
        }
    }
}

fn centre(v: &mut [f32]) {
    let mean = (v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64) as f32;
    v.iter_mut().for_each(|x| *x -= mean);
}
