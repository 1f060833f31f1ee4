//! The repetition sweep (the paper's dilution attack): insert a fragment n times (n = 0..=max_n) at one point of
//! a prompt and read every circuit node at the last token and the prediction after each insertion, until the
//! prompt no longer fits the model's context.

use std::collections::BTreeMap;

use super::next_token;
use super::recording::Recorded;
use crate::circuit::NodeId;

/// Why a sweep's insertion could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SweepError {
    /// The byte offset splits a UTF-8 character.
    #[error("the insertion point is inside a character")]
    InsideCharacter,
    /// The byte offset lies beyond the prompt.
    #[error("the insertion point {at} is past the prompt's {len} bytes")]
    PastEnd {
        /// The byte offset asked for.
        at: usize,
        /// The prompt's length in bytes.
        len: usize,
    },
    /// There is nothing to insert.
    #[error("the fragment is empty")]
    EmptyFragment,
}

/// One insertion count's measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    /// How many times the fragment was inserted.
    pub n: usize,
    /// Tokens in the resulting prompt (the x-axis of the sweep's charts).
    pub tokens: usize,
    /// Every measured node's value at the last token.
    pub values: BTreeMap<NodeId, f32>,
    /// Logit of target A minus target B at the last token, when targets were given.
    pub logit_diff: Option<f32>,
    /// The most likely next token, as displayed.
    pub top: String,
    /// Its probability.
    pub top_prob: f32,
}

/// Where a sweep stopped before the count asked for, and why: the prompt with `n` insertions no longer fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepStop {
    /// The first insertion count that was not measured.
    pub n: usize,
    /// Its prompt's length in tokens.
    pub tokens: usize,
    /// The model's context (block_size), which `tokens` exceeds.
    pub context: usize,
}

/// A repetition sweep: where the fragment went, and one measurement per insertion count.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepResult {
    /// The prompt swept (n = 0).
    pub text: String,
    /// The byte offset in `text` where the fragment was inserted.
    pub at: usize,
    /// The fragment inserted.
    pub fragment: String,
    /// The largest insertion count asked for.
    pub max_n: usize,
    /// Measurements for n = 0, 1, …, in order (fewer than max_n + 1 when the sweep stopped).
    pub points: Vec<SweepPoint>,
    /// Set when the sweep stopped before max_n because the prompt outgrew the context.
    pub stop: Option<SweepStop>,
}

impl SweepResult {
    /// The first point whose logit difference has the other sign than at n = 0 (zero counts as a sign of its
    /// own): where the prediction flips. None without targets or without a flip.
    pub fn flip(&self) -> Option<&SweepPoint> {
        let sign = |d: f32| (d > 0.0) as i8 - (d < 0.0) as i8;
        let first = sign(self.points.first()?.logit_diff?);
        self.points
            .iter()
            .skip(1)
            .find(|p| p.logit_diff.is_some_and(|d| sign(d) != first))
    }

    /// The prompt with the fragment inserted `n` times.
    pub fn prompt(&self, n: usize) -> String {
        format!(
            "{}{}{}",
            &self.text[..self.at],
            self.fragment.repeat(n),
            &self.text[self.at..]
        )
    }
}

/// The prompts of a sweep: `fragment` repeated n times at byte `at` of `text`, for n = 0..=max_n.
pub fn insertions(text: &str, at: usize, fragment: &str, max_n: usize) -> Result<Vec<String>, SweepError> {
    if at > text.len() {
        return Err(SweepError::PastEnd { at, len: text.len() });
    }
    if !text.is_char_boundary(at) {
        return Err(SweepError::InsideCharacter);
    }
    if fragment.is_empty() {
        return Err(SweepError::EmptyFragment);
    }
    Ok((0..=max_n)
        .map(|n| format!("{}{}{}", &text[..at], fragment.repeat(n), &text[at..]))
        .collect())
}

/// The measurement of insertion count `n` from its recorded run: each of `nodes` at the last token, the logit
/// difference of `targets` and the most probable next token (shown by `token_text`).
pub fn point(
    n: usize,
    rec: &Recorded,
    nodes: &[NodeId],
    targets: Option<(u32, u32)>,
    token_text: impl Fn(u32) -> String,
) -> SweepPoint {
    let values = nodes
        .iter()
        .map(|node| (*node, rec.node_values(node).last().copied().unwrap_or(0.0)))
        .collect();
    let (best, top_prob) = next_token::argmax(&next_token::softmax(&rec.last_logits));
    SweepPoint {
        n,
        tokens: rec.ids.len(),
        values,
        logit_diff: targets.map(|t| rec.logit_diff(t)),
        top: token_text(best),
        top_prob,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_the_fragment_zero_to_max_times() {
        let v = insertions("ab", 1, "x", 2).unwrap();
        assert_eq!(v, vec!["ab", "axb", "axxb"]);
        assert_eq!(insertions("é", 1, "x", 1), Err(SweepError::InsideCharacter));
        assert_eq!(insertions("ab", 1, "", 1), Err(SweepError::EmptyFragment));
        assert_eq!(insertions("ab", 3, "x", 1), Err(SweepError::PastEnd { at: 3, len: 2 }));
    }

    fn result(diffs: &[Option<f32>]) -> SweepResult {
        SweepResult {
            text: "ab".into(),
            at: 1,
            fragment: "x".into(),
            max_n: diffs.len(),
            points: diffs
                .iter()
                .enumerate()
                .map(|(n, d)| SweepPoint {
                    n,
                    tokens: 2 + n,
                    values: BTreeMap::new(),
                    logit_diff: *d,
                    top: String::new(),
                    top_prob: 0.0,
                })
                .collect(),
            stop: None,
        }
    }

    #[test]
    fn the_flip_is_the_first_count_whose_logit_difference_changes_sign() {
        let r = result(&[Some(2.0), Some(1.0), Some(-0.5), Some(0.3)]);
        assert_eq!(r.flip().map(|p| p.n), Some(2));
        assert_eq!(result(&[Some(-1.0), Some(-2.0)]).flip(), None);
        assert_eq!(result(&[Some(1.0), Some(0.0)]).flip().map(|p| p.n), Some(1));
        assert_eq!(result(&[None, None]).flip(), None);
        assert_eq!(r.prompt(2), "axxb");
    }
}
