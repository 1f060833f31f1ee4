//! The task loss of the reference (`last_token_contrast_loss_fn`, reference-model.md D.2): two-sided and summed
//! over both sides, so every value is 2x a per-sequence loss (halve it for display, as the reference viz does).
//!
//! * With an alt token: `softplus(l_pos[alt] - l_pos[tok]) + softplus(l_neg[tok] - l_neg[alt])`, i.e. binary
//!   cross-entropy over the two candidates on each side.
//! * Without: `-log p_pos(tok) - log(1 - p_neg(tok))` over the full vocabulary, the second term computed as the
//!   log-sum-exp of the log-probs of all tokens but `tok`.

use candle_core::{DType, Device, Tensor, D};

/// `log(1 + exp(x))`, stable for large |x|.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `log sum exp` over `xs`, skipping index `skip` when given. `-inf` when nothing is left.
fn log_sum_exp(xs: &[f32], skip: Option<usize>) -> f64 {
    let it = || {
        xs.iter()
            .enumerate()
            .filter(move |(i, _)| Some(*i) != skip)
            .map(|(_, &x)| x as f64)
    };
    let m = it().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + it().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The per-pair loss on the last-position logits of the class-1 run (`logits_pos`, answer `tok`) and of the
/// counterfactual run (`logits_neg`, answer `alt` when given), both of length V.
///
/// Panics when the slices differ in length or an id is out of range.
pub fn contrast_loss(logits_pos: &[f32], logits_neg: &[f32], tok: u32, alt: Option<u32>) -> f32 {
    assert_eq!(
        logits_pos.len(),
        logits_neg.len(),
        "contrast_loss: logits of different lengths"
    );
    let t = tok as usize;
    match alt {
        Some(a) => {
            let a = a as usize;
            (softplus(logits_pos[a] as f64 - logits_pos[t] as f64)
                + softplus(logits_neg[t] as f64 - logits_neg[a] as f64)) as f32
        }
        None => {
            let pos = log_sum_exp(logits_pos, None) - logits_pos[t] as f64;
            let neg = log_sum_exp(logits_neg, None) - log_sum_exp(logits_neg, Some(t));
            (pos + neg) as f32
        }
    }
}

/// The loss of a one-sided item (a prompt without a counterfactual, e.g. a jsonl record without `prompt_alt`):
/// `-log softmax([l[tok], l[alt]])[0]` with an alt, `-log p(tok)` without. Not doubled.
pub fn one_sided_loss(logits: &[f32], tok: u32, alt: Option<u32>) -> f32 {
    let t = tok as usize;
    match alt {
        Some(a) => softplus(logits[a as usize] as f64 - logits[t] as f64) as f32,
        None => (log_sum_exp(logits, None) - logits[t] as f64) as f32,
    }
}

/// Whether a pair is solved. With an alt: the class-1 run gives `tok` a higher logit than `alt` and the
/// counterfactual run gives `alt` a higher logit than `tok`. Without: `p_pos(tok) > 0.5` and `p_neg(tok) < 0.5`
/// (full-vocabulary softmax).
pub fn pair_correct(logits_pos: &[f32], logits_neg: &[f32], tok: u32, alt: Option<u32>) -> bool {
    let t = tok as usize;
    match alt {
        Some(a) => {
            let a = a as usize;
            logits_pos[t] > logits_pos[a] && logits_neg[a] > logits_neg[t]
        }
        None => {
            let p_pos = (logits_pos[t] as f64 - log_sum_exp(logits_pos, None)).exp();
            let p_neg = (logits_neg[t] as f64 - log_sum_exp(logits_neg, None)).exp();
            p_pos > 0.5 && p_neg < 0.5
        }
    }
}

/// Whether a one-sided item is solved: `tok` beats `alt`, or without an alt `p(tok) > 0.5`.
pub fn one_sided_correct(logits: &[f32], tok: u32, alt: Option<u32>) -> bool {
    let t = tok as usize;
    match alt {
        Some(a) => logits[t] > logits[a as usize],
        None => (logits[t] as f64 - log_sum_exp(logits, None)).exp() > 0.5,
    }
}

/// `log(1 + exp(x))` on tensors, stable: `relu(x) + log(1 + exp(-|x|))`.
fn softplus_t(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// [`contrast_loss`] on a batch, differentiable: `last_logits_pos` and `last_logits_neg` are (N, V) last-position
/// logits, `tok` and `alt` have N entries (rows may mix pairs with and without an alt). Returns the mean over
/// the batch of the per-pair loss, a scalar F32 tensor.
pub fn contrast_loss_tensor(
    last_logits_pos: &Tensor,
    last_logits_neg: &Tensor,
    tok: &[u32],
    alt: &[Option<u32>],
) -> candle_core::Result<Tensor> {
    let (n, v) = last_logits_pos.dims2()?;
    if last_logits_neg.dims2()? != (n, v) || tok.len() != n || alt.len() != n {
        candle_core::bail!(
            "contrast_loss_tensor: shapes {:?} / {:?} with {} tok and {} alt",
            last_logits_pos.shape(),
            last_logits_neg.shape(),
            tok.len(),
            alt.len()
        );
    }
    if n == 0 {
        candle_core::bail!("contrast_loss_tensor: empty batch");
    }
    if let Some(&bad) = tok.iter().chain(alt.iter().flatten()).find(|&&t| t as usize >= v) {
        candle_core::bail!("contrast_loss_tensor: token id {bad} out of range for vocab {v}");
    }
    let dev: &Device = last_logits_pos.device();
    let pos = last_logits_pos.to_dtype(DType::F32)?;
    let neg = last_logits_neg.to_dtype(DType::F32)?;
    let tok_idx = Tensor::from_vec(tok.to_vec(), (n, 1), dev)?;
    let alt_ids: Vec<u32> = alt.iter().zip(tok).map(|(a, &t)| a.unwrap_or(t)).collect();
    let alt_idx = Tensor::from_vec(alt_ids, (n, 1), dev)?;
    let pos_t = pos.gather(&tok_idx, 1)?.squeeze(1)?;
    let pos_a = pos.gather(&alt_idx, 1)?.squeeze(1)?;
    let neg_t = neg.gather(&tok_idx, 1)?.squeeze(1)?;
    let neg_a = neg.gather(&alt_idx, 1)?.squeeze(1)?;
    // Binary branch (rows with an alt).
    let binary = (softplus_t(&(&pos_a - &pos_t)?)? + softplus_t(&(&neg_t - &neg_a)?)?)?;
    // Full-vocabulary branch (rows without): -log p_pos(tok) - log(1 - p_neg(tok)).
    let lse_pos = pos.log_sum_exp(D::Minus1)?;
    let lse_neg = neg.log_sum_exp(D::Minus1)?;
    let mut mask = vec![0f32; n * v];
    for (i, &t) in tok.iter().enumerate() {
        mask[i * v + t as usize] = -1e30;
    }
    let mask = Tensor::from_vec(mask, (n, v), dev)?;
    let lse_neg_rest = (&neg + &mask)?.log_sum_exp(D::Minus1)?;
    let full = ((lse_pos - &pos_t)? + (lse_neg - lse_neg_rest)?)?;
    let w: Vec<f32> = alt.iter().map(|a| if a.is_some() { 1.0 } else { 0.0 }).collect();
    let w = Tensor::from_vec(w, n, dev)?;
    let one_minus_w = w.affine(-1.0, 1.0)?;
    let per_pair = ((binary * &w)? + (full * one_minus_w)?)?;
    per_pair.mean(0)
}
