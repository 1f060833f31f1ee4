//! Linear layers whose weight is either dense (candle matmul) or CSR (our sparse kernel), chosen per matrix by
//! density at load time.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use super::checkpoint::Stored;
use super::sparse_linear::{csr_linear, CsrWeight};

/// A weight matrix (out_features, in_features) in the representation the forward uses.
#[derive(Clone)]
pub enum Weight {
    /// A dense tensor, multiplied with candle's matmul.
    Dense(Tensor),
    /// A CSR matrix, multiplied with the sparse kernels (possibly straight from the memory map).
    Csr(Arc<CsrWeight>),
}

impl Weight {
    /// Picks CSR for matrices with density below `sparse_below`, dense otherwise, converting as needed.
    pub fn from_stored(stored: &Stored, sparse_below: f64) -> crate::model::Result<Self> {
        let density = stored.density()?;
        Ok(match stored {
            Stored::Csr(w) if density < sparse_below => Weight::Csr(w.clone()),
            Stored::Csr(w) => Weight::Dense(w.to_dense()?),
            Stored::Dense(t) if density < sparse_below => Weight::Csr(Arc::new(CsrWeight::from_dense(t)?)),
            Stored::Dense(t) => Weight::Dense(t.clone()),
        })
    }

    /// Whether the forward runs through the CSR kernels.
    pub fn is_sparse(&self) -> bool {
        matches!(self, Weight::Csr(_))
    }

    /// `(out_features, in_features)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Weight::Dense(t) => (t.dims()[0], t.dims()[1]),
            Weight::Csr(w) => (w.rows(), w.cols()),
        }
    }

    /// Row `r` (one output feature's weights over the inputs) as an owned vector; CSR rows are expanded without
    /// copying the rest of the matrix.
    pub fn row(&self, r: usize) -> Result<Vec<f32>> {
        match self {
            Weight::Dense(t) => t.get(r)?.to_vec1(),
            Weight::Csr(w) => {
                if r >= w.rows() {
                    candle_core::bail!("row {r} is out of range ({} rows)", w.rows());
                }
                let v = w.view();
                let mut out = vec![0f32; w.cols()];
                for p in v.row_range(r) {
                    out[v.col_idx()[p] as usize] += v.values()[p];
                }
                Ok(out)
            }
        }
    }

    /// The weight as a dense `(out_features, in_features)` tensor (a copy for CSR weights).
    pub fn to_dense(&self) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => Ok(t.clone()),
            Weight::Csr(w) => w.to_dense(),
        }
    }
}

/// A Linear layer `y = x·Wᵀ + b` with a dense or CSR weight.
#[derive(Clone)]
pub struct Linear {
    /// The weight, `(out_features, in_features)`.
    pub weight: Weight,
    /// The bias, `(out_features)`, when the config has `bias`.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// x: (..., in_features) → (..., out_features); computes x·Wᵀ + b.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Dense(w) => {
                let dims = x.dims().to_vec();
                let (rows, inner) = (dims[..dims.len() - 1].iter().product::<usize>(), dims[dims.len() - 1]);
                let y = x.reshape((rows, inner))?.matmul(&w.t()?)?;
                let mut out_dims = dims;
                *out_dims.last_mut().expect("rank >= 1") = w.dims()[0];
                y.reshape(out_dims)?
            }
            Weight::Csr(w) => csr_linear(x, w)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}
