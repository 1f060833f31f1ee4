//! AbsTopK activation sparsity (spec A.3): keep the k entries of largest |x| along the last dim, signs kept.

use candle_core::{Result, Tensor};

/// x: (..., dim) → same shape, all but the k largest-magnitude entries of each row zeroed.
///
/// When x carries an autograd graph the result is `x * mask`, so that gradients flow to the kept entries as
/// through torch's topk-scatter; otherwise the kept values are written directly. Ties at the boundary keep the
/// lowest index (torch's CPU choice is unspecified there, see spec A.3).
pub fn abs_topk(x: &Tensor, k: usize) -> Result<Tensor> {
    let dim = *x.dims().last().unwrap_or(&0);
    if dim == 0 || k >= dim {
        return Ok(x.clone());
    }
    let values: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let keep_grad = x.track_op();
    let mut out = vec![0f32; values.len()];
    topk_rows(&values, &mut out, dim, k, keep_grad);
    let out = Tensor::from_vec(out, x.shape(), x.device())?;
    if keep_grad {
        x.mul(&out)
    } else {
        Ok(out)
    }
}

/// dst ← the top-k entries of each row of src (or 1.0 at their places when `mask`), zeros elsewhere.
fn topk_rows(src: &[f32], dst: &mut [f32], dim: usize, k: usize, mask: bool) {
    circuitscope_kernels::abs_topk_rows(src, dst, dim, k, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn keeps_largest_magnitudes_with_sign() {
        let x = Tensor::new(&[[1f32, -5., 3., 0.5], [2., 2., 2., -1.]], &Device::Cpu).unwrap();
        let y: Vec<Vec<f32>> = abs_topk(&x, 2).unwrap().to_vec2().unwrap();
        assert_eq!(y[0], vec![0., -5., 3., 0.]);
        assert_eq!(y[1], vec![2., 2., 0., 0.]);
        let z: Vec<Vec<f32>> = abs_topk(&x, 0).unwrap().to_vec2().unwrap();
        assert_eq!(z[0], vec![0.; 4]);
    }

    #[test]
    fn gradient_flows_to_kept_entries_only() {
        let x = Var::new(&[[1f32, -5., 3., 0.5]], &Device::Cpu).unwrap();
        let y = abs_topk(x.as_tensor(), 2).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<Vec<f32>> = grads.get(x.as_tensor()).unwrap().to_vec2().unwrap();
        assert_eq!(g[0], vec![0., 1., 1., 0.]);
    }

    #[test]
    fn large_rows_match_sorting() {
        let v: Vec<f32> = (0..3 * 4096).map(|i| ((i * 7919) % 1000) as f32 - 500.0).collect();
        let x = Tensor::from_vec(v.clone(), (3, 4096), &Device::Cpu).unwrap();
        let y: Vec<Vec<f32>> = abs_topk(&x, 1024).unwrap().to_vec2().unwrap();
        for (r, row) in y.iter().enumerate() {
            assert_eq!(row.iter().filter(|v| **v != 0.0).count(), 1024);
            let src = &v[r * 4096..(r + 1) * 4096];
            let mut mags: Vec<f32> = src.iter().map(|x| x.abs()).collect();
            mags.sort_by(|a, b| b.total_cmp(a));
            let kept_min = row
                .iter()
                .filter(|v| **v != 0.0)
                .map(|v| v.abs())
                .fold(f32::INFINITY, f32::min);
            assert_eq!(kept_min, mags[1023]);
        }
    }
}
