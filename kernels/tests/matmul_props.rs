//! The kernels must agree with a naive dense matmul on every shape and sparsity pattern, with
//! both row-pointer widths, on the serial and every parallel path.

use circuitscope_kernels::{
    csr_matmul_grad_input, csr_matmul_xwt, csr_matmul_xwt_then, CsrMatrix, CsrView, SplitMix64,
};
use proptest::prelude::*;

/// The workspace's deterministic generator, so a failing case is reproducible from its proptest seed.
struct Rng(SplitMix64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0.next_f64()
    }

    fn value(&mut self) -> f32 {
        (self.next_f64() * 4.0 - 2.0) as f32
    }
}

/// A dense (rows, cols) matrix with the given density, where each row is additionally
/// emptied with probability `empty_row_p` so fully empty rows are common.
fn random_weight(rng: &mut Rng, rows: usize, cols: usize, density: f64, empty_row_p: f64) -> Vec<f32> {
    let mut w = vec![0.0f32; rows * cols];
    for row in w.chunks_exact_mut(cols) {
        if rng.next_f64() < empty_row_p {
            continue;
        }
        for v in row.iter_mut() {
            if rng.next_f64() < density {
                // Never exactly zero, so density is what was asked for.
                *v = rng.value() + 3.0;
            }
        }
    }
    w
}

fn random_dense(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.value()).collect()
}

/// Reference (m, k) · (k, n) in f64, also returning the sum of |terms| per output for the
/// tolerance, since the kernels sum in a different order.
fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0.0f64; m * n];
    let mut mag = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            for l in 0..k {
                let p = a[i * k + l] as f64 * b[l * n + j] as f64;
                out[i * n + j] += p;
                mag[i * n + j] += p.abs();
            }
        }
    }
    (out, mag)
}

fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

fn assert_close(got: &[f32], want: &[f64], mag: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let tol = 1e-4 * (1.0 + m);
        assert!(
            (g as f64 - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w} (tol {tol})"
        );
    }
}

/// Runs both kernels on one case with both row-pointer widths and checks them.
fn check_case(seed: u64, rows: usize, cols: usize, t: usize, density: f64, empty_row_p: f64) {
    let mut rng = Rng(SplitMix64::new(seed));
    let dense_w = random_weight(&mut rng, rows, cols, density, empty_row_p);
    let x = random_dense(&mut rng, t * cols);
    let gy = random_dense(&mut rng, t * rows);

    let m = CsrMatrix::from_dense(&dense_w, rows, cols).unwrap();
    assert_eq!(m.to_dense(), dense_w, "from_dense/to_dense round trip");
    let row_ptr32: Vec<u32> = m.row_ptr().iter().map(|&p| p as u32).collect();
    let view32 = CsrView::new(m.values(), m.col_idx(), row_ptr32.as_slice(), rows, cols).unwrap();

    let (want_y, mag_y) = naive(&x, &transpose(&dense_w, rows, cols), t, cols, rows);
    let (want_gx, mag_gx) = naive(&gy, &dense_w, t, rows, cols);

    for (name, view) in [("u64", m.view()), ("u32", view32)] {
        // Prefilled with garbage: both kernels must overwrite, not accumulate.
        let mut y = vec![f32::NAN; t * rows];
        csr_matmul_xwt(&x, t, &view, &mut y).unwrap();
        assert_close(&y, &want_y, &mag_y, &format!("xwt/{name}"));

        let mut gx = vec![f32::NAN; t * cols];
        csr_matmul_grad_input(&gy, t, &view, &mut gx).unwrap();
        assert_close(&gx, &want_gx, &mag_gx, &format!("grad_input/{name}"));

        check_then(&x, t, &view, &y, name);
    }
}

/// The fused product-then-row-pass: the same product, every row finished exactly once with its own token index,
/// after its product, and each task's state serving consecutive tokens.
fn check_then(x: &[f32], t: usize, view: &CsrView, plain: &[f32], name: &str) {
    let rows = view.rows();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let mut y = vec![f32::NAN; t * rows];
    csr_matmul_xwt_then(
        x,
        t,
        view,
        &mut y,
        || None::<usize>,
        |last: &mut Option<usize>, i, row| {
            if let Some(prev) = *last {
                assert_eq!(i, prev + 1, "then/{name}: a task's tokens are consecutive");
            }
            *last = Some(i);
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Mark the row with its token index, on top of the product it must already hold.
            for v in row.iter_mut() {
                *v = *v * 2.0 + i as f32;
            }
        },
    )
    .unwrap();
    assert_eq!(
        calls.into_inner(),
        if rows == 0 { 0 } else { t },
        "then/{name}: one call per token"
    );
    for (i, (got, want)) in y.chunks(rows.max(1)).zip(plain.chunks(rows.max(1))).enumerate() {
        for (g, w) in got.iter().zip(want) {
            let w = w * 2.0 + i as f32;
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "then/{name}: token {i}: {g} vs {w}"
            );
        }
    }
}

fn density() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0, 0.0f64..0.1]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn kernels_match_dense(
        seed in any::<u64>(),
        rows in 1usize..70,
        cols in 1usize..70,
        t in 1usize..40,
        density in density(),
        empty_row_p in prop_oneof![Just(0.0), 0.0f64..0.5],
    ) {
        check_case(seed, rows, cols, t, density, empty_row_p);
    }
}

/// The proptest sizes are mostly below the parallel threshold; these are large enough to take
/// the token-parallel, row-parallel and row-split-gradient paths, under several pool sizes so
/// the path choice (which depends on the thread count) is exercised regardless of the machine.
#[test]
fn parallel_paths_match_dense() {
    for threads in [1, 2, 3, 8] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            for (i, &(rows, cols, t, density)) in [
                (300, 200, 1, 0.3),
                (2000, 300, 1, 0.5),
                (1000, 300, 5, 0.5),
                (300, 200, 3, 0.5),
                (257, 129, 17, 1.0),
                (200, 300, 64, 0.2),
                (120, 90, 256, 0.05),
                (500, 40, 5, 0.0),
                (40, 600, 9, 0.9),
                // Many nonzeros per row and t not a multiple of the token block: the widest
                // token-blocked kernel with a padded last block.
                (150, 200, 70, 0.5),
            ]
            .iter()
            .enumerate()
            {
                check_case(1000 + i as u64, rows, cols, t, density, 0.2);
            }
        });
    }
}

#[test]
fn degenerate_shapes() {
    // Zero tokens, zero rows and zero columns are all valid and must not panic.
    for (rows, cols, t) in [(0, 5, 3), (5, 0, 3), (4, 4, 0), (0, 0, 0)] {
        let m = CsrMatrix::from_dense(&vec![1.0; rows * cols], rows, cols).unwrap();
        let x = vec![1.0; t * cols];
        let mut y = vec![f32::NAN; t * rows];
        csr_matmul_xwt(&x, t, &m.view(), &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0));
        let gy = vec![1.0; t * rows];
        let mut gx = vec![f32::NAN; t * cols];
        csr_matmul_grad_input(&gy, t, &m.view(), &mut gx).unwrap();
        assert!(gx.iter().all(|&v| v == 0.0));
    }
}
