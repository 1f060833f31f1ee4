//! Benchmarks of the inference kernels at the shapes of the two models they serve: `yolo2` (the benchmark
//! model: d_model 2048, d_mlp 8192, 128 heads × 16, weight density 1/256, 256 tokens) and the bundled
//! `tinypython-sparse` (d_model 128, d_mlp 512, 8 heads × 16, weight density 1/8, 128 tokens). Both have
//! AbsTopK 1/4 at every node, so the activations fed to the kernels are themselves that sparse where the
//! forward's are.
//!
//! `cargo bench -p circuitscope-kernels` (all of them; a filter after `--` picks some, e.g. `-- csr_xwt`). The
//! inputs are built outside the timed region; AbsTopK in place gets a fresh copy of its rows for every call.
//! Results: docs/benchmarks-kernels.md.

use std::fmt;

use circuitscope_kernels::{
    abs_topk_rows, abs_topk_rows_inplace, causal_attention, csr_matmul_grad_input, csr_matmul_xwt, AttentionShape,
    CsrMatrix,
};
use divan::counter::ItemsCount;
use divan::Bencher;

fn main() {
    divan::main();
}

/// Deterministic generator (the kernels crate has no `rand` dependency).
struct Lcg(u64);

impl Lcg {
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-1, 1).
    fn value(&mut self) -> f32 {
        (self.unit() * 2.0 - 1.0) as f32
    }

    /// Roughly normal: the sum of four uniforms.
    fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.value()).sum::<f32>() * 0.866
    }
}

/// A random (rows, cols) CSR matrix whose entries are nonzero with probability `density`. Column positions
/// are drawn by geometric skips, so generation is O(nnz), not O(rows·cols).
fn random_csr(rng: &mut Lcg, rows: usize, cols: usize, density: f64) -> CsrMatrix {
    let (mut values, mut col_idx, mut row_ptr) = (Vec::new(), Vec::new(), vec![0u64]);
    let ln_q = (1.0 - density).ln();
    for _ in 0..rows {
        let mut c = 0usize;
        loop {
            // Zeros before the next nonzero ~ Geometric(density).
            let skip = (rng.unit().max(1e-300).ln() / ln_q).floor() as usize;
            c = c.saturating_add(skip);
            if c >= cols {
                break;
            }
            values.push(rng.value());
            col_idx.push(c as u32);
            c += 1;
        }
        row_ptr.push(values.len() as u64);
    }
    CsrMatrix::new(values, col_idx, row_ptr, rows, cols).expect("generated CSR is valid")
}

/// `rows` rows of `dim` roughly normal values, each row at its own scale (as residual-stream rows are).
fn activations(rng: &mut Lcg, rows: usize, dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let scale = 0.5 + rng.value().abs() * 2.0;
        out.extend((0..dim).map(|_| rng.normal() * scale));
    }
    out
}

/// One weight matrix of a model at the token count its benchmark runs.
#[derive(Clone, Copy)]
struct Linear {
    model: &'static str,
    /// Which weight: the fused q/k/v projection, the attention output, the MLP's up or down projection.
    name: &'static str,
    rows: usize,
    cols: usize,
    /// Nonzeros per entry, as 1/n.
    density_inv: u32,
    tokens: usize,
}

impl fmt::Display for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}x{}, 1/{}, t={})",
            self.model, self.name, self.rows, self.cols, self.density_inv, self.tokens
        )
    }
}

const fn linear(model: &'static str, name: &'static str, rows: usize, cols: usize, density_inv: u32) -> Linear {
    let tokens = if density_inv == 256 { 256 } else { 128 };
    Linear {
        model,
        name,
        rows,
        cols,
        density_inv,
        tokens,
    }
}

/// The four sparse matrices of a block of each model.
const LINEARS: [Linear; 8] = [
    linear("yolo2", "qkv", 6144, 2048, 256),
    linear("yolo2", "attn_out", 2048, 2048, 256),
    linear("yolo2", "mlp_up", 8192, 2048, 256),
    linear("yolo2", "mlp_down", 2048, 8192, 256),
    linear("bundled", "qkv", 384, 128, 8),
    linear("bundled", "attn_out", 128, 128, 8),
    linear("bundled", "mlp_up", 512, 128, 8),
    linear("bundled", "mlp_down", 128, 512, 8),
];

/// The matrix and the input of one product benchmark: x is AbsTopK-sparse (1/4), as the forward's inputs are.
fn product_inputs(s: &Linear, x_width: usize) -> (CsrMatrix, Vec<f32>) {
    let mut rng = Lcg(0x5eed ^ (s.rows * 31 + s.cols) as u64);
    let w = random_csr(&mut rng, s.rows, s.cols, 1.0 / f64::from(s.density_inv));
    let mut x = activations(&mut rng, s.tokens, x_width);
    abs_topk_rows_inplace(&mut x, x_width, x_width / 4);
    (w, x)
}

/// y = x · Wᵀ, the forward product. Items: nonzero·token multiply-adds.
#[divan::bench(args = LINEARS, max_time = 2)]
fn csr_xwt(bencher: Bencher, s: &Linear) {
    let (w, x) = product_inputs(s, s.cols);
    let w = w.view();
    let mut y = vec![0f32; s.tokens * s.rows];
    bencher
        .counter(ItemsCount::new(w.nnz() * s.tokens))
        .bench_local(|| csr_matmul_xwt(divan::black_box(&x), s.tokens, &w, &mut y).expect("shapes match"));
}

/// gx = gy · W, the input gradient (training and pruning). Items: nonzero·token multiply-adds.
#[divan::bench(args = LINEARS, max_time = 2)]
fn csr_grad_input(bencher: Bencher, s: &Linear) {
    let (w, gy) = product_inputs(s, s.rows);
    let w = w.view();
    let mut gx = vec![0f32; s.tokens * s.cols];
    bencher
        .counter(ItemsCount::new(w.nnz() * s.tokens))
        .bench_local(|| csr_matmul_grad_input(divan::black_box(&gy), s.tokens, &w, &mut gx).expect("shapes match"));
}

/// Rows of an AbsTopK site: `rows` rows `dim` wide, k = dim / 4.
#[derive(Clone, Copy)]
struct TopKRows {
    model: &'static str,
    rows: usize,
    dim: usize,
}

impl fmt::Display for TopKRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{} k={}", self.model, self.rows, self.dim, self.dim / 4)
    }
}

/// The residual-width and MLP-width sites of each model.
const TOPK_ROWS: [TopKRows; 4] = [
    TopKRows {
        model: "yolo2",
        rows: 256,
        dim: 2048,
    },
    TopKRows {
        model: "yolo2",
        rows: 256,
        dim: 8192,
    },
    TopKRows {
        model: "bundled",
        rows: 128,
        dim: 128,
    },
    TopKRows {
        model: "bundled",
        rows: 128,
        dim: 512,
    },
];

/// AbsTopK in place, as the forward runs it. Items: row elements.
#[divan::bench(args = TOPK_ROWS, max_time = 2)]
fn abs_topk_inplace(bencher: Bencher, s: &TopKRows) {
    let src = activations(&mut Lcg(0x70c4), s.rows, s.dim);
    bencher
        .counter(ItemsCount::new(s.rows * s.dim))
        .with_inputs(|| src.clone())
        .bench_local_refs(|x| abs_topk_rows_inplace(x, s.dim, s.dim / 4));
}

/// AbsTopK into a second buffer, as a mask (what pruning and the hooks ask for). Items: row elements.
#[divan::bench(args = TOPK_ROWS, max_time = 2)]
fn abs_topk_mask(bencher: Bencher, s: &TopKRows) {
    let src = activations(&mut Lcg(0x70c4), s.rows, s.dim);
    let mut dst = vec![0f32; src.len()];
    bencher
        .counter(ItemsCount::new(s.rows * s.dim))
        .bench_local(|| abs_topk_rows(divan::black_box(&src), &mut dst, s.dim, s.dim / 4, true));
}

/// One attention call: T tokens, heads × d_head.
#[derive(Clone, Copy)]
struct Attention {
    model: &'static str,
    t: usize,
    n_head: usize,
    d_head: usize,
}

impl fmt::Display for Attention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} t={} {}x{}", self.model, self.t, self.n_head, self.d_head)
    }
}

/// d_head 16 (the paper's head size, with its own kernel) at both models' shapes, and the general path at
/// yolo2's width with heads of 64 and 32.
const ATTENTION: [Attention; 4] = [
    Attention {
        model: "yolo2",
        t: 256,
        n_head: 128,
        d_head: 16,
    },
    Attention {
        model: "bundled",
        t: 128,
        n_head: 8,
        d_head: 16,
    },
    Attention {
        model: "yolo2-width",
        t: 256,
        n_head: 32,
        d_head: 64,
    },
    Attention {
        model: "yolo2-width",
        t: 256,
        n_head: 64,
        d_head: 32,
    },
];

/// Causal attention with per-head sinks on AbsTopK-sparse q, k, v. Items: query-key pairs over all heads.
#[divan::bench(args = ATTENTION, max_time = 2)]
fn attention(bencher: Bencher, s: &Attention) {
    let a = s.n_head * s.d_head;
    let mut rng = Lcg(0xa77e);
    let mut qkv: Vec<Vec<f32>> = (0..3).map(|_| activations(&mut rng, s.t, a)).collect();
    for m in &mut qkv {
        abs_topk_rows_inplace(m, a, a / 4);
    }
    let sink: Vec<f32> = (0..s.n_head).map(|_| rng.value()).collect();
    let mut y = vec![0f32; s.t * a];
    let shape = AttentionShape {
        t: s.t,
        n_head: s.n_head,
        d_head: s.d_head,
    };
    let scale = 1.0 / (s.d_head as f32).sqrt();
    bencher
        .counter(ItemsCount::new(s.n_head * s.t * (s.t + 1) / 2))
        .bench_local(|| {
            causal_attention(&qkv[0], &qkv[1], &qkv[2], shape, scale, Some(&sink), &mut y).expect("shapes match")
        });
}
