//! A direct port of tiktoken's byte-pair encoding (`CoreBPE::encode_ordinary`),
//! used to check that the `tokenizers`-based [`super::Tokenizer`] gives
//! tiktoken's ids. Slow (quadratic per pre-token); not meant for production.

use std::collections::HashMap;

use tokenizers::utils::SysRegex;

use super::{Gpt2Bpe, TokenizeError};

/// tiktoken's encoder: mergeable ranks and a pre-tokenizer pattern.
pub struct TiktokenBpe {
    ranks: HashMap<Vec<u8>, u32>,
    regex: SysRegex,
}

impl TiktokenBpe {
    /// From mergeable ranks (token bytes -> rank) and a `pat_str`.
    pub fn new(ranks: HashMap<Vec<u8>, u32>, pattern: &str) -> Result<Self, TokenizeError> {
        let regex = SysRegex::new(pattern).map_err(TokenizeError::Build)?;
        Ok(Self { ranks, regex })
    }

    /// From parsed GPT-2 style files.
    pub fn from_gpt2(bpe: &Gpt2Bpe, pattern: &str) -> Result<Self, TokenizeError> {
        Self::new(bpe.mergeable_ranks(), pattern)
    }

    /// tiktoken `encode_ordinary`.
    pub fn encode_ordinary(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for (start, end) in self.regex.find_iter(text) {
            let piece = &text.as_bytes()[start..end];
            if let Some(&r) = self.ranks.get(piece) {
                out.push(r);
            } else {
                out.extend(self.byte_pair_encode(piece));
            }
        }
        out
    }

    /// Greedy lowest-rank merging of adjacent parts (leftmost on ties).
    fn byte_pair_encode(&self, piece: &[u8]) -> Vec<u32> {
        let mut parts: Vec<Vec<u8>> = piece.iter().map(|&b| vec![b]).collect();
        loop {
            let mut best: Option<(u32, usize)> = None;
            for i in 0..parts.len().saturating_sub(1) {
                let mut joined = parts[i].clone();
                joined.extend_from_slice(&parts[i + 1]);
                if let Some(&r) = self.ranks.get(&joined) {
                    if best.is_none_or(|(br, _)| r < br) {
                        best = Some((r, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            let right = parts.remove(i + 1);
            parts[i].extend_from_slice(&right);
        }
        parts
            .iter()
            .map(|p| *self.ranks.get(p).expect("single bytes are always ranked"))
            .collect()
    }
}
