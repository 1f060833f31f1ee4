//! A plain row-major f32 matrix: the framework lens works on weights as matrices in TransformerLens' orientation
//! (inputs on the left: `x · W`), not as the model's `(out, in)` layers. Products of large matrices go through
//! candle's CPU gemm; the rest is small enough for loops.

use candle_core::{Device, Tensor};

use super::{FrameworkError, ShapeProblem};

/// A dense `(rows, cols)` matrix, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub data: Vec<f32>,
}

impl Mat {
    /// An all-zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Mat {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// A matrix from row-major values; `data.len()` must be `rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self, FrameworkError> {
        if data.len() != rows * cols {
            return Err(FrameworkError::Shape(ShapeProblem::Data {
                len: data.len(),
                rows,
                cols,
            }));
        }
        Ok(Mat { rows, cols, data })
    }

    /// The value at row `r`, column `c`.
    #[inline]
    pub fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The transpose.
    pub fn t(&self) -> Mat {
        let mut out = Mat::zeros(self.cols, self.rows);
        for r in 0..self.rows {
            for c in 0..self.cols {
                out.data[c * self.rows + r] = self.at(r, c);
            }
        }
        out
    }

    /// `self (n, k) · other (k, m)` → `(n, m)`.
    pub fn matmul(&self, other: &Mat) -> Result<Mat, FrameworkError> {
        if self.cols != other.rows {
            return Err(FrameworkError::Shape(ShapeProblem::Product {
                left: (self.rows, self.cols),
                right: (other.rows, other.cols),
            }));
        }
        Mat::from_tensor(&self.to_tensor()?.matmul(&other.to_tensor()?)?)
    }

    /// The matrix as a `(rows, cols)` CPU tensor (one copy): large operands used in many products (W_E, W_U) are
    /// converted once and multiplied as tensors.
    pub fn to_tensor(&self) -> Result<Tensor, FrameworkError> {
        Ok(Tensor::from_slice(&self.data, (self.rows, self.cols), &Device::Cpu)?)
    }

    /// A 2-d tensor as a matrix.
    pub fn from_tensor(t: &Tensor) -> Result<Mat, FrameworkError> {
        let (rows, cols) = t.dims2()?;
        Mat::new(rows, cols, t.flatten_all()?.to_vec1()?)
    }

    /// Columns `start..start + n` as a `(rows, n)` matrix.
    pub fn col_block(&self, start: usize, n: usize) -> Mat {
        let mut data = Vec::with_capacity(self.rows * n);
        for r in 0..self.rows {
            data.extend_from_slice(&self.row(r)[start..start + n]);
        }
        Mat {
            rows: self.rows,
            cols: n,
            data,
        }
    }

    /// Rows `start..start + n` as a `(n, cols)` matrix.
    pub fn row_block(&self, start: usize, n: usize) -> Mat {
        Mat {
            rows: n,
            cols: self.cols,
            data: self.data[start * self.cols..(start + n) * self.cols].to_vec(),
        }
    }

    /// The matrices side by side, `(rows, Σ cols)`; all must have `rows` rows.
    pub fn hcat(parts: &[&Mat], rows: usize) -> Result<Mat, FrameworkError> {
        if let Some(m) = parts.iter().find(|m| m.rows != rows) {
            return Err(FrameworkError::Shape(ShapeProblem::Data {
                len: m.data.len(),
                rows,
                cols: m.cols,
            }));
        }
        let cols: usize = parts.iter().map(|m| m.cols).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for m in parts {
                data.extend_from_slice(m.row(r));
            }
        }
        Mat::new(rows, cols, data)
    }

    /// The matrices stacked, `(Σ rows, cols)`; all must have `cols` columns.
    pub fn vcat(parts: &[&Mat], cols: usize) -> Result<Mat, FrameworkError> {
        let mut data = Vec::new();
        let mut rows = 0;
        for m in parts {
            if m.cols != cols {
                return Err(FrameworkError::Shape(ShapeProblem::Data {
                    len: m.data.len(),
                    rows: m.rows,
                    cols,
                }));
            }
            data.extend_from_slice(&m.data);
            rows += m.rows;
        }
        Mat::new(rows, cols, data)
    }

    /// The Gram matrix `selfᵀ · self` (cols, cols), accumulated in f64.
    pub fn gram(&self) -> Vec<f64> {
        let n = self.cols;
        let mut g = vec![0f64; n * n];
        for r in 0..self.rows {
            let row = self.row(r);
            for i in 0..n {
                let ri = row[i] as f64;
                if ri == 0.0 {
                    continue;
                }
                for j in 0..n {
                    g[i * n + j] += ri * row[j] as f64;
                }
            }
        }
        g
    }

    /// Frobenius norm, accumulated in f64.
    pub fn frobenius(&self) -> f64 {
        self.data.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt()
    }

    /// The mean of each column (over rows).
    pub fn col_means(&self) -> Vec<f32> {
        let mut m = vec![0f64; self.cols];
        for r in 0..self.rows {
            for (acc, &v) in m.iter_mut().zip(self.row(r)) {
                *acc += v as f64;
            }
        }
        m.iter().map(|s| (s / self.rows.max(1) as f64) as f32).collect()
    }

    /// Subtracts each row's mean from it (centres the rows).
    pub fn centre_rows(&mut self) {
        let cols = self.cols.max(1);
        for row in self.data.chunks_mut(cols) {
            let mean = (row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64) as f32;
            row.iter_mut().for_each(|v| *v -= mean);
        }
    }

    /// Subtracts each column's mean from it (centres the columns).
    pub fn centre_cols(&mut self) {
        let means = self.col_means();
        let cols = self.cols.max(1);
        for row in self.data.chunks_mut(cols) {
            row.iter_mut().zip(&means).for_each(|(v, m)| *v -= m);
        }
    }

    /// Multiplies row `r` by `scale[r]`.
    pub fn scale_rows(&mut self, scale: &[f32]) {
        let cols = self.cols.max(1);
        for (row, s) in self.data.chunks_mut(cols).zip(scale) {
            row.iter_mut().for_each(|v| *v *= s);
        }
    }

    /// `v (rows) · self` → (cols), accumulated in f64.
    pub fn left_mul(&self, v: &[f32]) -> Vec<f32> {
        let mut out = vec![0f64; self.cols];
        for (r, &x) in v.iter().enumerate().take(self.rows) {
            if x == 0.0 {
                continue;
            }
            for (acc, &w) in out.iter_mut().zip(self.row(r)) {
                *acc += x as f64 * w as f64;
            }
        }
        out.into_iter().map(|x| x as f32).collect()
    }

    /// Column `c` as a vector.
    pub fn col(&self, c: usize) -> Vec<f32> {
        (0..self.rows).map(|r| self.at(r, c)).collect()
    }
}

/// `tr(A · B)` for square `n x n` matrices given row-major in f64.
pub(super) fn trace_of_product(a: &[f64], b: &[f64], n: usize) -> f64 {
    let mut s = 0.0;
    for i in 0..n {
        for k in 0..n {
            s += a[i * n + k] * b[k * n + i];
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_transpose_and_centring() {
        let a = Mat::new(2, 3, vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let p = a.matmul(&a.t()).unwrap();
        assert_eq!(p.data, vec![14., 32., 32., 77.]);
        let mut c = a.clone();
        c.centre_rows();
        assert_eq!(c.data, vec![-1., 0., 1., -1., 0., 1.]);
        let mut c = a.clone();
        c.centre_cols();
        assert_eq!(c.data, vec![-1.5, -1.5, -1.5, 1.5, 1.5, 1.5]);
        match a.matmul(&a) {
            Err(FrameworkError::Shape(ShapeProblem::Product { left, right })) => {
                assert_eq!((left, right), ((2, 3), (2, 3)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Mat::new(2, 2, vec![1.0]).unwrap_err().to_string(),
            "framework lens: 1 values for a 2x2 matrix"
        );
        assert_eq!(a.left_mul(&[1., -1.]), vec![-3., -3., -3.]);
    }
}
