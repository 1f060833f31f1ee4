//! Benchmark of the CSR kernels on the shapes of a weight-sparse transformer.
//!
//! `cargo run --release --example spmm_bench [-- --grad] [-- --quick]`
//!
//! For every (shape, density, t) it prints milliseconds per call and effective throughput in
//! G nonzero·tokens per second, for `csr_matmul_xwt` (and `csr_matmul_grad_input` with
//! `--grad`). Each result is also checked against a plain serial scalar reference.

use std::time::{Duration, Instant};

use circuitscope_kernels::{csr_matmul_grad_input, csr_matmul_xwt, CsrMatrix, CsrView, SplitMix64};

/// The workspace's deterministic generator (no `rand` dependency in this crate).
struct Rng(SplitMix64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0.next_f64()
    }

    fn value(&mut self) -> f32 {
        self.0.uniform_f32(-1.0, 1.0)
    }
}

/// A random (rows, cols) CSR matrix where each entry is nonzero with probability `density`.
/// Column positions are drawn by geometric skips so generation is O(nnz), not O(rows·cols).
fn random_csr(rng: &mut Rng, rows: usize, cols: usize, density: f64) -> CsrMatrix {
    let mut values = Vec::new();
    let mut col_idx = Vec::new();
    let mut row_ptr = vec![0u64];
    let ln_q = (1.0 - density).ln();
    for _ in 0..rows {
        let mut c = 0usize;
        loop {
            // Skip ~ Geometric(density): number of zeros before the next nonzero.
            let u = rng.next_f64().max(1e-300);
            let skip = if density >= 1.0 {
                0
            } else {
                (u.ln() / ln_q).floor() as usize
            };
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
    CsrMatrix::new(values, col_idx, row_ptr, rows, cols).unwrap()
}

/// Serial scalar reference for `x · Wᵀ`.
fn ref_xwt(x: &[f32], t: usize, w: &CsrView, out: &mut [f32]) {
    let (rows, cols) = (w.rows(), w.cols());
    for tok in 0..t {
        for r in 0..rows {
            let mut s = 0.0f32;
            for p in w.row_range(r) {
                s += w.values()[p] * x[tok * cols + w.col_idx()[p] as usize];
            }
            out[tok * rows + r] = s;
        }
    }
}

/// Serial scalar reference for `gy · W`.
fn ref_grad(gy: &[f32], t: usize, w: &CsrView, gx: &mut [f32]) {
    let (rows, cols) = (w.rows(), w.cols());
    gx.fill(0.0);
    for tok in 0..t {
        for r in 0..rows {
            let g = gy[tok * rows + r];
            for p in w.row_range(r) {
                gx[tok * cols + w.col_idx()[p] as usize] += g * w.values()[p];
            }
        }
    }
}

fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// Runs `f` repeatedly for at least `min_time` (and at least 3 times) after one warm-up call;
/// returns the fastest call in seconds (the minimum is the most robust statistic on a machine
/// that is shared with other work).
fn time_it(min_time: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 3 || start.elapsed() < min_time {
        let s = Instant::now();
        f();
        samples.push(s.elapsed().as_secs_f64());
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[0]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let grad = args.iter().any(|a| a == "--grad");
    let quick = args.iter().any(|a| a == "--quick");
    let min_time = Duration::from_millis(if quick { 100 } else { 400 });

    let shapes: [(usize, usize, f64); 5] = [
        (6144, 2048, 1.0 / 256.0),
        (2048, 2048, 1.0 / 256.0),
        (8192, 2048, 1.0 / 256.0),
        (2048, 8192, 1.0 / 256.0),
        (2048, 2048, 1.0 / 8.0),
    ];
    let ts = [1usize, 64, 256];

    println!("threads: {}", rayon::current_num_threads());
    println!(
        "{:<6} {:>14} {:>8} {:>8} {:>5} {:>10} {:>12} {:>9}",
        "kernel", "shape", "density", "nnz", "t", "ms/call", "Gnnz·tok/s", "rel.err"
    );
    let mut rng = Rng(SplitMix64::new(0x5eed));
    let mut total_fwd_256 = 0.0;
    for &(rows, cols, density) in &shapes {
        let m = random_csr(&mut rng, rows, cols, density);
        let w = m.view();
        let nnz = w.nnz();
        for &t in &ts {
            let x: Vec<f32> = (0..t * cols).map(|_| rng.value()).collect();
            let mut y = vec![0.0f32; t * rows];
            let secs = time_it(min_time, || csr_matmul_xwt(&x, t, &w, &mut y).unwrap());
            let mut want = vec![0.0f32; t * rows];
            ref_xwt(&x, t, &w, &mut want);
            let err = max_rel_err(&y, &want);
            if t == 256 && density < 0.01 {
                total_fwd_256 += secs;
            }
            println!(
                "{:<6} {:>14} {:>8} {:>8} {:>5} {:>10.3} {:>12.2} {:>9.1e}",
                "xwt",
                format!("({rows},{cols})"),
                format!("1/{}", (1.0 / density).round()),
                nnz,
                t,
                secs * 1e3,
                (nnz * t) as f64 / secs / 1e9,
                err
            );
            assert!(err < 1e-4, "xwt result differs from reference");

            if grad {
                let gy: Vec<f32> = (0..t * rows).map(|_| rng.value()).collect();
                let mut gx = vec![0.0f32; t * cols];
                let secs = time_it(min_time, || csr_matmul_grad_input(&gy, t, &w, &mut gx).unwrap());
                let mut want = vec![0.0f32; t * cols];
                ref_grad(&gy, t, &w, &mut want);
                let err = max_rel_err(&gx, &want);
                println!(
                    "{:<6} {:>14} {:>8} {:>8} {:>5} {:>10.3} {:>12.2} {:>9.1e}",
                    "grad",
                    format!("({rows},{cols})"),
                    format!("1/{}", (1.0 / density).round()),
                    nnz,
                    t,
                    secs * 1e3,
                    (nnz * t) as f64 / secs / 1e9,
                    err
                );
                assert!(err < 1e-4, "grad result differs from reference");
            }
        }
    }
    println!(
        "sum of t=256 forward times over the four 1/256 shapes: {:.3} ms",
        total_fwd_256 * 1e3
    );
}
