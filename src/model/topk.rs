//! AbsTopK activation sparsity (spec A.3): keep the k entries of largest |x| along the last dim, signs kept.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// x: (..., dim) → same shape, all but the k largest-magnitude entries of each row zeroed.
///
/// Implemented as `x * mask` so that gradients flow to the kept entries, as torch's topk-scatter does. Ties at
/// the boundary keep the lowest index (torch's CPU choice is unspecified there, see spec A.3).
pub fn abs_topk(x: &Tensor, k: usize) -> Result<Tensor> {
    let dim = *x.dims().last().unwrap_or(&0);
    if dim == 0 || k >= dim {
        return Ok(x.clone());
    }
    if k == 0 {
        return x.zeros_like();
    }
    let values: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let mut mask = vec![0f32; values.len()];
    let fill = |(row, out): (&[f32], &mut [f32])| {
        let mut mags: Vec<f32> = row.iter().map(|v| v.abs()).collect();
        let (_, &mut threshold, _) = mags.select_nth_unstable_by(dim - k, |a, b| a.total_cmp(b));
        let above = row.iter().filter(|v| v.abs() > threshold).count();
        let mut ties_left = k - above;
        for (v, m) in row.iter().zip(out.iter_mut()) {
            let a = v.abs();
            if a > threshold {
                *m = 1.0;
            } else if a == threshold && ties_left > 0 {
                *m = 1.0;
                ties_left -= 1;
            }
        }
    };
    if values.len() >= 1 << 15 {
        values.par_chunks(dim).zip(mask.par_chunks_mut(dim)).for_each(fill);
    } else {
        values.chunks(dim).zip(mask.chunks_mut(dim)).for_each(fill);
    }
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
    x.mul(&mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn keeps_largest_magnitudes_with_sign() {
        let x = Tensor::new(&[[1f32, -5., 3., 0.5], [2., 2., 2., -1.]], &Device::Cpu).unwrap();
        let y: Vec<Vec<f32>> = abs_topk(&x, 2).unwrap().to_vec2().unwrap();
        assert_eq!(y[0], vec![0., -5., 3., 0.]);
        assert_eq!(y[1], vec![2., 2., 0., 0.]);
        let z: Vec<Vec<f32>> = abs_topk(&x, 0).unwrap().to_vec2().unwrap();
        assert_eq!(z[0], vec![0.; 4]);
    }
}
