//! Benchmark of the inference kernels other than the CSR product, on the shapes of the yolo2 benchmark model
//! (d_model 2048, 128 heads × 16, d_mlp 8192, AbsTopK 1/4, 256 tokens).
//!
//! `cargo run --release --example kernel_bench [-- --threads N]`
//!
//! Prints milliseconds per call and nanoseconds per element for AbsTopK in place (2048- and 8192-wide rows) and
//! for the fused causal attention on q, k, v that are themselves AbsTopK-sparse.

use std::time::Instant;

use circuitscope_kernels::{abs_topk_rows_inplace, causal_attention, AttentionShape, SplitMix64};

/// The workspace's deterministic generator (no `rand` dependency in this crate).
struct Rng(SplitMix64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0.uniform_f32(-1.0, 1.0)
    }

    /// Roughly normal: the sum of four uniforms.
    fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.next_f32()).sum::<f32>() * 0.866
    }
}

/// `rows` rows of `dim` roughly normal values, each row at its own scale (as residual-stream rows are).
fn activations(rng: &mut Rng, rows: usize, dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let scale = 0.5 + rng.next_f32().abs() * 2.0;
        out.extend((0..dim).map(|_| rng.normal() * scale));
    }
    out
}

/// Best of `iters` timings of `f`, in milliseconds.
fn best_ms(iters: usize, mut f: impl FnMut()) -> f64 {
    (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        let n: usize = args[i + 1].parse().expect("--threads N");
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .expect("thread pool");
    }
    let mut rng = Rng(SplitMix64::new(0x5eed));
    let t = 256;
    for dim in [2048, 8192] {
        let src = activations(&mut rng, t, dim);
        let mut x = src.clone();
        let ms = best_ms(50, || {
            x.copy_from_slice(&src);
            abs_topk_rows_inplace(&mut x, dim, dim / 4);
        });
        let copy = best_ms(50, || x.copy_from_slice(&src));
        let ms = ms - copy;
        println!(
            "abs_topk {t}x{dim} k={}: {ms:.3} ms ({:.3} ns/element)",
            dim / 4,
            ms * 1e6 / (t * dim) as f64
        );
    }
    let (n_head, d_head) = (128, 16);
    let a = n_head * d_head;
    let mut qkv: Vec<Vec<f32>> = (0..3).map(|_| activations(&mut rng, t, a)).collect();
    for m in &mut qkv {
        abs_topk_rows_inplace(m, a, a / 4);
    }
    let sink: Vec<f32> = (0..n_head).map(|_| rng.next_f32()).collect();
    let mut y = vec![0f32; t * a];
    let shape = AttentionShape { t, n_head, d_head };
    let scale = 1.0 / (d_head as f32).sqrt();
    let ms = best_ms(20, || {
        causal_attention(&qkv[0], &qkv[1], &qkv[2], shape, scale, Some(&sink), &mut y).expect("attention");
    });
    let pairs = n_head * t * (t + 1) / 2;
    println!(
        "attention t={t} heads={n_head}x{d_head}: {ms:.3} ms ({:.3} ns per query-key pair)",
        ms * 1e6 / pairs as f64
    );
}
