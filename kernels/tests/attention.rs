//! The fused attention kernel against a naive f64 implementation, across head sizes (the d_head = 16 path is
//! specialised), sinks, and AbsTopK-like sparse queries/keys/values.

use circuitscope_kernels::{causal_attention, causal_attention_strided, AttentionShape};
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
    let mut rng = circuitscope_kernels::SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let u = rng.next_f64();
            let w = rng.next_f64();
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

/// Σ R ⊙ attention(q, k, v) in f64, for finite differences.
#[allow(clippy::too_many_arguments)]
fn objective(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    r: &[f64],
    t: usize,
    nh: usize,
    dh: usize,
    scale: f64,
    sink: Option<&[f64]>,
) -> f64 {
    let a = nh * dh;
    let mut total = 0.0;
    for h in 0..nh {
        for i in 0..t {
            let s: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..dh)
                        .map(|c| q[i * a + h * dh + c] * k[j * a + h * dh + c])
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let sl = sink.map(|s| s[h]);
            let m = s.iter().copied().chain(sl).fold(f64::NEG_INFINITY, f64::max);
            let denom: f64 = s.iter().map(|x| (x - m).exp()).sum::<f64>() + sl.map(|x| (x - m).exp()).unwrap_or(0.0);
            for c in 0..dh {
                let y: f64 = (0..=i).map(|j| (s[j] - m).exp() / denom * v[j * a + h * dh + c]).sum();
                total += r[i * a + h * dh + c] * y;
            }
        }
    }
    total
}

#[test]
fn backward_matches_finite_differences() {
    use circuitscope_kernels::causal_attention_backward;
    for (t, nh, dh, with_sink) in [(5, 2, 4, true), (7, 3, 16, true), (6, 2, 8, false), (80, 2, 16, true)] {
        let a = nh * dh;
        let to64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
        let (q, k, v) = (values(11, t * a, 0.5), values(12, t * a, 0.7), values(13, t * a, 0.6));
        let r = values(14, t * a, 1.0);
        let sink = values(15, nh, 1.0);
        let scale = 1.0 / (dh as f32).sqrt();
        let (mut dq, mut dk, mut dv, mut ds) =
            (vec![0f32; t * a], vec![0f32; t * a], vec![0f32; t * a], vec![0f32; nh]);
        let shape = AttentionShape {
            t,
            n_head: nh,
            d_head: dh,
        };
        let sink_opt = with_sink.then_some(sink.as_slice());
        causal_attention_backward(
            &q, &k, &v, shape, scale, sink_opt, &r, &mut dq, &mut dk, &mut dv, &mut ds,
        )
        .unwrap();
        let (q64, k64, v64, r64, s64) = (to64(q), to64(k), to64(v), to64(r), to64(sink));
        let f = |q: &[f64], k: &[f64], v: &[f64], s: &[f64]| {
            objective(q, k, v, &r64, t, nh, dh, scale as f64, with_sink.then_some(s))
        };
        let eps = 1e-5;
        let check = |grad: &[f32], which: usize| {
            for idx in (0..t * a).step_by(7) {
                let mut bufs = [q64.clone(), k64.clone(), v64.clone()];
                bufs[which][idx] += eps;
                let up = f(&bufs[0], &bufs[1], &bufs[2], &s64);
                bufs[which][idx] -= 2.0 * eps;
                let down = f(&bufs[0], &bufs[1], &bufs[2], &s64);
                let num = (up - down) / (2.0 * eps);
                assert!(
                    (num - grad[idx] as f64).abs() < 1e-3 * (1.0 + num.abs()),
                    "t={t} dh={dh} input {which} [{idx}]: {num} vs {}",
                    grad[idx]
                );
            }
        };
        check(&dq, 0);
        check(&dk, 1);
        check(&dv, 2);
        if with_sink {
            for h in 0..nh {
                let mut s = s64.clone();
                s[h] += eps;
                let up = f(&q64, &k64, &v64, &s);
                s[h] -= 2.0 * eps;
                let down = f(&q64, &k64, &v64, &s);
                let num = (up - down) / (2.0 * eps);
                assert!(
                    (num - ds[h] as f64).abs() < 1e-3 * (1.0 + num.abs()),
                    "sink {h}: {num} vs {}",
                    ds[h]
                );
            }
        }
    }
}

/// q, k, v read in place from one (T, 3A) buffer give what the same three copied out give, on both the
/// d_head = 16 path and the general one; bad strides and short buffers are errors.
#[test]
fn strided_inputs_match_copies() {
    for (t, nh, dh) in [(40, 4, 16), (23, 3, 8)] {
        let a = nh * dh;
        let qkv = values(7, t * 3 * a, 0.3);
        let part = |p: usize| -> Vec<f32> { qkv.chunks(3 * a).flat_map(|r| r[p * a..(p + 1) * a].to_vec()).collect() };
        let (q, k, v) = (part(0), part(1), part(2));
        let shape = AttentionShape {
            t,
            n_head: nh,
            d_head: dh,
        };
        let sink = values(8, nh, 1.0);
        let mut want = vec![0f32; t * a];
        causal_attention(&q, &k, &v, shape, 0.3, Some(&sink), &mut want).unwrap();
        let mut got = vec![f32::NAN; t * a];
        causal_attention_strided(&qkv, &qkv[a..], &qkv[2 * a..], 3 * a, shape, 0.3, Some(&sink), &mut got).unwrap();
        assert_eq!(got, want, "t={t} heads={nh}x{dh}");
        assert!(causal_attention_strided(&qkv, &qkv[a..], &qkv[2 * a..], a - 1, shape, 0.3, None, &mut got).is_err());
        let short = &qkv[2 * a + 1..];
        assert!(causal_attention_strided(&qkv, &qkv[a..], short, 3 * a, shape, 0.3, None, &mut got).is_err());
    }
}
