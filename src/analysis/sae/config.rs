//! `sae.json`: where an SAE reads, its sizes, its architecture, the model it was trained on and how.

use serde::{Deserialize, Serialize};

use super::SaeConfigProblem;
use crate::model::HookName;

/// The version of `sae.json` this build writes; newer ones are refused with a message.
pub const SAE_FORMAT_VERSION: u32 = 1;

/// How the code is made sparse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Architecture {
    /// Keep each token's k largest pre-activations, then ReLU (Gao et al. 2024; SAELens's `topk`).
    TopK,
    /// ReLU of every pre-activation (SAELens's `standard`).
    Relu,
}

/// How a trained SAE was made (absent for imported ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingStats {
    /// The corpus spec the activations came from.
    pub corpus: String,
    /// Activations (tokens) seen.
    pub tokens: u64,
    /// Optimiser steps.
    pub steps: u64,
    /// Normalised MSE (fraction of variance unexplained) of the last steps' batches.
    pub final_nmse: f64,
    /// Fraction of latents that had not fired within the dead window at the end.
    pub dead_fraction: f64,
    /// Training throughput (activations per second, model forward included).
    pub tokens_per_s: f64,
}

/// An SAE's configuration, as `sae.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    /// [`SAE_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The hook it reads and writes (our spelling).
    pub hook: HookName,
    /// Width of the hook's activations.
    pub d_in: usize,
    /// Number of latents (features).
    pub n_latents: usize,
    /// TopK or ReLU.
    pub architecture: Architecture,
    /// Latents kept per token (TopK only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Whether b_pre is subtracted from the input before encoding (SAELens's `apply_b_dec_to_input`).
    pub apply_b_pre_to_input: bool,
    /// The fingerprint of the model it was trained on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_fingerprint: Option<String>,
    /// Where it came from when not trained here (e.g. `saelens 6.54.12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    /// How it was trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingStats>,
}

impl SaeConfig {
    /// Why this configuration is impossible, if it is.
    pub fn problem(&self) -> Option<SaeConfigProblem> {
        if self.format_version > SAE_FORMAT_VERSION {
            return Some(SaeConfigProblem::NewerVersion {
                found: self.format_version,
                supported: SAE_FORMAT_VERSION,
            });
        }
        if self.d_in == 0 || self.n_latents == 0 {
            return Some(SaeConfigProblem::ZeroSize {
                d_in: self.d_in,
                n_latents: self.n_latents,
            });
        }
        match (self.architecture, self.k) {
            (Architecture::TopK, None) => Some(SaeConfigProblem::TopKWithoutK),
            (Architecture::TopK, Some(k)) if k == 0 || k > self.n_latents => Some(SaeConfigProblem::KOutOfRange {
                k,
                n_latents: self.n_latents,
            }),
            (Architecture::Relu, Some(_)) => Some(SaeConfigProblem::KOnRelu),
            _ => None,
        }
    }
}
