//! AbsTopK activation sparsity (spec A.3): keep the k entries of largest |x| along the last dim, signs kept.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

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
    if k == 0 {
        return x.zeros_like();
    }
    let values: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let keep_grad = x.track_op();
    let mut out = vec![0f32; values.len()];
    let fill = |scratch: &mut Scratch, (row, out): (&[f32], &mut [f32])| {
        let (threshold, above) = kth_largest_magnitude(row, k, scratch);
        // Branch-free first pass (which entries are kept is data-dependent and mispredicts); boundary ties,
        // usually one entry, are filled lowest index first in a second pass.
        for (v, o) in row.iter().zip(out.iter_mut()) {
            let kept = magnitude_bits(*v) > threshold;
            let value = if keep_grad { 1.0 } else { *v };
            *o = if kept { value } else { 0.0 };
        }
        let mut ties_left = k - above;
        for (v, o) in row.iter().zip(out.iter_mut()) {
            if ties_left == 0 {
                break;
            }
            if magnitude_bits(*v) == threshold {
                *o = if keep_grad { 1.0 } else { *v };
                ties_left -= 1;
            }
        }
    };
    if values.len() >= 1 << 15 {
        values
            .par_chunks(dim)
            .zip(out.par_chunks_mut(dim))
            .for_each_init(Scratch::default, fill);
    } else {
        let mut scratch = Scratch::default();
        values
            .chunks(dim)
            .zip(out.chunks_mut(dim))
            .for_each(|p| fill(&mut scratch, p));
    }
    let out = Tensor::from_vec(out, x.shape(), x.device())?;
    if keep_grad {
        x.mul(&out)
    } else {
        Ok(out)
    }
}

/// |x| as bits: for non-negative floats the integer order is the float order, and integers select faster.
#[inline(always)]
fn magnitude_bits(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

const BUCKET_SHIFT: u32 = 21;
const BUCKETS: usize = 1 << (31 - BUCKET_SHIFT);

struct Scratch {
    hist: Vec<u32>,
    candidates: Vec<u32>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            hist: vec![0; 2 * BUCKETS],
            candidates: Vec::new(),
        }
    }
}

/// The magnitude bits of the k-th largest |x| (1 ≤ k ≤ len) and how many entries lie strictly above it: a radix pass over the exponent and top mantissa
/// bits finds the bucket holding it, then a selection runs within that bucket only.
fn kth_largest_magnitude(row: &[f32], k: usize, s: &mut Scratch) -> (u32, usize) {
    // Two interleaved histograms: neighbouring values often share a bucket, and alternating between two
    // counters keeps each increment from waiting on the previous one.
    s.hist.fill(0);
    let (h0, h1) = s.hist.split_at_mut(BUCKETS);
    let mut pairs = row.chunks_exact(2);
    for p in &mut pairs {
        h0[(magnitude_bits(p[0]) >> BUCKET_SHIFT) as usize] += 1;
        h1[(magnitude_bits(p[1]) >> BUCKET_SHIFT) as usize] += 1;
    }
    for v in pairs.remainder() {
        h0[(magnitude_bits(*v) >> BUCKET_SHIFT) as usize] += 1;
    }
    let count = |b: usize| (h0[b] + h1[b]) as usize;
    let mut above = 0usize;
    let mut bucket = BUCKETS - 1;
    while above + count(bucket) < k {
        above += count(bucket);
        bucket -= 1;
    }
    s.candidates.clear();
    s.candidates.extend(
        row.iter()
            .map(|v| magnitude_bits(*v))
            .filter(|b| (b >> BUCKET_SHIFT) as usize == bucket),
    );
    let need = k - above;
    let n = s.candidates.len();
    let (_, &mut threshold, larger) = s.candidates.select_nth_unstable(n - need);
    (threshold, above + larger.iter().filter(|&&b| b > threshold).count())
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
