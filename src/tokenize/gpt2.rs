//! Import of GPT-2 style `encoder.json` + `vocab.bpe` files, following
//! tiktoken's `data_gym_to_mergeable_bpe_ranks`.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::bytes::{bytes_to_symbols, rank_to_byte, symbols_to_bytes};
use super::{
    MergeLineProblem, TokenizeError, Tokenizer, VocabDisagreement, ENDOFTEXT, STARTOFTEXT, TINYPYTHON_PATTERN,
};

/// The parsed and cross-checked content of a GPT-2 style BPE file pair.
#[derive(Debug, Clone)]
pub struct Gpt2Bpe {
    /// `ranks[r]` is the byte string of the mergeable token of rank (= id) `r`.
    pub ranks: Vec<Vec<u8>>,
    /// The merges as written in `vocab.bpe` (byte-alphabet symbols), in rank
    /// order: merge `i` makes rank `256 + i`.
    pub merges: Vec<(String, String)>,
    /// The id of `<|endoftext|>`: from `encoder.json` when listed there,
    /// otherwise one past the largest id.
    pub eot_id: u32,
    /// The id `encoder.json` gives `<|startoftext|>`, if any (dropped, as
    /// tiktoken does).
    pub startoftext_id: Option<u32>,
    /// Whether `vocab.bpe` lacked its trailing newline (tiktoken would then
    /// silently drop the last merge; here it is kept).
    pub missing_trailing_newline: bool,
}

impl Gpt2Bpe {
    /// A map from token bytes to rank (tiktoken's `mergeable_ranks`).
    pub fn mergeable_ranks(&self) -> HashMap<Vec<u8>, u32> {
        self.ranks
            .iter()
            .enumerate()
            .map(|(r, b)| (b.clone(), r as u32))
            .collect()
    }
}

fn read(path: &Path) -> Result<String, TokenizeError> {
    std::fs::read_to_string(path).map_err(|source| TokenizeError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads and validates `encoder.json` and `vocab.bpe` the way tiktoken's
/// `data_gym_to_mergeable_bpe_ranks` does:
///
/// * ranks 0..=255 are the single bytes in data_gym order;
/// * `vocab.bpe` line 1 is a header, every further line `A B` is a merge,
///   making rank `256 + i` (the file should end with a newline; a missing
///   one is accepted and the last line is kept as a merge);
/// * `encoder.json` minus `<|endoftext|>` / `<|startoftext|>` must equal the
///   ranks so built.
pub fn read_gpt2_bpe(encoder_json: &Path, vocab_bpe: &Path) -> Result<Gpt2Bpe, TokenizeError> {
    let encoder_text = read(encoder_json)?;
    let bpe_text = read(vocab_bpe)?;
    let encoder: HashMap<String, u32> = serde_json::from_str(&encoder_text).map_err(|source| TokenizeError::Json {
        path: encoder_json.to_owned(),
        source,
    })?;

    // Merges.
    let missing_trailing_newline = !bpe_text.ends_with('\n');
    if missing_trailing_newline {
        tracing::warn!(
            "{} does not end with a newline; keeping its last line as a merge \
             (tiktoken would drop it)",
            vocab_bpe.display()
        );
    }
    let mut lines: Vec<&str> = bpe_text.split('\n').collect();
    if !missing_trailing_newline {
        lines.pop();
    }
    if lines.is_empty() {
        return Err(TokenizeError::MalformedMerge {
            path: vocab_bpe.to_owned(),
            line: 1,
            content: String::new(),
            reason: MergeLineProblem::EmptyFile,
        });
    }

    let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|r| vec![rank_to_byte(r)]).collect();
    let mut rank_of: HashMap<Vec<u8>, u32> = ranks.iter().enumerate().map(|(r, b)| (b.clone(), r as u32)).collect();
    let mut merges = Vec::with_capacity(lines.len().saturating_sub(1));
    for (i, raw) in lines.iter().enumerate().skip(1) {
        let line = i + 1;
        let content = raw.strip_suffix('\r').unwrap_or(raw);
        let parts: Vec<&str> = content.split_whitespace().collect();
        let malformed = |reason: MergeLineProblem| TokenizeError::MalformedMerge {
            path: vocab_bpe.to_owned(),
            line,
            content: content.to_owned(),
            reason,
        };
        if parts.len() != 2 {
            return Err(malformed(MergeLineProblem::PartCount { found: parts.len() }));
        }
        let mut merged = Vec::new();
        for part in &parts {
            let b = symbols_to_bytes(part).ok_or_else(|| TokenizeError::InvalidSymbol {
                path: vocab_bpe.to_owned(),
                token: (*part).to_owned(),
            })?;
            if !rank_of.contains_key(&b) {
                return Err(TokenizeError::UnknownMergeToken {
                    path: vocab_bpe.to_owned(),
                    line,
                    token: (*part).to_owned(),
                });
            }
            merged.extend_from_slice(&b);
        }
        let rank = ranks.len() as u32;
        if let Some(old) = rank_of.insert(merged.clone(), rank) {
            return Err(malformed(MergeLineProblem::Duplicate { rank: old }));
        }
        ranks.push(merged);
        merges.push((parts[0].to_owned(), parts[1].to_owned()));
    }

    // Cross-check with encoder.json.
    let inconsistent = |detail: VocabDisagreement| TokenizeError::Inconsistent {
        encoder_json: encoder_json.to_owned(),
        vocab_bpe: vocab_bpe.to_owned(),
        detail: Box::new(detail),
    };
    let mut n_mergeable = 0usize;
    let mut by_id: Vec<(u32, &str)> = encoder.iter().map(|(k, &v)| (v, k.as_str())).collect();
    by_id.sort_unstable();
    for &(id, token) in &by_id {
        if token == ENDOFTEXT || token == STARTOFTEXT {
            continue;
        }
        n_mergeable += 1;
        let b = symbols_to_bytes(token).ok_or_else(|| TokenizeError::InvalidSymbol {
            path: encoder_json.to_owned(),
            token: token.to_owned(),
        })?;
        match rank_of.get(&b) {
            Some(&r) if r == id => {}
            Some(&rank) => {
                return Err(inconsistent(VocabDisagreement::IdIsNotRank {
                    token: token.to_owned(),
                    id,
                    rank,
                }))
            }
            None => {
                return Err(inconsistent(VocabDisagreement::NotMade {
                    token: token.to_owned(),
                    id,
                }))
            }
        }
    }
    if n_mergeable != ranks.len() {
        let example = ranks
            .iter()
            .enumerate()
            .find(|(_, b)| !encoder.contains_key(&bytes_to_symbols(b)))
            .map(|(r, b)| (r, bytes_to_symbols(b)));
        return Err(inconsistent(VocabDisagreement::Count {
            listed: n_mergeable,
            made: ranks.len(),
            example,
        }));
    }

    let startoftext_id = encoder.get(STARTOFTEXT).copied();
    let max_id = encoder.values().copied().max().unwrap_or(0);
    let eot_id = encoder.get(ENDOFTEXT).copied().unwrap_or(max_id + 1);
    if (eot_id as usize) < ranks.len() {
        return Err(inconsistent(VocabDisagreement::EndOfTextIsRank { id: eot_id }));
    }
    if startoftext_id == Some(eot_id) {
        return Err(inconsistent(VocabDisagreement::SharedId { id: eot_id }));
    }

    Ok(Gpt2Bpe {
        ranks,
        merges,
        eot_id,
        startoftext_id,
        missing_trailing_newline,
    })
}

/// Builds a tiktoken-equivalent `tokenizers` tokenizer from GPT-2 style
/// files: a BPE model with the vocabulary of `encoder.json` minus
/// `<|startoftext|>` and the merges of `vocab.bpe`; the pre-tokenizer
/// `Sequence[Split(TINYPYTHON_PATTERN, Isolated), ByteLevel(add_prefix_space
/// = false, use_regex = false)]`; a ByteLevel decoder; and `<|endoftext|>` as
/// a special added token with its `encoder.json` id.
///
/// The model uses `ignore_merges` (a pre-token that is itself a token is
/// emitted whole), as tiktoken does.
pub fn import_gpt2_bpe(encoder_json: &Path, vocab_bpe: &Path) -> Result<Tokenizer, TokenizeError> {
    let bpe = read_gpt2_bpe(encoder_json, vocab_bpe)?;
    build(&bpe, TINYPYTHON_PATTERN)
}

/// Builds the tokenizer from parsed files and a pre-tokenizer pattern.
pub(crate) fn build(bpe: &Gpt2Bpe, pattern: &str) -> Result<Tokenizer, TokenizeError> {
    let build_err = TokenizeError::Build;
    let mut vocab: Vocab = bpe
        .ranks
        .iter()
        .enumerate()
        .map(|(r, b)| (bytes_to_symbols(b), r as u32))
        .collect();
    // The special token is also in the model vocabulary, as in GPT-2's
    // tokenizer.json: the added-token machinery then keeps its id (it would
    // otherwise assign the next free id, 2046) also when reloading.
    // Pre-tokenization never yields it whole and no merge makes it, so the
    // model never emits it.
    if vocab.insert(ENDOFTEXT.to_owned(), bpe.eot_id).is_some() {
        return Err(TokenizeError::SpecialCollides);
    }
    let model = BPE::builder()
        .vocab_and_merges(vocab, bpe.merges.clone())
        .ignore_merges(true)
        .build()
        .map_err(build_err)?;

    let split = Split::new(
        SplitPattern::Regex(pattern.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(build_err)?;
    let pre: Vec<PreTokenizerWrapper> = vec![split.into(), ByteLevel::new(false, false, false).into()];

    let mut inner = tokenizers::Tokenizer::new(model);
    inner.with_pre_tokenizer(Some(Sequence::new(pre)));
    inner.with_decoder(Some(ByteLevel::new(false, false, false)));
    inner
        .add_special_tokens([AddedToken::from(ENDOFTEXT, true)])
        .map_err(build_err)?;
    let got = inner.token_to_id(ENDOFTEXT);
    if got != Some(bpe.eot_id) {
        return Err(TokenizeError::SpecialId {
            got,
            expected: bpe.eot_id,
        });
    }
    Tokenizer::from_inner(inner)
}
