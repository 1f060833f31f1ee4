//! N2G token patterns and the trie that predicts a node's activation from them.
//!
//! A pattern is a short run of tokens ending at the token where the node fires (the pivot), in reading order;
//! `None` is a wildcard (a token whose replacement by padding did not matter). The trie holds every pattern of
//! one side (positive or negative activations) reversed, pivot first, so that a prediction at position t walks
//! back from token t and stops as soon as no pattern can match any more.

use serde::{Deserialize, Serialize};

/// One pattern of one side of a node, with the activation it predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// Tokens in reading order, the last one at the pivot; `None` matches any token.
    pub tokens: Vec<Option<u32>>,
    /// The activation magnitude it predicts (the mean over the exemplars that gave this pattern).
    pub value: f32,
    /// How many exemplars gave this pattern.
    pub count: u32,
}

impl Pattern {
    /// Whether the pattern matches `seq` ending at position `t`.
    pub fn matches(&self, seq: &[u32], t: usize) -> bool {
        let n = self.tokens.len();
        if n == 0 || n > t + 1 {
            return false;
        }
        let start = t + 1 - n;
        self.tokens
            .iter()
            .zip(&seq[start..=t])
            .all(|(p, &s)| p.is_none_or(|p| p == s))
    }
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    /// (token or wildcard, child index).
    children: Vec<(Option<u32>, usize)>,
    /// The largest value of the patterns ending here.
    value: Option<f32>,
}

/// The patterns of one side, merged by shared suffixes.
#[derive(Debug, Clone)]
pub struct PatternTrie {
    nodes: Vec<TrieNode>,
}

impl PatternTrie {
    /// Merges `patterns` (empty ones are ignored).
    pub fn new(patterns: &[Pattern]) -> Self {
        let mut trie = PatternTrie {
            nodes: vec![TrieNode::default()],
        };
        for p in patterns.iter().filter(|p| !p.tokens.is_empty()) {
            let mut at = 0;
            for &tok in p.tokens.iter().rev() {
                at = match trie.nodes[at].children.iter().find(|(k, _)| *k == tok) {
                    Some(&(_, child)) => child,
                    None => {
                        trie.nodes.push(TrieNode::default());
                        let child = trie.nodes.len() - 1;
                        trie.nodes[at].children.push((tok, child));
                        child
                    }
                };
            }
            let v = &mut trie.nodes[at].value;
            *v = Some(v.map_or(p.value, |old| old.max(p.value)));
        }
        trie
    }

    /// Whether the trie holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// The predicted activation magnitude at position `t` of `seq`: the largest value of the patterns that match
    /// there, 0 when none does.
    pub fn predict(&self, seq: &[u32], t: usize) -> f32 {
        // Most tokens start no pattern: answer those without building the walk's stack.
        let root = &self.nodes[0];
        if !root.children.iter().any(|&(k, _)| k.is_none_or(|k| k == seq[t])) {
            return root.value.unwrap_or(0.0).max(0.0);
        }
        let mut best = 0f32;
        // (trie node, how many tokens back from t it has consumed)
        let mut stack = vec![(0usize, 0usize)];
        while let Some((at, depth)) = stack.pop() {
            let node = &self.nodes[at];
            if let Some(v) = node.value {
                best = best.max(v);
            }
            if depth > t {
                continue;
            }
            let tok = seq[t - depth];
            for &(k, child) in &node.children {
                if k.is_none_or(|k| k == tok) {
                    stack.push((child, depth + 1));
                }
            }
        }
        best
    }
}

/// Which activations a pattern set explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The largest activations.
    Positive,
    /// The most negative activations (magnitudes stored positive).
    Negative,
}

impl Side {
    /// +1 or −1: the sign that turns a raw activation into this side's magnitude.
    pub fn sign(self) -> f32 {
        match self {
            Side::Positive => 1.0,
            Side::Negative => -1.0,
        }
    }

    /// The verb of the rendered explanation.
    fn verb(self) -> &'static str {
        match self {
            Side::Positive => "fires",
            Side::Negative => "negative",
        }
    }
}

/// A token's text for an explanation: `"…"` quoted, with control characters and quotes escaped.
fn quoted(text: &str) -> String {
    format!("\"{}\"", crate::tokenize::escape_token(text))
}

/// One pattern as words: `on "B" after "A" … "C"` (or `after "A"` when the pivot is a wildcard).
fn render_one(p: &Pattern, display: &dyn Fn(u32) -> String) -> String {
    let Some((pivot, ctx)) = p.tokens.split_last() else {
        return String::new();
    };
    // Literal runs become one quoted string each; a run of wildcards becomes one "…".
    let mut parts: Vec<String> = Vec::new();
    let mut run = String::new();
    let mut in_gap = false;
    for t in ctx {
        match t {
            Some(id) => {
                if in_gap {
                    parts.push("…".into());
                    in_gap = false;
                }
                run.push_str(&display(*id));
            }
            None => {
                if !run.is_empty() {
                    parts.push(quoted(&run));
                    run.clear();
                }
                in_gap = true;
            }
        }
    }
    if !run.is_empty() {
        parts.push(quoted(&run));
    }
    // A gap right before the pivot still says the context is not adjacent.
    if in_gap {
        parts.push("…".into());
    }
    let after = if parts.is_empty() {
        String::new()
    } else {
        format!("after {}", parts.join(" "))
    };
    match pivot {
        Some(id) if after.is_empty() => format!("on {}", quoted(&display(*id))),
        Some(id) => format!("on {} {after}", quoted(&display(*id))),
        None => after,
    }
}

/// The explanation of one side: its (at most `max`) strongest distinct patterns, e.g.
/// `fires on " [[" after "= " or on "[["`. Empty when there are no patterns.
pub fn render(side: Side, patterns: &[Pattern], max: usize, display: &dyn Fn(u32) -> String) -> String {
    let mut order: Vec<&Pattern> = patterns.iter().filter(|p| !p.tokens.is_empty()).collect();
    order.sort_by(|a, b| {
        let wa = a.value * a.count as f32;
        let wb = b.value * b.count as f32;
        wb.total_cmp(&wa).then(b.value.total_cmp(&a.value))
    });
    let mut shown: Vec<String> = Vec::new();
    for p in order {
        let s = render_one(p, display);
        if !s.is_empty() && !shown.contains(&s) {
            shown.push(s);
        }
        if shown.len() == max {
            break;
        }
    }
    if shown.is_empty() {
        return String::new();
    }
    format!("{} {}", side.verb(), shown.join(" or "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(tokens: &[Option<u32>], value: f32) -> Pattern {
        Pattern {
            tokens: tokens.to_vec(),
            value,
            count: 1,
        }
    }

    #[test]
    fn trie_matches_literals_and_wildcards() {
        let trie = PatternTrie::new(&[pat(&[Some(1), None, Some(3)], 2.0), pat(&[Some(3)], 0.5)]);
        // 1 x 3: the long pattern
        assert_eq!(trie.predict(&[1, 9, 3], 2), 2.0);
        // only the short one
        assert_eq!(trie.predict(&[2, 9, 3], 2), 0.5);
        // too close to the start for the long one
        assert_eq!(trie.predict(&[9, 3], 1), 0.5);
        assert_eq!(trie.predict(&[1, 9, 4], 2), 0.0);
        assert!(pat(&[Some(1), None, Some(3)], 1.0).matches(&[1, 7, 3], 2));
        assert!(!pat(&[Some(1), None, Some(3)], 1.0).matches(&[7, 3], 1));
    }

    #[test]
    fn render_reads_like_a_sentence() {
        let d = |id: u32| ["=", " ", "[[", "x"][id as usize].to_string();
        let p = [pat(&[Some(0), Some(1), Some(2)], 1.0)];
        assert_eq!(render(Side::Positive, &p, 2, &d), "fires on \"[[\" after \"= \"");
        let q = [pat(&[Some(0), None, Some(2)], 1.0), pat(&[Some(3)], 0.2)];
        assert_eq!(
            render(Side::Negative, &q, 2, &d),
            "negative on \"[[\" after \"=\" … or on \"x\""
        );
        let r = [pat(&[Some(3), None], 1.0)];
        assert_eq!(render(Side::Positive, &r, 2, &d), "fires after \"x\"");
        assert_eq!(render(Side::Positive, &[], 2, &d), "");
    }
}
