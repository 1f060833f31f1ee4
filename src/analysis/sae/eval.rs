//! How good an SAE is on a model: sparsity (L0, dead and dense latents, the density histogram), reconstruction
//! (fraction of variance unexplained, cosine) and what the model loses when x̂ replaces x at the hook (CE loss
//! recovered against zero and mean ablation, KL to the clean next-token distribution).
//!
//! The splice is an intervention at the SAE's hook ([`Action::Custom`]), so the model runs its own forward.

use std::sync::Arc;

use candle_core::{Device, Tensor, D};
use serde::Serialize;

use super::{Result, Sae, SaeMismatch};
use crate::model::{Action, Gpt, Hooks, Intervention};

/// A latent firing on more than this fraction of tokens counts as dense.
pub const DENSE_THRESHOLD: f64 = 0.1;

/// Lower edges of the density histogram's bins (log10 of the fraction of tokens a latent fires on): half
/// decades from 10⁻⁶ to 1; latents that never fired are counted apart.
pub const DENSITY_BINS: [f64; 12] = [-6.0, -5.5, -5.0, -4.5, -4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5];

/// One bin of the density histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DensityBin {
    /// log10 of the bin's lowest density.
    pub log10_lo: f64,
    /// log10 of the bin's highest density (exclusive, except the last bin's 0).
    pub log10_hi: f64,
    /// Latents whose density falls in the bin.
    pub latents: usize,
}

/// An SAE's measurements on a stream of tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SaeEval {
    /// Tokens (predictions) evaluated.
    pub tokens: usize,
    /// Mean latents firing per token.
    pub l0: f64,
    /// Fraction of variance unexplained: Σ‖x − x̂‖² / Σ‖x − x̄‖².
    pub fvu: f64,
    /// Mean cosine similarity of x and x̂.
    pub cosine: f64,
    /// Next-token cross-entropy (nats) of the clean model.
    pub ce_clean: f64,
    /// With x̂ in place of x.
    pub ce_sae: f64,
    /// With the hook set to zero.
    pub ce_zero_ablation: f64,
    /// With the hook set to its mean over these tokens.
    pub ce_mean_ablation: f64,
    /// (CE_zero − CE_sae) / (CE_zero − CE_clean).
    pub ce_recovered_zero: f64,
    /// (CE_mean − CE_sae) / (CE_mean − CE_clean).
    pub ce_recovered_mean: f64,
    /// Mean KL(clean ‖ spliced) of the next-token distributions (nats).
    pub kl: f64,
    /// Fraction of latents that never fired.
    pub dead_fraction: f64,
    /// Fraction of latents firing on more than [`DENSE_THRESHOLD`] of the tokens.
    pub dense_fraction: f64,
    /// The latents' firing densities, by half decade (dead ones excluded).
    pub density_histogram: Vec<DensityBin>,
}

/// Per-token cross-entropies of logits (B, T, V) against targets (B·T), and the log-probabilities (B·T, V).
fn token_losses(logits: &Tensor, targets: &[u32]) -> Result<(Vec<f32>, Tensor)> {
    let v = logits.dim(D::Minus1)?;
    let logp = candle_nn::ops::log_softmax(&logits.reshape(((), v))?, 1)?;
    let idx = Tensor::from_slice(targets, (targets.len(), 1), &Device::Cpu)?;
    let picked: Vec<f32> = logp.gather(&idx, 1)?.squeeze(1)?.to_vec1()?;
    Ok((picked.into_iter().map(|x| -x).collect(), logp))
}

/// Evaluates `sae` on `model` over `tokens` cut into windows of `seq_len` + 1 (inputs and shifted targets),
/// `batch` windows per forward. The hook's mean for mean ablation is taken over the same tokens.
pub fn evaluate(sae: &Sae, model: &Gpt, tokens: &[u32], seq_len: usize, batch: usize) -> Result<SaeEval> {
    let seq_len = seq_len.min(model.config.block_size).max(1);
    let windows: Vec<&[u32]> = tokens.chunks_exact(seq_len + 1).collect();
    if windows.is_empty() {
        return Err(SaeMismatch::TooFewTokens {
            tokens: tokens.len(),
            window: seq_len + 1,
        }
        .into());
    }
    let hook = sae.hook().to_string();
    let record = regex::escape(&hook) + "$";
    let (d, n) = (sae.config.d_in, sae.config.n_latents);
    let spliced = {
        let s = sae.clone();
        Intervention::new(Action::Custom(Arc::new(move |x: &Tensor| {
            s.reconstruct(x).map_err(|e| candle_core::Error::Msg(e.to_string()))
        })))
    };

    let mut count = 0usize;
    let (mut ce_clean, mut ce_sae, mut kl) = (0f64, 0f64, 0f64);
    let (mut l0, mut err2, mut cos) = (0f64, 0f64, 0f64);
    let mut sum_x = vec![0f64; d];
    let mut sum_x2 = 0f64;
    let mut fired = vec![0u64; n];
    let mut batches = Vec::new();
    for group in windows.chunks(batch.max(1)) {
        let inputs: Vec<u32> = group.iter().flat_map(|w| w[..seq_len].iter().copied()).collect();
        let targets: Vec<u32> = group.iter().flat_map(|w| w[1..].iter().copied()).collect();
        let inputs = Tensor::from_vec(inputs, (group.len(), seq_len), &Device::Cpu)?;
        let mut clean_hooks = Hooks::recording(&record)?;
        let clean = model.forward(&inputs, &mut clean_hooks)?; // (B, T, V)
        let x = clean_hooks
            .recorded
            .remove(&hook)
            .ok_or_else(|| SaeMismatch::NotRecorded { hook: hook.to_string() })?
            .reshape(((), d))?; // (N, d)
        let mut sae_hooks = Hooks::none();
        sae_hooks.intervene(&hook, spliced.clone());
        let with_sae = model.forward(&inputs, &mut sae_hooks)?;
        let (clean_ce, clean_logp) = token_losses(&clean, &targets)?;
        let (sae_ce, sae_logp) = token_losses(&with_sae, &targets)?;
        ce_clean += clean_ce.iter().map(|&v| v as f64).sum::<f64>();
        ce_sae += sae_ce.iter().map(|&v| v as f64).sum::<f64>();
        let p = clean_logp.exp()?;
        kl += (p * (clean_logp - sae_logp)?)?.sum_all()?.to_scalar::<f32>()? as f64;

        let z = sae.encode(&x)?; // (N, n)
        let x_hat = sae.decode(&z)?; // (N, d)
        let active = z.gt(0f32)?.to_dtype(candle_core::DType::F32)?;
        l0 += active.sum_all()?.to_scalar::<f32>()? as f64;
        for (f, c) in fired.iter_mut().zip(active.sum(0)?.to_vec1::<f32>()?) {
            *f += c as u64;
        }
        err2 += (&x - &x_hat)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        let dot = (&x * &x_hat)?.sum(1)?;
        let norms = (x.sqr()?.sum(1)?.sqrt()? * x_hat.sqr()?.sum(1)?.sqrt()?)?;
        cos += dot.div(&(norms + 1e-12)?)?.sum_all()?.to_scalar::<f32>()? as f64;
        for (s, c) in sum_x.iter_mut().zip(x.sum(0)?.to_vec1::<f32>()?) {
            *s += c as f64;
        }
        sum_x2 += x.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        count += targets.len();
        batches.push((inputs, targets));
    }

    let mean: Vec<f32> = sum_x.iter().map(|s| (s / count as f64) as f32).collect();
    let (mut ce_zero, mut ce_mean) = (0f64, 0f64);
    for (inputs, targets) in &batches {
        for (action, total) in [
            (Action::Set(0.0), &mut ce_zero),
            (Action::MeanAblate(mean.clone()), &mut ce_mean),
        ] {
            let mut hooks = Hooks::none();
            hooks.intervene(&hook, Intervention::new(action));
            let logits = model.forward(inputs, &mut hooks)?;
            *total += token_losses(&logits, targets)?.0.iter().map(|&v| v as f64).sum::<f64>();
        }
    }

    let c = count as f64;
    let variance = sum_x2 - sum_x.iter().map(|s| s * s).sum::<f64>() / c;
    let (ce_clean, ce_sae, ce_zero, ce_mean) = (ce_clean / c, ce_sae / c, ce_zero / c, ce_mean / c);
    let density: Vec<f64> = fired.iter().map(|&f| f as f64 / c).collect();
    let mut hist: Vec<DensityBin> = DENSITY_BINS
        .iter()
        .map(|&lo| DensityBin {
            log10_lo: lo,
            log10_hi: lo + 0.5,
            latents: 0,
        })
        .collect();
    for &p in density.iter().filter(|&&p| p > 0.0) {
        let bin = DENSITY_BINS.iter().rposition(|&lo| p.log10() >= lo).unwrap_or(0);
        hist[bin].latents += 1;
    }
    Ok(SaeEval {
        tokens: count,
        l0: l0 / c,
        fvu: err2 / variance.max(1e-30),
        cosine: cos / c,
        ce_clean,
        ce_sae,
        ce_zero_ablation: ce_zero,
        ce_mean_ablation: ce_mean,
        ce_recovered_zero: (ce_zero - ce_sae) / (ce_zero - ce_clean),
        ce_recovered_mean: (ce_mean - ce_sae) / (ce_mean - ce_clean),
        kl: kl / c,
        dead_fraction: density.iter().filter(|&&p| p == 0.0).count() as f64 / n as f64,
        dense_fraction: density.iter().filter(|&&p| p > DENSE_THRESHOLD).count() as f64 / n as f64,
        density_histogram: hist,
    })
}
