//! Training a byte-level BPE tokenizer on a corpus.
//!
//! The result has the same shape as an imported `tinypython_2k` (see [`super::import_gpt2_bpe`]): ids
//! 0..=255 are the single bytes in data_gym order, merge `i` makes id `256 + i`, `<|endoftext|>` is the last
//! id, and the pre-tokenizer is [`super::TINYPYTHON_PATTERN`] (Split, Isolated) followed by ByteLevel
//! (no prefix space, no regex), with a ByteLevel decoder.
//!
//! Merges are learned with `tokenizers`' `BpeTrainer` (all 256 byte symbols in the initial alphabet, so every
//! byte is encodable). Training is deterministic: the same documents and settings give the same tokenizer.
//!
//! Required tokens: the tasks compare the logits of particular tokens (`")`, `]]\n`, `.add`, ...), so each
//! string in `required` must encode as a single token. A required string the training did not produce is
//! added, together with the chain of merges that builds it from the pieces the learned merges split it into,
//! at the lowest priority; the last learned merges are dropped to keep the vocabulary size. A string that the
//! pre-tokenizer regex splits into several pieces can never be one token: such strings are reported as an error
//! before training.

use std::collections::{HashMap, HashSet};

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior, Trainer};

use super::bytes::{byte_to_char, bytes_to_symbols, rank_to_byte, symbols_to_bytes};
use super::gpt2::{build, Gpt2Bpe};
use super::{escape_token, TokenizeError, Tokenizer, TrainedMergesProblem, TINYPYTHON_PATTERN};

/// The default vocabulary size (ids 0..=1022 mergeable, 1023 = `<|endoftext|>`).
pub const DEFAULT_VOCAB_SIZE: usize = 1024;

/// The smallest vocabulary: the 256 bytes and `<|endoftext|>`.
pub const MIN_VOCAB_SIZE: usize = 257;

/// Default required single tokens: the contrast tokens of the paper's tasks (reference-model.md, section C).
pub const DEFAULT_REQUIRED: &[&str] = &[
    "\")",
    "')",
    "(\"",
    "('",
    "]\n",
    "]]\n",
    "]]",
    "],",
    " [[",
    ".add",
    " +=",
    "=None",
    "):\n",
    ":",
    ":\n",
    " in",
    " enumerate",
    " range",
    " ==",
    " =",
    " as",
    "r",
    "w",
    "'",
    " :",
    "(",
    " True",
    "\n",
    "    ",
    "current",
    "lambda",
    " else",
    "e",
    "lse",
    "lif",
];

/// A trained tokenizer and what training did.
#[derive(Debug, Clone)]
pub struct TrainedBpe {
    /// The trained tokenizer (byte-level BPE).
    pub tokenizer: Tokenizer,
    /// Documents and characters trained on.
    pub documents: usize,
    /// Characters of those documents.
    pub chars: usize,
    /// Merges kept from training (after dropping duplicates and making room for required tokens).
    pub learned_merges: usize,
    /// Required strings that training did not produce and that were added.
    pub added_required: Vec<String>,
    /// Extra merges added to build them (intermediate tokens included).
    pub added_merges: usize,
    /// `(required string, its id)`.
    pub required_ids: Vec<(String, u32)>,
}

/// Trains a byte-level BPE with `vocab_size` ids in all (the last is `<|endoftext|>`), making each string of
/// `required` a single token. The vocabulary is smaller when the documents hold too few distinct pairs.
pub fn train_bpe(
    docs: impl Iterator<Item = String>,
    vocab_size: usize,
    required: &[&str],
) -> Result<Tokenizer, TokenizeError> {
    train_bpe_report(docs, vocab_size, required).map(|t| t.tokenizer)
}

/// [`train_bpe`] that also reports what it did.
pub fn train_bpe_report(
    docs: impl Iterator<Item = String>,
    vocab_size: usize,
    required: &[&str],
) -> Result<TrainedBpe, TokenizeError> {
    if vocab_size < MIN_VOCAB_SIZE {
        return Err(TokenizeError::VocabTooSmall {
            vocab_size,
            min: MIN_VOCAB_SIZE,
        });
    }
    let pre = pre_tokenizer()?;
    check_required(&pre, required)?;

    let docs: Vec<String> = docs.collect();
    let chars = docs.iter().map(|d| d.chars().count()).sum();
    let budget = vocab_size - MIN_VOCAB_SIZE; // merges that fit

    // 1. Learn merges (a few more than fit, so that duplicates and required tokens can be traded off).
    let slack = required.len() + 16;
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(256 + budget + slack)
        .min_frequency(0)
        .show_progress(false)
        .initial_alphabet((0..=255u8).map(byte_to_char).collect::<HashSet<char>>())
        .build();
    let tok_err = TokenizeError::Build;
    trainer
        .feed(docs.iter(), |s| {
            let mut p = PreTokenizedString::from(s);
            pre.pre_tokenize(&mut p)?;
            Ok(p.get_splits(OffsetReferential::Original, OffsetType::Byte)
                .into_iter()
                .map(|(s, _, _)| s.to_owned())
                .collect())
        })
        .map_err(tok_err)?;
    let mut model = BPE::default();
    trainer.train(&mut model).map_err(tok_err)?;
    let learned = learned_merges(&model)?;

    // 2. Fit the required tokens into the budget, dropping the last learned merges if needed.
    let required_bytes: Vec<Vec<u8>> = required.iter().map(|s| s.as_bytes().to_vec()).collect();
    let mut m = learned.len().min(budget);
    let (extra, added_required) = loop {
        let (extra, added) = required_chains(&learned[..m], &required_bytes);
        if m + extra.len() <= budget {
            break (extra, added);
        }
        if m == 0 {
            return Err(TokenizeError::RequiredDoNotFit {
                vocab_size,
                required: required.len(),
                merges: extra.len(),
            });
        }
        m -= (m + extra.len() - budget).min(m);
    };

    // 3. Build the tokenizer: bytes in data_gym order, learned merges, added merges, <|endoftext|> last.
    let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|r| vec![rank_to_byte(r)]).collect();
    let mut merges = Vec::with_capacity(m + extra.len());
    for (a, b) in learned[..m].iter().chain(extra.iter()) {
        let mut t = a.clone();
        t.extend_from_slice(b);
        ranks.push(t);
        merges.push((bytes_to_symbols(a), bytes_to_symbols(b)));
    }
    let bpe = Gpt2Bpe {
        eot_id: ranks.len() as u32,
        ranks,
        merges,
        startoftext_id: None,
        missing_trailing_newline: false,
    };
    let tokenizer = build(&bpe, TINYPYTHON_PATTERN)?;

    // 4. Verify.
    let mut required_ids = Vec::with_capacity(required.len());
    let mut bad = Vec::new();
    for s in required {
        let ids = tokenizer.encode(s)?;
        match ids.as_slice() {
            [id] => required_ids.push(((*s).to_owned(), *id)),
            _ => bad.push(format!("\"{}\" -> {} tokens", escape_token(s), ids.len())),
        }
    }
    if !bad.is_empty() {
        return Err(TokenizeError::RequiredNotSingle { strings: bad });
    }
    Ok(TrainedBpe {
        tokenizer,
        documents: docs.len(),
        chars,
        learned_merges: m,
        added_required: added_required.into_iter().map(|i| required[i].to_owned()).collect(),
        added_merges: extra.len(),
        required_ids,
    })
}

/// The pre-tokenizer of trained tokenizers: the tinypython regex split, then ByteLevel.
fn pre_tokenizer() -> Result<Sequence, TokenizeError> {
    let split = Split::new(
        SplitPattern::Regex(TINYPYTHON_PATTERN.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(TokenizeError::Build)?;
    let pre: Vec<PreTokenizerWrapper> = vec![split.into(), ByteLevel::new(false, false, false).into()];
    Ok(Sequence::new(pre))
}

/// How the pre-tokenizer splits `s` (byte-level symbols per piece).
fn pre_tokens(pre: &Sequence, s: &str) -> Result<Vec<String>, TokenizeError> {
    let mut p = PreTokenizedString::from(s);
    pre.pre_tokenize(&mut p).map_err(TokenizeError::Encode)?;
    Ok(p.get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(s, _, _)| s.to_owned())
        .collect())
}

/// Errors, naming every required string that the pre-tokenizer regex splits (or that is empty).
pub fn check_required_strings(required: &[&str]) -> Result<(), TokenizeError> {
    check_required(&pre_tokenizer()?, required)
}

fn check_required(pre: &Sequence, required: &[&str]) -> Result<(), TokenizeError> {
    let mut impossible = Vec::new();
    for s in required {
        if s.is_empty() {
            impossible.push("\"\" (empty)".to_owned());
            continue;
        }
        let pieces = pre_tokens(pre, s)?;
        if pieces.len() != 1 {
            let shown: Vec<String> = pieces
                .iter()
                .map(|p| {
                    format!(
                        "\"{}\"",
                        escape_token(&String::from_utf8_lossy(&symbols_to_bytes(p).unwrap_or_default()))
                    )
                })
                .collect();
            impossible.push(format!("\"{}\" (split into {})", escape_token(s), shown.join(" + ")));
        }
    }
    if impossible.is_empty() {
        Ok(())
    } else {
        Err(TokenizeError::RequiredSplit { strings: impossible })
    }
}

/// A merge as the bytes of its two parts.
type BytePair = (Vec<u8>, Vec<u8>);

/// The trained merges as byte pairs, in priority order, without merges whose result an earlier merge made.
fn learned_merges(model: &BPE) -> Result<Vec<BytePair>, TokenizeError> {
    let v = serde_json::to_value(model).map_err(|e| TokenizeError::TrainedMerges {
        what: TrainedMergesProblem::Serialise(e),
    })?;
    let list = v
        .get("merges")
        .and_then(|m| m.as_array())
        .ok_or(TokenizeError::TrainedMerges {
            what: TrainedMergesProblem::NoList,
        })?;
    let bad = |merge: &str| TokenizeError::TrainedMerges {
        what: TrainedMergesProblem::BadMerge {
            merge: merge.to_string(),
        },
    };
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        let (a, b) = match m {
            serde_json::Value::Array(p) if p.len() == 2 => (
                p[0].as_str().ok_or_else(|| bad(&m.to_string()))?,
                p[1].as_str().ok_or_else(|| bad(&m.to_string()))?,
            ),
            serde_json::Value::String(s) => s.split_once(' ').ok_or_else(|| bad(s))?,
            other => return Err(bad(&other.to_string())),
        };
        let a = symbols_to_bytes(a).ok_or_else(|| bad(a))?;
        let b = symbols_to_bytes(b).ok_or_else(|| bad(b))?;
        let mut t = a.clone();
        t.extend_from_slice(&b);
        if seen.insert(t) {
            out.push((a, b));
        }
    }
    Ok(out)
}

/// Applies `merges` (lowest rank first) to the bytes of `s`, as BPE does; returns the pieces.
fn bpe_pieces(ranks: &HashMap<BytePair, usize>, s: &[u8]) -> Vec<Vec<u8>> {
    let mut parts: Vec<Vec<u8>> = s.iter().map(|&b| vec![b]).collect();
    loop {
        let best = (0..parts.len().saturating_sub(1))
            .filter_map(|i| ranks.get(&(parts[i].clone(), parts[i + 1].clone())).map(|&r| (r, i)))
            .min();
        let Some((_, i)) = best else { break };
        let right = parts.remove(i + 1);
        parts[i].extend_from_slice(&right);
    }
    parts
}

/// The merges to append so that every required string is a token, and the indices of the required strings that
/// needed them. Each missing string is built left to right from the pieces the existing merges split it into.
fn required_chains(learned: &[BytePair], required: &[Vec<u8>]) -> (Vec<BytePair>, Vec<usize>) {
    let mut tokens: HashSet<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let mut ranks: HashMap<BytePair, usize> = HashMap::new();
    for (i, (a, b)) in learned.iter().enumerate() {
        let mut t = a.clone();
        t.extend_from_slice(b);
        tokens.insert(t);
        ranks.insert((a.clone(), b.clone()), i);
    }
    let mut extra = Vec::new();
    let mut added = Vec::new();
    for (ri, s) in required.iter().enumerate() {
        if s.is_empty() || tokens.contains(s) {
            continue;
        }
        added.push(ri);
        let pieces = bpe_pieces(&ranks, s);
        let mut acc = pieces[0].clone();
        for p in &pieces[1..] {
            let mut next = acc.clone();
            next.extend_from_slice(p);
            if tokens.insert(next.clone()) {
                ranks.insert((acc.clone(), p.clone()), learned.len() + extra.len());
                extra.push((acc.clone(), p.clone()));
            }
            acc = next;
        }
    }
    (extra, added)
}
