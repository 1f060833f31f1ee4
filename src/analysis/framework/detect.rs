//! TransformerLens' `head_detector` on attention patterns: previous-token, duplicate-token and induction
//! detection patterns and the "mul" score Σ(pattern ⊙ detection) / Σ pattern (BOS and the current token not
//! excluded), plus the per-token loss and induction loss on repeated random sequences.

use circuitscope_kernels::rng::SplitMix64;
use serde::Serialize;

/// A head detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// Attends to the token just before the query.
    PreviousToken,
    /// Attends to earlier copies of the query's token.
    DuplicateToken,
    /// Attends to the token after an earlier copy of the query's token.
    Induction,
}

impl Detector {
    /// All detectors, in the order the dump writes them.
    pub const ALL: [Detector; 3] = [Detector::PreviousToken, Detector::DuplicateToken, Detector::Induction];

    /// The detector's name in dumps and JSON (`previous_token`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Detector::PreviousToken => "previous_token",
            Detector::DuplicateToken => "duplicate_token",
            Detector::Induction => "induction",
        }
    }

    /// The (T, T) 0/1 detection pattern for `tokens`, row = query, lower-triangular.
    pub fn pattern(self, tokens: &[u32]) -> Vec<f32> {
        let t = tokens.len();
        let mut p = vec![0f32; t * t];
        for i in 0..t {
            for j in 0..=i {
                let hit = match self {
                    Detector::PreviousToken => j + 1 == i,
                    Detector::DuplicateToken => j < i && tokens[j] == tokens[i],
                    // The duplicate pattern shifted one key to the right: j-1 held the query's token.
                    Detector::Induction => j >= 1 && j - 1 < i && tokens[j - 1] == tokens[i],
                };
                if hit {
                    p[i * t + j] = 1.0;
                }
            }
        }
        p
    }
}

/// The "mul" score of one head's (T, T) pattern against a detection pattern: Σ(pattern ⊙ detection) / Σ pattern.
/// Zero for an all-zero pattern.
pub fn score(pattern: &[f32], detection: &[f32]) -> f32 {
    let total: f64 = pattern.iter().map(|&p| p as f64).sum();
    if total == 0.0 {
        return 0.0;
    }
    let hit: f64 = pattern.iter().zip(detection).map(|(&p, &d)| p as f64 * d as f64).sum();
    (hit / total) as f32
}

/// `n` random token ids below `vocab` followed by the same `n` again, from the project RNG.
pub fn repeated_random_tokens(vocab: usize, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    let first: Vec<u32> = (0..n).map(|_| rng.below(vocab.max(1)) as u32).collect();
    first.iter().chain(&first).copied().collect()
}

/// Next-token loss at each position: `logits (T, V)` row-major → (T - 1) values, `-log softmax(logits[i])[tokens[i+1]]`.
pub fn loss_per_token(logits: &[f32], vocab: usize, tokens: &[u32]) -> Vec<f32> {
    tokens
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let row = &logits[i * vocab..(i + 1) * vocab];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            (lse - row[w[1] as usize] as f64) as f32
        })
        .collect()
}

/// The induction loss of a sequence made of a half repeated once (2n tokens, 2n - 1 losses): the mean loss of
/// the second half's predictions (positions n..2n-1, which induction can make) and of the first half's
/// (positions 0..n-1, which it cannot). None when the sequence is not a half repeated.
pub fn induction_loss(losses: &[f32], tokens: &[u32]) -> Option<(f32, f32)> {
    let n = tokens.len() / 2;
    if n < 2 || tokens.len() != 2 * n || tokens[..n] != tokens[n..] || losses.len() + 1 != tokens.len() {
        return None;
    }
    let mean = |s: &[f32]| s.iter().map(|&x| x as f64).sum::<f64>() as f32 / s.len() as f32;
    Some((mean(&losses[..n - 1]), mean(&losses[n..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_heads_score_one() {
        let tokens = [5u32, 9, 2, 7, 5, 9, 2, 7];
        let t = tokens.len();
        // A previous-token head: query i puts all weight on i-1 (query 0 on itself).
        let mut prev = vec![0f32; t * t];
        prev[0] = 1.0;
        for i in 1..t {
            prev[i * t + i - 1] = 1.0;
        }
        let s = score(&prev, &Detector::PreviousToken.pattern(&tokens));
        assert!((s - 7.0 / 8.0).abs() < 1e-6, "{s}");
        // An induction head on the second half: query i attends to i - 3 (the token after the earlier copy).
        let mut ind = vec![0f32; t * t];
        for i in 0..t {
            let j = if i >= 4 { i - 3 } else { i };
            ind[i * t + j] = 1.0;
        }
        let d = Detector::Induction.pattern(&tokens);
        assert_eq!((4..t).map(|i| d[i * t + i - 3]).sum::<f32>(), 4.0);
        assert!((score(&ind, &d) - 0.5).abs() < 1e-6);
        let dup = Detector::DuplicateToken.pattern(&tokens);
        assert_eq!(dup[4 * t], 1.0);
        assert_eq!(dup.iter().sum::<f32>(), 4.0);
    }

    #[test]
    fn losses_and_halves() {
        // Uniform logits: every loss is ln V.
        let tokens = repeated_random_tokens(16, 5, 1);
        assert_eq!(tokens[..5], tokens[5..]);
        let logits = vec![0f32; tokens.len() * 16];
        let l = loss_per_token(&logits, 16, &tokens);
        assert_eq!(l.len(), 9);
        assert!(l.iter().all(|&x| (x - 16f32.ln()).abs() < 1e-6));
        let (first, second) = induction_loss(&l, &tokens).unwrap();
        assert!((first - second).abs() < 1e-6);
        assert!(induction_loss(&l[..8], &tokens[..9]).is_none());
    }
}
