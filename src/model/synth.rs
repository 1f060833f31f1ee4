//! Random weight-sparse models of the reference's shapes, written straight to CSR so that even the 2048-wide
//! yolo2 shape never materialises its dense matrices. For tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::checkpoint::Stored;
use super::config::Config;
use super::error::Result;
use super::layout::{tensor_specs, TensorRole};
use super::sparse_linear::CsrWeight;

/// The named shapes `synth --shape` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SynthShape {
    /// d_model 64, 2 layers, 4 heads x 16, d_mlp 256, vocab 2048, context 256.
    Tiny,
    /// The paper's 1x sweep model: d_model 256, 8 layers, 16 heads x 16, d_mlp 1024.
    Sweep1x,
    /// csp_yolo2: d_model 2048, 8 layers, 128 heads x 16, d_mlp 8192.
    Yolo2,
}

impl SynthShape {
    /// The config of this shape: RMSNorm, sinks, AbsTopK 1/4 at every node location, bigram table, untied.
    pub fn config(self) -> Config {
        let (d_model, n_layer, n_head, d_mlp) = match self {
            SynthShape::Tiny => (64, 2, 4, 256),
            SynthShape::Sweep1x => (256, 8, 16, 1024),
            SynthShape::Yolo2 => (2048, 8, 128, 8192),
        };
        let json = serde_json::json!({
            "block_size": 256, "vocab_size": 2048, "n_layer": n_layer, "n_head": n_head, "d_head": 16,
            "d_model": d_model, "d_mlp": d_mlp, "rms_norm": true, "tied_unembed": false, "sink": true,
            "enable_bigram_table": true, "afrac": 0.25,
            "afrac_loctypes": "attn_in,attn_q,attn_k,attn_v,attn_out,mlp_in,mlp_neuron,mlp_out",
        });
        Config::from_json_str(&json.to_string())
            .expect("built-in shape is valid")
            .config
    }
}

/// A (rows, cols) CSR matrix with about `density` of its entries nonzero (at least `min_per_row` per row), values
/// N(0, 1/nnz_per_row) so that activations keep unit scale through the layers.
fn random_csr(rng: &mut impl Rng, rows: usize, cols: usize, density: f64, min_per_row: usize) -> Result<CsrWeight> {
    let per_row = ((density * cols as f64).round() as usize).clamp(min_per_row.min(cols), cols);
    let normal = Normal::new(0.0f32, 1.0 / (per_row.max(1) as f32).sqrt()).expect("valid std");
    let mut values = Vec::with_capacity(rows * per_row);
    let mut col_idx = Vec::with_capacity(rows * per_row);
    let mut row_ptr = Vec::with_capacity(rows + 1);
    row_ptr.push(0u64);
    for _ in 0..rows {
        let mut cols_here: Vec<u32> = rand::seq::index::sample(rng, cols, per_row)
            .into_iter()
            .map(|c| c as u32)
            .collect();
        cols_here.sort_unstable();
        for c in cols_here {
            col_idx.push(c);
            values.push(normal.sample(rng));
        }
        row_ptr.push(col_idx.len() as u64);
    }
    CsrWeight::from_parts(values, col_idx, row_ptr, rows, cols).map_err(|e| super::error::ModelError::Format {
        path: "<synth>".into(),
        problem: super::error::FormatProblem::Csr(e),
    })
}

fn dense(rng: &mut impl Rng, shape: &[usize], std: f32, density: f64) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let normal = Normal::new(0.0f32, std).expect("valid std");
    let v: Vec<f32> = (0..n)
        .map(|_| {
            if rng.random_bool(density.clamp(0.0, 1.0)) {
                normal.sample(rng)
            } else {
                0.0
            }
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// All tensors of a random model of `cfg` with weight density `density`, deterministic in `seed`: matrices and
/// embeddings as CSR with N(0, 1/nnz-per-row) values, sparse small biases, unit norms, random sink logits, logits
/// bias and bigram table.
pub fn synth_tensors(cfg: &Config, density: f64, seed: u64) -> Result<BTreeMap<String, Stored>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    for spec in tensor_specs(cfg) {
        let shape = &spec.shape;
        let stored = match spec.role {
            TensorRole::Matrix { .. } | TensorRole::Embedding if spec.name != super::weight_names::WPE => {
                Stored::Csr(Arc::new(random_csr(&mut rng, shape[0], shape[1], density, 4)?))
            }
            // wpe: dense with exact zeros, as the reference stores position tables.
            TensorRole::Embedding | TensorRole::Matrix { .. } => Stored::Dense(dense(&mut rng, shape, 0.1, density)?),
            TensorRole::Bias => Stored::Dense(dense(&mut rng, shape, 0.05, density.max(0.05))?),
            TensorRole::NormWeight => Stored::Dense(Tensor::ones(shape.as_slice(), DType::F32, &Device::Cpu)?),
            TensorRole::NormBias => Stored::Dense(Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?),
            TensorRole::SinkLogit => Stored::Dense(dense(&mut rng, shape, 1.0, 1.0)?),
            TensorRole::BigramTable | TensorRole::FinalLogitsBias => Stored::Dense(dense(&mut rng, shape, 0.1, 1.0)?),
        };
        out.insert(spec.name, stored);
    }
    Ok(out)
}
