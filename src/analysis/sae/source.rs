//! Where an SAE's training activations come from: streamed from a model over a corpus, one batch at a time, or
//! generated (sparse combinations of known directions, for tests). Batch `step` depends only on the seed and the
//! step, so that a resumed run sees the data an uninterrupted one would.

use candle_core::{Device, Tensor};
use circuitscope_kernels::rng::{splitmix64, SplitMix64};

use super::Result;
use crate::data::TokenPool;
use crate::model::{Gpt, HookName, Hooks};

/// A deterministic stream of activation batches.
pub trait ActivationSource {
    /// Width of each activation.
    fn d_in(&self) -> usize;
    /// The activations of training step `step`: (N, d_in), N the same every step.
    fn batch(&mut self, step: u64) -> Result<Tensor>;
}

/// A hook's activations, recorded from the model on windows of a tokenized corpus. Only the current batch is in
/// memory: each step runs the model on `seqs` windows drawn at random from the pool (by seed and step).
pub struct ModelActivations<'a> {
    model: &'a Gpt,
    hook: HookName,
    pool: TokenPool,
    seqs: usize,
    seq_len: usize,
    seed: u64,
}

impl<'a> ModelActivations<'a> {
    /// Windows of `seq_len` tokens (at most the model's context), `seqs` per batch, from `pool`.
    pub fn new(model: &'a Gpt, hook: HookName, pool: TokenPool, seqs: usize, seq_len: usize, seed: u64) -> Self {
        let seq_len = seq_len.min(model.config.block_size).max(1);
        ModelActivations {
            model,
            hook,
            pool,
            seqs: seqs.max(1),
            seq_len,
            seed,
        }
    }

    /// Activations per batch.
    pub fn batch_tokens(&self) -> usize {
        self.seqs * self.seq_len
    }
}

impl ActivationSource for ModelActivations<'_> {
    fn d_in(&self) -> usize {
        self.hook.width(&self.model.config).unwrap_or(0)
    }

    fn batch(&mut self, step: u64) -> Result<Tensor> {
        let (inputs, _) = self.pool.batch(self.seqs, self.seq_len, self.seed, step)?; // (B, T)
        let name = self.hook.to_string();
        let mut hooks = Hooks::recording(&(regex::escape(&name) + "$"))?;
        self.model.forward(&inputs, &mut hooks)?;
        let act = hooks
            .recorded
            .remove(&name)
            .ok_or_else(|| super::SaeMismatch::NotRecorded { hook: name.clone() })?; // (B, T, d)
        Ok(act.reshape(((), self.d_in()))?)
    }
}

/// Sparse combinations of random unit directions plus Gaussian noise: each sample is Σ cᵢ·dᵢ over `per_sample`
/// distinct directions with coefficients uniform in [0.5, 1.5], plus N(0, noise²) per coordinate. The
/// directions are the ground truth an SAE should recover.
pub struct SparseCombinations {
    /// (n_directions) unit vectors of d_in.
    pub directions: Vec<Vec<f32>>,
    per_sample: usize,
    noise: f32,
    batch: usize,
    seed: u64,
}

/// Standard normal draws by Box-Muller from the workspace's generator.
pub(crate) fn normal(rng: &mut SplitMix64) -> f32 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// A random unit vector of `d`.
pub(crate) fn unit_vector(rng: &mut SplitMix64, d: usize) -> Vec<f32> {
    loop {
        let v: Vec<f32> = (0..d).map(|_| normal(rng)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 1e-6 {
            return v.into_iter().map(|x| x / norm).collect();
        }
    }
}

impl SparseCombinations {
    /// `n_directions` random unit directions of `d_in`, `per_sample` of them in each of `batch` samples a step.
    pub fn new(d_in: usize, n_directions: usize, per_sample: usize, noise: f32, batch: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let directions = (0..n_directions).map(|_| unit_vector(&mut rng, d_in)).collect();
        SparseCombinations {
            directions,
            per_sample: per_sample.min(n_directions),
            noise,
            batch,
            seed,
        }
    }
}

impl ActivationSource for SparseCombinations {
    fn d_in(&self) -> usize {
        self.directions.first().map_or(0, Vec::len)
    }

    fn batch(&mut self, step: u64) -> Result<Tensor> {
        let d = self.d_in();
        let n = self.directions.len();
        let mut rng = SplitMix64::new(splitmix64(self.seed ^ splitmix64(step)));
        let mut out = vec![0f32; self.batch * d];
        let mut chosen = Vec::with_capacity(self.per_sample);
        for row in out.chunks_exact_mut(d) {
            chosen.clear();
            while chosen.len() < self.per_sample {
                let i = rng.below(n);
                if !chosen.contains(&i) {
                    chosen.push(i);
                }
            }
            for &i in &chosen {
                let c = rng.uniform_f32(0.5, 1.5);
                for (o, v) in row.iter_mut().zip(&self.directions[i]) {
                    *o += c * v;
                }
            }
            for o in row.iter_mut() {
                *o += self.noise * normal(&mut rng);
            }
        }
        Ok(Tensor::from_vec(out, (self.batch, d), &Device::Cpu)?)
    }
}
