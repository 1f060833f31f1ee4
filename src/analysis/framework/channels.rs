//! An attention score is a sum over channels, s_ij = Σ_c q_i\[c\]·k_j\[c\] / sqrt(d_head): in a weight-sparse model
//! only a few channels are live, and the paper states its attention mechanisms per channel pair. This splits
//! each head's scores on a prompt into those terms.

use serde::Serialize;

use super::weights::HeadWeights;

/// One q·k channel pair of a head: q channel `channel` times k channel `channel`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChannelTerm {
    /// The channel within the head (the q and k node index is `head * d_head + channel`).
    pub channel: usize,
    /// The term's contribution to the score, weighted by the head's attention and averaged over queries:
    /// (1/T) Σ_i Σ_j p_ij q_i\[c\] k_j\[c\] / sqrt(d_head).
    pub weighted: f32,
    /// The mean |q_i\[c\] k_j\[c\]| / sqrt(d_head) over the causal (query, key) pairs.
    pub mean_abs: f32,
}

/// Channels whose q column and k column both carry a nonzero weight: the only pairs that can ever score.
pub fn live_channels(h: &HeadWeights) -> Vec<usize> {
    let nonzero = |m: &super::mat::Mat, c: usize| (0..m.rows).any(|r| m.at(r, c) != 0.0);
    (0..h.w_q.cols)
        .filter(|&c| nonzero(&h.w_q, c) && nonzero(&h.w_k, c))
        .collect()
}

/// Head `head`'s channel terms on one prompt, largest |weighted| first: `q` and `k` are the layer's recorded
/// (T, n_head·d_head) queries and keys, `pattern` the head's (T, T) attention. Channels whose terms are all zero
/// are left out.
pub fn channel_terms(q: &[f32], k: &[f32], pattern: &[f32], t: usize, head: usize, d_head: usize) -> Vec<ChannelTerm> {
    let width = q.len().checked_div(t).unwrap_or(0);
    let scale = 1.0 / (d_head as f64).sqrt();
    let pairs = (t * (t + 1) / 2).max(1) as f64;
    let mut out = Vec::new();
    for c in 0..d_head {
        let col = head * d_head + c;
        let (mut weighted, mut abs) = (0f64, 0f64);
        for i in 0..t {
            let qi = q[i * width + col] as f64;
            if qi == 0.0 {
                continue;
            }
            for j in 0..=i {
                let term = qi * k[j * width + col] as f64 * scale;
                weighted += pattern[i * t + j] as f64 * term;
                abs += term.abs();
            }
        }
        if abs > 0.0 {
            out.push(ChannelTerm {
                channel: c,
                weighted: (weighted / t.max(1) as f64) as f32,
                mean_abs: (abs / pairs) as f32,
            });
        }
    }
    out.sort_by(|a, b| {
        b.weighted
            .abs()
            .total_cmp(&a.weighted.abs())
            .then(a.channel.cmp(&b.channel))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_sum_to_the_weighted_score() {
        // Two heads of 2 channels, T = 2; only head 1 is read.
        let (t, dh) = (2, 2);
        let q = [0., 0., 1., 2., 0., 0., 3., 0.];
        let k = [0., 0., 1., 1., 0., 0., 2., 5.];
        let pattern = [1., 0., 0.25, 0.75];
        let terms = channel_terms(&q, &k, &pattern, t, 1, dh);
        let s = 1.0 / 2f64.sqrt();
        // Channel 0: query 0: 1·1; query 1: 3·1 (p .25), 3·2 (p .75). Channel 1: query 0: 2·1; query 1: 0.
        let w0 = ((1.0 + 0.25 * 3.0 + 0.75 * 6.0) * s / 2.0) as f32;
        let w1 = (2.0 * s / 2.0) as f32;
        assert_eq!(terms.len(), 2);
        assert_eq!(terms[0].channel, 0);
        assert!((terms[0].weighted - w0).abs() < 1e-6);
        assert!((terms[1].weighted - w1).abs() < 1e-6);
    }
}
