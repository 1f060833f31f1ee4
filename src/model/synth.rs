//! Random weight-sparse models of the reference's shapes, written straight to CSR so that even the 2048-wide
//! yolo2 shape never materialises its dense matrices. For tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::checkpoint::Stored;
use super::config::Config;
use super::error::Result;
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
        msg: e.to_string(),
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

/// All tensors of a random model of `cfg` with weight density `density`, deterministic in `seed`.
pub fn synth_tensors(cfg: &Config, density: f64, seed: u64) -> Result<BTreeMap<String, Stored>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (v, d, din, a, f) = (
        cfg.vocab_size,
        cfg.d_model,
        cfg.d_model_in(),
        cfg.attn_width(),
        cfg.d_mlp,
    );
    let mut t = BTreeMap::new();
    let mut csr = |rng: &mut rand::rngs::StdRng, name: String, rows, cols| -> Result<()> {
        t.insert(name, Stored::Csr(Arc::new(random_csr(rng, rows, cols, density, 4)?)));
        Ok(())
    };
    csr(&mut rng, "transformer.wte.weight".into(), v, d)?;
    csr(&mut rng, "lm_head.weight".into(), v, d)?;
    for l in 0..cfg.n_layer {
        let p = format!("transformer.h.{l}");
        csr(&mut rng, format!("{p}.attn.c_attn.weight"), 3 * a, din)?;
        csr(&mut rng, format!("{p}.attn.c_proj.weight"), d, a)?;
        csr(&mut rng, format!("{p}.mlp.c_fc.weight"), f, din)?;
        csr(&mut rng, format!("{p}.mlp.c_proj.weight"), d, f)?;
    }
    let mut put = |name: String, tensor: Tensor| {
        t.insert(name, Stored::Dense(tensor));
    };
    let ones = |n: usize| Tensor::ones(n, candle_core::DType::F32, &Device::Cpu);
    put(
        "transformer.wpe.weight".into(),
        dense(&mut rng, &[cfg.block_size, cfg.d_pos_emb.unwrap_or(d)], 0.1, density)?,
    );
    for l in 0..cfg.n_layer {
        let p = format!("transformer.h.{l}");
        for (name, n) in [
            ("attn.c_attn", 3 * a),
            ("attn.c_proj", d),
            ("mlp.c_fc", f),
            ("mlp.c_proj", d),
        ] {
            if cfg.bias {
                put(
                    format!("{p}.{name}.bias"),
                    dense(&mut rng, &[n], 0.05, density.max(0.05))?,
                );
            }
        }
        put(format!("{p}.ln_1.weight"), ones(d)?);
        put(format!("{p}.ln_2.weight"), ones(d)?);
        if !cfg.rms_norm && cfg.ln_bias {
            put(
                format!("{p}.ln_1.bias"),
                Tensor::zeros(d, candle_core::DType::F32, &Device::Cpu)?,
            );
            put(
                format!("{p}.ln_2.bias"),
                Tensor::zeros(d, candle_core::DType::F32, &Device::Cpu)?,
            );
        }
        if cfg.sink {
            put(
                format!("{p}.attn.attn_imp.sink_logit"),
                dense(&mut rng, &[cfg.n_head], 1.0, 1.0)?,
            );
        }
        if let Some(dp) = cfg.d_pos_emb {
            put(format!("{p}.ln_p1.weight"), ones(dp)?);
            put(format!("{p}.ln_p2.weight"), ones(dp)?);
        }
    }
    put("transformer.ln_f.weight".into(), ones(d)?);
    if !cfg.rms_norm && cfg.ln_bias {
        put(
            "transformer.ln_f.bias".into(),
            Tensor::zeros(d, candle_core::DType::F32, &Device::Cpu)?,
        );
    }
    put("final_logits_bias".into(), dense(&mut rng, &[v], 0.1, 1.0)?);
    if cfg.enable_bigram_table {
        put("bigram_table".into(), dense(&mut rng, &[v, v], 0.1, 1.0)?);
    }
    Ok(t)
}
