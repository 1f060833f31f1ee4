//! RMSNorm and LayerNorm exactly as the reference builds them (spec H.1.1).

use candle_core::{DType, Result, Tensor, D};

/// torch.nn.RMSNorm(dim) with eps=None uses the dtype's machine epsilon.
pub const RMS_EPS: f64 = f32::EPSILON as f64;
/// LayerNorm's epsilon, as in the reference (torch's default).
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// A normalisation layer over the last dimension: RMSNorm or LayerNorm, as the config chooses.
#[derive(Clone)]
pub enum Norm {
    /// RMSNorm with eps [`RMS_EPS`]: `x / sqrt(mean(x²) + eps) * weight`.
    Rms {
        /// The gain, `(dim)`.
        weight: Tensor,
    },
    /// LayerNorm with eps [`LAYER_NORM_EPS`]: `(x - mean) / sqrt(var + eps) * weight + bias`.
    Layer {
        /// The gain, `(dim)`.
        weight: Tensor,
        /// The bias, `(dim)`, when the config has `ln_bias`.
        bias: Option<Tensor>,
    },
}

impl Norm {
    /// x: (..., dim) → (..., dim), normalised over the last dim.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        debug_assert_eq!(x.dtype(), DType::F32);
        match self {
            Norm::Rms { weight } if !x.track_op() && !weight.track_op() => {
                let dims = x.dims().to_vec();
                let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
                let wv: Vec<f32> = weight.to_vec1()?;
                let mut out = vec![0f32; xv.len()];
                circuitscope_kernels::rms_norm_rows(&xv, &wv, RMS_EPS as f32, &mut out);
                Tensor::from_vec(out, dims, x.device())
            }
            Norm::Rms { weight } => {
                let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
                let inv = (ms + RMS_EPS)?.sqrt()?.recip()?;
                x.broadcast_mul(&inv)?.broadcast_mul(weight)
            }
            Norm::Layer { weight, bias } => {
                let mean = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                let y = xc
                    .broadcast_div(&(var + LAYER_NORM_EPS)?.sqrt()?)?
                    .broadcast_mul(weight)?;
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}
