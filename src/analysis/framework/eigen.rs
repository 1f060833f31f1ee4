//! Eigenvalues of a small real square matrix (a head's d_head x d_head OV product): Householder reduction to
//! Hessenberg form, then the shifted QR algorithm in complex arithmetic with Wilkinson shifts and deflation.
//! Complex single shifts are simpler to get right than Francis' real double shift and cost nothing at these
//! sizes (d_head ≤ 128).

/// A complex number in f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Complex {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

impl Complex {
    const ZERO: Complex = Complex { re: 0.0, im: 0.0 };

    fn real(re: f64) -> Self {
        Complex { re, im: 0.0 }
    }
    /// The modulus |z|.
    pub fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn conj(self) -> Self {
        Complex {
            re: self.re,
            im: -self.im,
        }
    }
    fn add(self, o: Self) -> Self {
        Complex {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn sub(self, o: Self) -> Self {
        Complex {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    fn mul(self, o: Self) -> Self {
        Complex {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn scale(self, s: f64) -> Self {
        Complex {
            re: self.re * s,
            im: self.im * s,
        }
    }
    fn sqrt(self) -> Self {
        let r = self.abs();
        let re = ((r + self.re) / 2.0).max(0.0).sqrt();
        let im = ((r - self.re) / 2.0).max(0.0).sqrt();
        Complex {
            re,
            im: if self.im < 0.0 { -im } else { im },
        }
    }
}

/// The eigenvalues of the `n x n` real matrix `a` (row-major), in no particular order. Returns None when the QR
/// iteration does not converge (not seen on finite input; the caller reports it) or the input is not finite.
pub fn eigenvalues(a: &[f64], n: usize) -> Option<Vec<Complex>> {
    if a.len() != n * n || a.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut h: Vec<Complex> = hessenberg(a, n).into_iter().map(Complex::real).collect();
    let at = |i: usize, j: usize| i * n + j;
    let mut out = Vec::with_capacity(n);
    let mut hi = n;
    let mut iters = 0usize;
    let scale = a.iter().fold(0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    while hi > 0 {
        let last = hi - 1;
        if last == 0 {
            out.push(h[at(0, 0)]);
            break;
        }
        // The start of the unreduced block that ends at `last`.
        let mut lo = last;
        while lo > 0 {
            let sub = h[at(lo, lo - 1)].abs();
            let diag = h[at(lo, lo)].abs() + h[at(lo - 1, lo - 1)].abs();
            if sub <= f64::EPSILON * if diag > 0.0 { diag } else { scale } {
                h[at(lo, lo - 1)] = Complex::ZERO;
                break;
            }
            lo -= 1;
        }
        if lo == last {
            out.push(h[at(last, last)]);
            hi -= 1;
            iters = 0;
            continue;
        }
        iters += 1;
        if iters > 100 * n.max(10) {
            return None;
        }
        let mu = if iters % 11 == 10 {
            // An exceptional shift breaks the rare cycles of the Wilkinson shift.
            h[at(last, last)].add(Complex::real(h[at(last, last - 1)].abs() * 0.75))
        } else {
            wilkinson(
                h[at(last - 1, last - 1)],
                h[at(last - 1, last)],
                h[at(last, last - 1)],
                h[at(last, last)],
            )
        };
        qr_step(&mut h, n, lo, last, mu);
    }
    Some(out)
}

/// The eigenvalue of the trailing 2x2 block [[a, b], [c, d]] closer to d.
fn wilkinson(a: Complex, b: Complex, c: Complex, d: Complex) -> Complex {
    let half_tr = a.add(d).scale(0.5);
    let det = a.mul(d).sub(b.mul(c));
    let disc = half_tr.mul(half_tr).sub(det).sqrt();
    let (l1, l2) = (half_tr.add(disc), half_tr.sub(disc));
    if l1.sub(d).abs() <= l2.sub(d).abs() {
        l1
    } else {
        l2
    }
}

/// One shifted QR step on the Hessenberg block `lo..=hi`: H - μI = QR by Givens rotations, H ← RQ + μI.
fn qr_step(h: &mut [Complex], n: usize, lo: usize, hi: usize, mu: Complex) {
    let at = |i: usize, j: usize| i * n + j;
    for k in lo..=hi {
        h[at(k, k)] = h[at(k, k)].sub(mu);
    }
    let mut rots = Vec::with_capacity(hi - lo);
    for k in lo..hi {
        let (a, b) = (h[at(k, k)], h[at(k + 1, k)]);
        let rho = a.abs().hypot(b.abs());
        let (c, s) = if rho == 0.0 {
            (1.0, Complex::ZERO)
        } else if a.abs() == 0.0 {
            (0.0, Complex::real(1.0))
        } else {
            let phase = a.scale(1.0 / a.abs());
            (a.abs() / rho, phase.mul(b.conj()).scale(1.0 / rho))
        };
        // Rows k, k+1 ← G · rows, with G = [[c, s], [-s̄, c]].
        for j in k..=hi {
            let (x, y) = (h[at(k, j)], h[at(k + 1, j)]);
            h[at(k, j)] = x.scale(c).add(s.mul(y));
            h[at(k + 1, j)] = y.scale(c).sub(s.conj().mul(x));
        }
        rots.push((c, s));
    }
    for (idx, &(c, s)) in rots.iter().enumerate() {
        let k = lo + idx;
        // Columns k, k+1 ← columns · Gᴴ, with Gᴴ = [[c, -s], [s̄, c]].
        for i in lo..=(k + 1).min(hi) {
            let (x, y) = (h[at(i, k)], h[at(i, k + 1)]);
            h[at(i, k)] = x.scale(c).add(y.mul(s.conj()));
            h[at(i, k + 1)] = y.scale(c).sub(x.mul(s));
        }
    }
    for k in lo..=hi {
        h[at(k, k)] = h[at(k, k)].add(mu);
    }
}

/// Householder reduction of a real matrix to upper Hessenberg form (similar, so the same eigenvalues).
fn hessenberg(a: &[f64], n: usize) -> Vec<f64> {
    let mut h = a.to_vec();
    let at = |i: usize, j: usize| i * n + j;
    for k in 0..n.saturating_sub(2) {
        let norm = ((k + 1)..n).map(|i| h[at(i, k)].powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = if h[at(k + 1, k)] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = ((k + 1)..n).map(|i| h[at(i, k)]).collect();
        v[0] -= alpha;
        let vnorm2: f64 = v.iter().map(|x| x * x).sum();
        if vnorm2 == 0.0 {
            continue;
        }
        // H ← P H P with P = I - 2 v vᵀ / (vᵀ v) acting on rows/columns k+1..n.
        for j in 0..n {
            let dot: f64 = v.iter().enumerate().map(|(r, vi)| vi * h[at(k + 1 + r, j)]).sum();
            let f = 2.0 * dot / vnorm2;
            for (r, vi) in v.iter().enumerate() {
                h[at(k + 1 + r, j)] -= f * vi;
            }
        }
        for i in 0..n {
            let dot: f64 = v.iter().enumerate().map(|(r, vi)| vi * h[at(i, k + 1 + r)]).sum();
            let f = 2.0 * dot / vnorm2;
            for (r, vi) in v.iter().enumerate() {
                h[at(i, k + 1 + r)] -= f * vi;
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use circuitscope_kernels::rng::SplitMix64;

    fn sorted(mut v: Vec<Complex>) -> Vec<(f64, f64)> {
        v.sort_by(|a, b| (a.re, a.im).partial_cmp(&(b.re, b.im)).unwrap());
        v.into_iter().map(|z| (z.re, z.im)).collect()
    }

    #[test]
    fn known_spectra() {
        // A rotation by 90°: ±i.
        let e = sorted(eigenvalues(&[0., -1., 1., 0.], 2).unwrap());
        assert!((e[0].0).abs() < 1e-12 && (e[0].1 + 1.0).abs() < 1e-12 && (e[1].1 - 1.0).abs() < 1e-12);
        // Upper triangular: its diagonal.
        let e = sorted(eigenvalues(&[3., 1., 2., 0., -1., 5., 0., 0., 2.], 3).unwrap());
        let re: Vec<f64> = e.iter().map(|z| z.0).collect();
        assert!(
            re.iter().zip([-1., 2., 3.]).all(|(a, b)| (a - b).abs() < 1e-10),
            "{re:?}"
        );
        // A companion matrix of (x-1)(x-2)(x-3)(x-4) = x⁴ - 10x³ + 35x² - 50x + 24.
        let c = [10., -35., 50., -24., 1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0.];
        let e = sorted(eigenvalues(&c, 4).unwrap());
        for (z, want) in e.iter().zip([1., 2., 3., 4.]) {
            assert!((z.0 - want).abs() < 1e-8 && z.1.abs() < 1e-8, "{e:?}");
        }
    }

    #[test]
    fn random_matrices_keep_trace_and_frobenius_bound() {
        let mut rng = SplitMix64::new(7);
        for n in [1usize, 2, 5, 16, 64] {
            let a: Vec<f64> = (0..n * n).map(|_| rng.uniform_f32(-1.0, 1.0) as f64).collect();
            let e = eigenvalues(&a, n).unwrap();
            assert_eq!(e.len(), n);
            let trace: f64 = (0..n).map(|i| a[i * n + i]).sum();
            let sum_re: f64 = e.iter().map(|z| z.re).sum();
            let sum_im: f64 = e.iter().map(|z| z.im).sum();
            assert!((trace - sum_re).abs() < 1e-9 * n as f64, "n={n}");
            assert!(sum_im.abs() < 1e-9 * n as f64);
            // Schur: Σ|λ|² ≤ ‖A‖_F².
            let frob2: f64 = a.iter().map(|x| x * x).sum();
            assert!(e.iter().map(|z| z.abs().powi(2)).sum::<f64>() <= frob2 * (1.0 + 1e-9));
            // tr(A²) = Σ λ².
            let tr2: f64 = (0..n)
                .flat_map(|i| (0..n).map(move |k| (i, k)))
                .map(|(i, k)| a[i * n + k] * a[k * n + i])
                .sum();
            let sum_sq: f64 = e.iter().map(|z| z.re * z.re - z.im * z.im).sum();
            assert!((tr2 - sum_sq).abs() < 1e-8 * (1.0 + tr2.abs()), "n={n}");
        }
    }
}
