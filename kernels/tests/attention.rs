//! The fused attention kernel against a naive f64 implementation, across head sizes (the d_head = 16 path is
//! specialised), sinks, and AbsTopK-like sparse queries/keys/values.

use circuitscope_kernels::{causal_attention, AttentionShape};
use proptest::prelude::*;

#[allow(clippy::too_many_arguments)]
fn naive(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    nh: usize,
    dh: usize,
    scale: f32,
    sink: Option<&[f32]>,
) -> Vec<f32> {
    let a = nh * dh;
    let mut y = vec![0f32; t * a];
    for h in 0..nh {
        for i in 0..t {
            let mut s: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..dh)
                        .map(|c| q[i * a + h * dh + c] as f64 * k[j * a + h * dh + c] as f64)
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let sink_logit = sink.map(|s| s[h] as f64);
            let m = s.iter().copied().chain(sink_logit).fold(f64::NEG_INFINITY, f64::max);
            let mut denom: f64 = sink_logit.map(|x| (x - m).exp()).unwrap_or(0.0);
            for x in s.iter_mut() {
                *x = (*x - m).exp();
                denom += *x;
            }
            for c in 0..dh {
                let num: f64 = (0..=i).map(|j| s[j] * v[j * a + h * dh + c] as f64).sum();
                y[i * a + h * dh + c] = (num / denom) as f32;
            }
        }
    }
    y
}

fn values(seed: u64, n: usize, density: f64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 33) as f64 / (1u64 << 31) as f64;
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let w = (state >> 33) as f64 / (1u64 << 31) as f64;
            if u < density {
                (w * 6.0 - 3.0) as f32
            } else {
                0.0
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn matches_naive(t in 1usize..40, nh in 1usize..6, dh in prop::sample::select(vec![4usize, 8, 16, 5]),
                     density in 0.0f64..1.0, seed in 0u64..1000, with_sink in any::<bool>()) {
        let a = nh * dh;
        let (q, k, v) = (values(seed, t * a, density), values(seed + 1, t * a, density), values(seed + 2, t * a, density));
        let sink: Vec<f32> = values(seed + 3, nh, 1.0);
        let sink = with_sink.then_some(sink.as_slice());
        let scale = 1.0 / (dh as f32).sqrt();
        let mut y = vec![f32::NAN; t * a];
        causal_attention(&q, &k, &v, AttentionShape { t, n_head: nh, d_head: dh }, scale, sink, &mut y).unwrap();
        let want = naive(&q, &k, &v, t, nh, dh, scale, sink);
        for (i, (g, w)) in y.iter().zip(&want).enumerate() {
            prop_assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "entry {i}: {g} vs {w}");
        }
    }
}

#[test]
fn large_parallel_head16() {
    let (t, nh, dh) = (130, 12, 16);
    let a = nh * dh;
    let (q, k, v) = (values(1, t * a, 0.25), values(2, t * a, 0.25), values(3, t * a, 0.25));
    let sink = values(4, nh, 1.0);
    let mut y = vec![0f32; t * a];
    causal_attention(
        &q,
        &k,
        &v,
        AttentionShape {
            t,
            n_head: nh,
            d_head: dh,
        },
        0.25,
        Some(&sink),
        &mut y,
    )
    .unwrap();
    let want = naive(&q, &k, &v, t, nh, dh, 0.25, Some(&sink));
    for (g, w) in y.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
    }
}

#[test]
fn rejects_bad_shapes() {
    let mut y = vec![0f32; 8];
    let shape = AttentionShape {
        t: 2,
        n_head: 2,
        d_head: 2,
    };
    assert!(causal_attention(&[0.0; 8], &[0.0; 7], &[0.0; 8], shape, 1.0, None, &mut y).is_err());
    assert!(causal_attention(&[0.0; 8], &[0.0; 8], &[0.0; 8], shape, 1.0, Some(&[0.0]), &mut y).is_err());
}
