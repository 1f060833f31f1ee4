//! The weight-only views of the framework paper (Elhage et al. 2021), as TransformerLens computes them: each
//! head's QK and OV circuits (alone, through the embeddings, through the positional embedding), the OV copying
//! score, Q/K/V composition between heads of different layers with a random baseline, and the direct path.

use candle_core::Tensor;
use serde::Serialize;

use super::eigen::eigenvalues;
use super::factored::Factored;
use super::mat::{trace_of_product, Mat};
use super::weights::{FrameworkWeights, HeadWeights};
use super::{FrameworkError, NumericsProblem, ShapeProblem};
use circuitscope_kernels::rng::SplitMix64;

/// Which side of the later head the earlier head's output feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompositionKind {
    /// Into its queries: right = W_Q·W_Kᵀ.
    Q,
    /// Into its keys: right = W_K·W_Qᵀ.
    K,
    /// Into its values: right = W_V·W_O.
    V,
}

/// Composition scores of every (earlier head, later head) pair, `[L, H, L, H]` row-major, zero where the
/// second head is not in a strictly later layer, and the random baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Composition {
    /// Q-composition, `[L, H, L, H]`.
    pub q: Vec<f32>,
    /// K-composition, `[L, H, L, H]`.
    pub k: Vec<f32>,
    /// V-composition, `[L, H, L, H]`.
    pub v: Vec<f32>,
    /// The same score for random matrices of the heads' shapes.
    pub baseline: Baseline,
}

/// The composition score of random factor matrices of the model's shapes (every entry uniform in [-1, 1); the
/// score does not depend on scale): what "no composition" looks like at this d_model and d_head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Baseline {
    /// Mean over the samples.
    pub mean: f32,
    /// Standard deviation over the samples.
    pub std: f32,
    /// Number of samples.
    pub samples: usize,
    /// Seed of the project RNG (SplitMix64) the samples came from.
    pub seed: u64,
}

/// One head's Gram matrices (d_head x d_head, f64): enough to take Frobenius norms of products through it.
struct Grams {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    /// W_O·W_Oᵀ.
    o: Vec<f64>,
}

fn grams(h: &HeadWeights) -> Grams {
    Grams {
        q: h.w_q.gram(),
        k: h.w_k.gram(),
        v: h.w_v.gram(),
        o: h.w_o.t().gram(),
    }
}

/// ‖A·M·B‖_F for A (d, r) with Gram `ga = AᵀA`, M (r, s), B (s, d) with `gb = B·Bᵀ`: sqrt(tr(ga·M·gb·Mᵀ)).
fn chain_norm(ga: &[f64], m: &[f64], gb: &[f64], r: usize, s: usize) -> f64 {
    // tr(ga·M·gb·Mᵀ) = Σ (ga·M) ⊙ (M·gb), both symmetric Grams.
    let gam = product_f64(ga, m, r, r, s);
    let mgb = product_f64(m, gb, r, s, s);
    let total: f64 = gam.iter().zip(&mgb).map(|(a, b)| a * b).sum();
    total.max(0.0).sqrt()
}

/// `a (n, k) · b (k, m)` row-major in f64, looping so that the inner loop runs along rows of `b` (it is called
/// for every pair of heads: tens of thousands of times on a GPT-2-sized model).
fn product_f64(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * m];
    for (out_row, a_row) in out.chunks_mut(m.max(1)).zip(a.chunks(k.max(1))) {
        for (&x, b_row) in a_row.iter().zip(b.chunks(m.max(1))) {
            if x != 0.0 {
                out_row.iter_mut().zip(b_row).for_each(|(o, y)| *o += x * y);
            }
        }
    }
    out
}

/// ‖left_a·left_b · right_a·right_b‖_F / (‖left_a·left_b‖_F · ‖right_a·right_b‖_F), from Grams and the inner
/// product `m = left_b · right_a`.
fn score(g_la: &[f64], m: &[f64], g_rb: &[f64], norm_left: f64, norm_right: f64, r: usize) -> f32 {
    let denom = norm_left * norm_right;
    if denom == 0.0 {
        return 0.0;
    }
    (chain_norm(g_la, m, g_rb, r, r) / denom) as f32
}

/// The inner product `W_O(a) · R1(b)` where R1 is the later head's matrix that reads the residual.
fn inner(a: &HeadWeights, b: &HeadWeights, kind: CompositionKind) -> Result<Vec<f64>, FrameworkError> {
    let r1 = match kind {
        CompositionKind::Q => &b.w_q,
        CompositionKind::K => &b.w_k,
        CompositionKind::V => &b.w_v,
    };
    Ok(a.w_o.matmul(r1)?.data.iter().map(|&x| x as f64).collect())
}

/// Q, K and V composition scores between every head and every head of a later layer, and a baseline of
/// `samples` random draws seeded with `seed`.
pub fn composition(w: &FrameworkWeights, samples: usize, seed: u64) -> Result<Composition, FrameworkError> {
    let (l, h, r) = (w.n_layers(), w.n_heads(), w.d_head());
    let g: Vec<Vec<Grams>> = w.layers.iter().map(|ly| ly.heads.iter().map(grams).collect()).collect();
    let ov_norm = |gr: &Grams| trace_of_product(&gr.v, &gr.o, r).max(0.0).sqrt();
    let qk_norm = |gr: &Grams| trace_of_product(&gr.q, &gr.k, r).max(0.0).sqrt();
    let n = l * h * l * h;
    let (mut q, mut k, mut v) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    for la in 0..l {
        for ha in 0..h {
            let (ga, a) = (&g[la][ha], &w.layers[la].heads[ha]);
            let left = ov_norm(ga);
            for (lb, (g_lb, layer_b)) in g.iter().zip(&w.layers).enumerate().skip(la + 1) {
                for (hb, (gb, b)) in g_lb.iter().zip(&layer_b.heads).enumerate() {
                    let idx = ((la * h + ha) * l + lb) * h + hb;
                    // Q: OV_a · W_Q(b)·W_K(b)ᵀ; K: OV_a · W_K(b)·W_Q(b)ᵀ; V: OV_a · W_V(b)·W_O(b).
                    q[idx] = score(&ga.v, &inner(a, b, CompositionKind::Q)?, &gb.k, left, qk_norm(gb), r);
                    k[idx] = score(&ga.v, &inner(a, b, CompositionKind::K)?, &gb.q, left, qk_norm(gb), r);
                    v[idx] = score(&ga.v, &inner(a, b, CompositionKind::V)?, &gb.o, left, ov_norm(gb), r);
                }
            }
        }
    }
    Ok(Composition {
        q,
        k,
        v,
        baseline: baseline(w.d_model(), r, samples, seed)?,
    })
}

/// The composition score of random (d_model, d_head)·(d_head, d_model) factor pairs.
pub fn baseline(d_model: usize, d_head: usize, samples: usize, seed: u64) -> Result<Baseline, FrameworkError> {
    let mut rng = SplitMix64::new(seed);
    let mut draw = |rows: usize, cols: usize| {
        Mat::new(
            rows,
            cols,
            (0..rows * cols).map(|_| rng.uniform_f32(-1.0, 1.0)).collect(),
        )
    };
    let mut scores = Vec::with_capacity(samples);
    for _ in 0..samples {
        let (a1, a2, b1, b2) = (
            draw(d_model, d_head)?,
            draw(d_head, d_model)?,
            draw(d_model, d_head)?,
            draw(d_head, d_model)?,
        );
        let (ga1, ga2, gb1, gb2) = (a1.gram(), a2.t().gram(), b1.gram(), b2.t().gram());
        let m: Vec<f64> = a2.matmul(&b1)?.data.iter().map(|&x| x as f64).collect();
        let na = trace_of_product(&ga1, &ga2, d_head).max(0.0).sqrt();
        let nb = trace_of_product(&gb1, &gb2, d_head).max(0.0).sqrt();
        scores.push(score(&ga1, &m, &gb2, na, nb, d_head) as f64);
    }
    let n = scores.len().max(1) as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    Ok(Baseline {
        mean: mean as f32,
        std: var.sqrt() as f32,
        samples,
        seed,
    })
}

/// Σ Re λ / Σ |λ| over the eigenvalues of `a · b` for `a (r, s)`, `b (s, r)`: the nonzero eigenvalues of a
/// product do not change when its factors are cycled, so the d_model x d_model OV matrix is read through a
/// d_head x d_head one. None for an all-zero product.
fn copying_score_of(a: &Mat, b: &Mat) -> Result<Option<f32>, FrameworkError> {
    let p = a.matmul(b)?;
    let vals: Vec<f64> = p.data.iter().map(|&x| x as f64).collect();
    let eig = eigenvalues(&vals, p.rows).ok_or(FrameworkError::Numerics(NumericsProblem::Eigenvalues))?;
    let abs: f64 = eig.iter().map(|z| z.abs()).sum();
    Ok((abs > 0.0).then(|| (eig.iter().map(|z| z.re).sum::<f64>() / abs) as f32))
}

/// The framework paper's copying score of each head's OV matrix W_V·W_O (d_model x d_model, as the fixture and
/// TransformerLens' `OV.eigenvalues` take it), `[L, H]`; NaN for a head whose OV matrix is zero.
pub fn ov_copying_scores(w: &FrameworkWeights) -> Result<Vec<f32>, FrameworkError> {
    let mut out = Vec::with_capacity(w.n_layers() * w.n_heads());
    for layer in &w.layers {
        for h in &layer.heads {
            // eig(W_V·W_O) \ {0} = eig(W_O·W_V).
            out.push(copying_score_of(&h.w_o, &h.w_v)?.unwrap_or(f32::NAN));
        }
    }
    Ok(out)
}

/// The same score through the embeddings: the eigenvalues of the full OV circuit W_E·W_V·W_O·W_U (vocab x vocab,
/// read as W_O·W_U·W_E·W_V, d_head x d_head), `[L, H]`: whether attending to a token raises that token's logit.
pub fn full_ov_copying_scores(w: &FrameworkWeights) -> Result<Vec<f32>, FrameworkError> {
    let ue = w.w_u.matmul(&w.w_e)?; // (d_model, d_model)
    let mut out = Vec::with_capacity(w.n_layers() * w.n_heads());
    for layer in &w.layers {
        for h in &layer.heads {
            out.push(copying_score_of(&h.w_o.matmul(&ue)?, &h.w_v)?.unwrap_or(f32::NAN));
        }
    }
    Ok(out)
}

/// W_E and W_U as CPU tensors, converted once and shared by every layer's products.
pub struct Embeddings {
    /// `(vocab, d_model)`.
    w_e: Tensor,
    /// `(d_model, vocab)`.
    w_u: Tensor,
}

impl Embeddings {
    /// Converts `w`'s embedding and unembedding.
    pub fn new(w: &FrameworkWeights) -> Result<Self, FrameworkError> {
        Ok(Embeddings {
            w_e: w.w_e.to_tensor()?,
            w_u: w.w_u.to_tensor()?,
        })
    }
}

/// One head's full OV and QK circuits as rank-d_head factors.
#[derive(Debug, Clone)]
pub struct HeadCircuits {
    /// W_E·W_V · W_O·W_U, `(vocab, d_head) · (d_head, vocab)`.
    pub ov: Factored,
    /// W_E·W_Q · (W_E·W_K)ᵀ, `(vocab, d_head) · (d_head, vocab)`.
    pub qk: Factored,
}

/// The full OV and QK circuits of every head of `layer`, equal to [`full_ov`] and [`full_qk`] head by head. The
/// vocab-sized factors come from one gemm per kind for the whole layer (W_E·\[W_V of every head\] as
/// `(vocab, d_model) · (d_model, H·d_head)`, \[W_O of every head\]·W_U, W_E·\[W_Q\], W_E·\[W_K\]) instead of four per
/// head: the same arithmetic, but W_E and W_U are read once per layer and the gemm runs on wide operands.
pub fn layer_circuits(
    w: &FrameworkWeights,
    emb: &Embeddings,
    layer: usize,
) -> Result<Vec<HeadCircuits>, FrameworkError> {
    let ly = w
        .layers
        .get(layer)
        .ok_or(FrameworkError::Shape(ShapeProblem::NoHead { layer, head: 0 }))?;
    if ly.heads.is_empty() {
        return Ok(Vec::new());
    }
    let (d, dh) = (w.d_model(), w.d_head());
    let side_by_side = |pick: fn(&HeadWeights) -> &Mat| -> Result<Tensor, FrameworkError> {
        Mat::hcat(&ly.heads.iter().map(pick).collect::<Vec<_>>(), d)?.to_tensor()
    };
    // (vocab, H·d_head): head h's factor is columns h·d_head.. of each.
    let ev = Mat::from_tensor(&emb.w_e.matmul(&side_by_side(|h| &h.w_v)?)?)?;
    let eq = Mat::from_tensor(&emb.w_e.matmul(&side_by_side(|h| &h.w_q)?)?)?;
    // (H·d_head, vocab): head h's factor is rows h·d_head.. of each.
    let ek_t = Mat::from_tensor(&emb.w_e.matmul(&side_by_side(|h| &h.w_k)?)?.t()?.contiguous()?)?;
    let stacked_o = Mat::vcat(&ly.heads.iter().map(|h| &h.w_o).collect::<Vec<_>>(), d)?;
    let ou = Mat::from_tensor(&stacked_o.to_tensor()?.matmul(&emb.w_u)?)?;
    (0..ly.heads.len())
        .map(|h| {
            Ok(HeadCircuits {
                ov: Factored::new(ev.col_block(h * dh, dh), ou.row_block(h * dh, dh))?,
                qk: Factored::new(eq.col_block(h * dh, dh), ek_t.row_block(h * dh, dh))?,
            })
        })
        .collect()
}

/// Head `(layer, head)`'s full OV circuit W_E·W_V·W_O·W_U: source token → output logits, `(vocab, vocab)`.
pub fn full_ov(w: &FrameworkWeights, layer: usize, head: usize) -> Result<Factored, FrameworkError> {
    let h = head_of(w, layer, head)?;
    Factored::new(w.w_e.matmul(&h.w_v)?, h.w_o.matmul(&w.w_u)?)
}

/// Head `(layer, head)`'s full QK circuit W_E·W_Q·W_Kᵀ·W_Eᵀ: query token → key token, `(vocab, vocab)`.
pub fn full_qk(w: &FrameworkWeights, layer: usize, head: usize) -> Result<Factored, FrameworkError> {
    let h = head_of(w, layer, head)?;
    Factored::new(w.w_e.matmul(&h.w_q)?, w.w_e.matmul(&h.w_k)?.t())
}

/// Head `(layer, head)`'s positional QK circuit W_pos·W_Q·W_Kᵀ·W_posᵀ: query position → key position.
pub fn pos_qk(w: &FrameworkWeights, layer: usize, head: usize) -> Result<Factored, FrameworkError> {
    let h = head_of(w, layer, head)?;
    Factored::new(w.w_pos.matmul(&h.w_q)?, w.w_pos.matmul(&h.w_k)?.t())
}

/// The direct path W_E·W_U: current token → next-token logits through the residual stream alone.
pub fn direct_path(w: &FrameworkWeights) -> Result<Factored, FrameworkError> {
    Factored::new(w.w_e.clone(), w.w_u.clone())
}

/// Where a head's positional QK circuit puts each query's highest-scoring visible key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PositionalPreference {
    /// The most common `query - key` offset of the row maximum (0: the query's own position).
    pub offset: usize,
    /// The share of query positions 1..n_ctx whose row maximum sits at that offset.
    pub share: f32,
}

/// The most common offset of each query position's highest positional QK score over the keys it can see.
pub fn positional_preference(qk: &Factored) -> Result<PositionalPreference, FrameworkError> {
    let (n, _) = qk.shape();
    let rows: Vec<usize> = (1..n).collect();
    if rows.is_empty() {
        return Ok(PositionalPreference { offset: 0, share: 1.0 });
    }
    let m = qk.rows_of(&rows)?;
    let mut counts = vec![0usize; n];
    for (bi, &i) in rows.iter().enumerate() {
        let row = &m.row(bi)[..=i];
        let argmax = (0..=i).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(i);
        counts[i - argmax] += 1;
    }
    let (offset, &best) = counts
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
        .unwrap_or((0, &0));
    Ok(PositionalPreference {
        offset,
        share: best as f32 / rows.len() as f32,
    })
}

fn head_of(w: &FrameworkWeights, layer: usize, head: usize) -> Result<&HeadWeights, FrameworkError> {
    w.layers
        .get(layer)
        .and_then(|l| l.heads.get(head))
        .ok_or(FrameworkError::Shape(ShapeProblem::NoHead { layer, head }))
}
