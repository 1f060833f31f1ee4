//! The repetition sweep: insert a fragment n times (n = 0..=max_n) at one point of a prompt and read one node at
//! the last token and the prediction after each insertion.

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
    /// Tokens in the resulting prompt.
    pub tokens: usize,
    /// The node's value at the last token.
    pub value: f32,
    /// Logit of target A minus target B at the last token, when targets were given.
    pub logit_diff: Option<f32>,
    /// The most likely next token, as displayed.
    pub top: String,
    /// Its probability.
    pub top_prob: f32,
}

/// A repetition sweep of one node: the fragment and one measurement per insertion count.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepResult {
    /// The node read.
    pub node: NodeId,
    /// The fragment inserted.
    pub fragment: String,
    /// Measurements for n = 0, 1, …, in order.
    pub points: Vec<SweepPoint>,
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

/// The measurement of insertion count `n` from its recorded run: `node` at the last token, the logit difference
/// of `targets` and the most probable next token (shown by `token_text`).
pub fn point(
    n: usize,
    rec: &Recorded,
    node: &NodeId,
    targets: Option<(u32, u32)>,
    token_text: impl Fn(u32) -> String,
) -> SweepPoint {
    let value = rec.node_values(node).last().copied().unwrap_or(0.0);
    let (best, top_prob) = next_token::argmax(&next_token::softmax(&rec.last_logits));
    SweepPoint {
        n,
        tokens: rec.ids.len(),
        value,
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
}
