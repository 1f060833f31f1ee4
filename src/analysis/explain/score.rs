//! How well a node's patterns predict its activations on held-out text: the Pearson correlation of predicted
//! and real activations, and per side the precision and recall of "fires" (an activation of at least half the
//! side's strongest exemplar).

use serde::{Deserialize, Serialize};

use super::pattern::PatternTrie;

/// Precision and recall of one side's "fires" on the held-out tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FireScore {
    /// The magnitude that counts as firing: half the side's strongest exemplar.
    pub threshold: f32,
    /// Of the tokens predicted to fire, the share that really does (None when none is predicted).
    pub precision: Option<f32>,
    /// Of the tokens that really fire, the share predicted (None when none fires).
    pub recall: Option<f32>,
    /// Held-out tokens that really fire.
    pub fired: u32,
    /// Held-out tokens predicted to fire.
    pub predicted: u32,
}

/// Pearson's correlation; None when either side is constant or there are fewer than two values.
pub fn pearson(a: &[f32], b: &[f32]) -> Option<f32> {
    let n = a.len().min(b.len());
    if n < 2 {
        return None;
    }
    let mean = |v: &[f32]| v[..n].iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0f64, 0f64, 0f64);
    for i in 0..n {
        let (x, y) = (a[i] as f64 - ma, b[i] as f64 - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    // Relative to the data's scale, so that float noise on a constant reads as constant.
    let tiny = |s: f64, m: f64| s <= 1e-12 * n as f64 * (1.0 + m * m);
    if tiny(saa, ma) || tiny(sbb, mb) {
        return None;
    }
    Some((sab / (saa.sqrt() * sbb.sqrt())) as f32)
}

/// The predictions of a node's two tries at every token of `tokens` (cut into sequences of `seq_len`, each
/// matched on its own): positive magnitude minus negative magnitude.
pub fn predict(tokens: &[u32], seq_len: usize, pos: &PatternTrie, neg: &PatternTrie) -> Vec<f32> {
    let mut out = Vec::with_capacity(tokens.len());
    for seq in tokens.chunks(seq_len.max(1)) {
        for t in 0..seq.len() {
            out.push(pos.predict(seq, t) - neg.predict(seq, t));
        }
    }
    out
}

/// "Fires" scores of one side: `sign` turns raw values into the side's magnitudes.
pub fn fire_score(real: &[f32], predicted: &[f32], sign: f32, threshold: f32) -> FireScore {
    let (mut fired, mut pred, mut both) = (0u32, 0u32, 0u32);
    for (&r, &p) in real.iter().zip(predicted) {
        let r = sign * r >= threshold;
        let p = sign * p >= threshold;
        fired += r as u32;
        pred += p as u32;
        both += (r && p) as u32;
    }
    let share = |num: u32, den: u32| (den > 0).then(|| num as f32 / den as f32);
    FireScore {
        threshold,
        precision: share(both, pred),
        recall: share(both, fired),
        fired,
        predicted: pred,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_of_lines_and_constants() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-6);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-6);
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0], &[1.0]), None);
    }

    #[test]
    fn fire_scores_count_hits() {
        let real = [1.0, 0.0, 1.0, 0.0];
        let pred = [1.0, 1.0, 0.0, 0.0];
        let s = fire_score(&real, &pred, 1.0, 0.5);
        assert_eq!(
            (s.precision, s.recall, s.fired, s.predicted),
            (Some(0.5), Some(0.5), 2, 2)
        );
        let none = fire_score(&real, &[0.0; 4], 1.0, 0.5);
        assert_eq!((none.precision, none.recall), (None, Some(0.0)));
    }
}
