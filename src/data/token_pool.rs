//! Token pools for training, scans, SAEs and evaluation: documents tokenized into one stream (documents separated
//! by end-of-text), from which each step draws random windows. The draw of step s depends only on (seed, s), so a
//! resumed run sees the same batches.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::tokenize::Tokenizer;

/// Training tokens: documents tokenized and concatenated, each followed by the end-of-text token.
pub struct TokenPool {
    /// The token ids, all documents in order.
    pub tokens: Vec<u32>,
    /// How many documents were tokenized into the pool.
    pub documents: usize,
}

impl TokenPool {
    /// Tokenizes documents until `max_tokens` tokens are collected or the documents run out.
    pub fn build(
        docs: impl Iterator<Item = String>,
        tok: &Tokenizer,
        max_tokens: usize,
    ) -> Result<Self, crate::tokenize::TokenizeError> {
        let eot = tok.eot_id();
        let mut tokens = Vec::with_capacity(max_tokens + 1024);
        let mut documents = 0;
        for doc in docs {
            tokens.extend(tok.encode(&doc)?);
            if let Some(e) = eot {
                tokens.push(e);
            }
            documents += 1;
            if tokens.len() >= max_tokens {
                break;
            }
        }
        Ok(TokenPool { tokens, documents })
    }

    /// (inputs, targets), each (batch, seq_len) u32: windows starting at random offsets, targets shifted by one.
    pub fn batch(&self, batch: usize, seq_len: usize, seed: u64, step: u64) -> candle_core::Result<(Tensor, Tensor)> {
        let span = seq_len + 1;
        if self.tokens.len() <= span {
            candle_core::bail!(
                "the corpus has {} tokens, fewer than one training window of {span}",
                self.tokens.len()
            );
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut inputs = Vec::with_capacity(batch * seq_len);
        let mut targets = Vec::with_capacity(batch * seq_len);
        for _ in 0..batch {
            let start = rng.random_range(0..self.tokens.len() - span);
            inputs.extend_from_slice(&self.tokens[start..start + seq_len]);
            targets.extend_from_slice(&self.tokens[start + 1..start + span]);
        }
        Ok((
            Tensor::from_vec(inputs, (batch, seq_len), &Device::Cpu)?,
            Tensor::from_vec(targets, (batch, seq_len), &Device::Cpu)?,
        ))
    }
}
