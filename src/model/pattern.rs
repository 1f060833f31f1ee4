//! Attention patterns (`L.attn.pattern`, TransformerLens's `hook_pattern`): the softmax weights of every head,
//! recorded by the forward pass on request so that no caller recomputes them from q and k.

/// Where the heads' queries and keys lie in a (B·T, stride) buffer of rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct QkLayout {
    /// Sequences in the batch.
    pub b: usize,
    /// Tokens per sequence.
    pub t: usize,
    /// Heads.
    pub n_head: usize,
    /// Channels per head.
    pub d_head: usize,
    /// Floats from one token's row to the next.
    pub stride: usize,
    /// The multiplier of q·k before the softmax ([`crate::model::Config::attn_scale`]).
    pub scale: f32,
}

/// The attention weights (B, H, T, T), row-major, query-major within a head and zero above the diagonal; with a
/// sink, a query's weights sum to one minus the sink's share. `q` and `k` hold the heads side by side from the
/// start of each row (pass the buffer at the right offset).
pub(super) fn attention_pattern(q: &[f32], k: &[f32], lay: QkLayout, sink_logits: Option<&[f32]>) -> Vec<f32> {
    let QkLayout {
        b,
        t,
        n_head,
        d_head: dh,
        stride,
        scale,
    } = lay;
    let mut out = vec![0f32; b * n_head * t * t];
    let mut scores = Vec::with_capacity(t);
    for s in 0..b {
        for h in 0..n_head {
            let sink = sink_logits.map(|l| l[h]);
            for i in 0..t {
                let row = (s * t + i) * stride + h * dh;
                let qi = &q[row..row + dh];
                scores.clear();
                scores.extend((0..=i).map(|j| {
                    let col = (s * t + j) * stride + h * dh;
                    qi.iter().zip(&k[col..col + dh]).map(|(a, b)| a * b).sum::<f32>() * scale
                }));
                let m = scores.iter().copied().chain(sink).fold(f32::NEG_INFINITY, f32::max);
                let z: f32 = scores.iter().map(|s| (s - m).exp()).sum::<f32>() + sink.map_or(0.0, |s| (s - m).exp());
                let dst = ((s * n_head + h) * t + i) * t;
                for (j, sc) in scores.iter().enumerate() {
                    out[dst + j] = (sc - m).exp() / z;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_causal_softmaxes() {
        let (t, n_head, d_head) = (4, 2, 3);
        let stride = n_head * d_head;
        let q: Vec<f32> = (0..t * stride).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.4).collect();
        let k: Vec<f32> = (0..t * stride).map(|i| ((i * 3 % 7) as f32 - 3.0) * 0.3).collect();
        let lay = QkLayout {
            b: 1,
            t,
            n_head,
            d_head,
            stride,
            scale: 1.0 / (d_head as f32).sqrt(),
        };
        let plain = attention_pattern(&q, &k, lay, None);
        let sunk = attention_pattern(&q, &k, lay, Some(&[0.5, -1.0]));
        for h in 0..n_head {
            for i in 0..t {
                let row = &plain[(h * t + i) * t..(h * t + i + 1) * t];
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
                assert!(row[i + 1..].iter().all(|&w| w == 0.0));
                let with_sink: f32 = sunk[(h * t + i) * t..(h * t + i + 1) * t].iter().sum();
                assert!(with_sink < 1.0 && with_sink > 0.0);
            }
        }
        // The first query sees only itself.
        assert_eq!(plain[0], 1.0);
    }

    /// Both forwards record the pattern, agree on it, and it reproduces the attention output: y = pattern · v
    /// (the sink slot carries no value). Recording every activation (`.*`) records no pattern.
    #[test]
    fn forwards_record_the_pattern_that_makes_y() {
        use crate::model::synth::{synth_tensors, SynthShape};
        use crate::model::{Checkpoint, Gpt, Hooks, LoadOptions};
        let mut cfg = SynthShape::Tiny.config();
        cfg.n_layer = 1;
        let ck = Checkpoint {
            path: "<synth>".into(),
            tensors: synth_tensors(&cfg, 0.3, 5).unwrap(),
        };
        let model = Gpt::from_checkpoint(cfg.clone(), &ck, LoadOptions::default()).unwrap();
        let ids = candle_core::Tensor::new(&[[3u32, 17, 5, 99, 3, 40]], &candle_core::Device::Cpu).unwrap();
        let (t, nh, dh, a) = (6, cfg.n_head, cfg.d_head, cfg.attn_width());
        let mut patterns = Vec::new();
        for differentiable in [false, true] {
            let mut hooks = Hooks::recording("0\\.attn\\.(v|y)$").unwrap();
            hooks.set_record_patterns(".*").unwrap();
            hooks.differentiable = differentiable;
            model.forward(&ids, &mut hooks).unwrap();
            let flat = |name: &str| -> Vec<f32> { hooks.recorded[name].flatten_all().unwrap().to_vec1().unwrap() };
            let (p, v, y) = (flat("0.attn.pattern"), flat("0.attn.v"), flat("0.attn.y"));
            assert_eq!(hooks.recorded["0.attn.pattern"].dims(), &[1, nh, t, t]);
            for h in 0..nh {
                for i in 0..t {
                    for c in 0..dh {
                        let want: f32 = (0..t).map(|j| p[(h * t + i) * t + j] * v[j * a + h * dh + c]).sum();
                        let got = y[i * a + h * dh + c];
                        assert!((want - got).abs() < 1e-4, "head {h} query {i}: {want} vs {got}");
                    }
                }
            }
            patterns.push(p);
        }
        // The two forwards compute q and k by different kernels: equal up to rounding.
        let diff = patterns[0]
            .iter()
            .zip(&patterns[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "the forwards' patterns differ by {diff}");
        let mut all = Hooks::recording(".*").unwrap();
        model.forward(&ids, &mut all).unwrap();
        assert!(!all.recorded.keys().any(|k| k.ends_with("pattern")));
    }
}
