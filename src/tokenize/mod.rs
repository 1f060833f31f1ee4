//! Tokenization: a thin wrapper around a byte-level BPE `tokenizers::Tokenizer`
//! that behaves like tiktoken.
//!
//! * [`import_gpt2_bpe`] builds a tokenizer from a GPT-2 style pair of files
//!   (`encoder.json`, `vocab.bpe`), exactly as tiktoken's
//!   `data_gym_to_mergeable_bpe_ranks` reads them, with the pre-tokenizer
//!   [`TINYPYTHON_PATTERN`] and `<|endoftext|>` as the one special token.
//! * [`Tokenizer::load`] / [`Tokenizer::save`] read and write the usual
//!   `tokenizer.json` format.
//! * [`Tokenizer::encode`] is tiktoken's `encode_ordinary`: special-token
//!   text such as `<|endoftext|>` in the input is encoded as ordinary text.
//!   [`Tokenizer::encode_with_specials`] parses it as the special token.
//!
//! Ids are tiktoken's: single bytes are ranks 0..=255 in the data_gym byte
//! order (see [`bytes`]), merge `i` of `vocab.bpe` is rank `256 + i`.

pub mod bytes;
mod gpt2;
pub mod reference;
pub mod train;

use std::path::{Path, PathBuf};

pub use gpt2::{import_gpt2_bpe, read_gpt2_bpe, Gpt2Bpe};

/// The pre-tokenizer regex of the `tinypython_2k` tokenizer (tiktoken
/// `pat_str`).
pub const TINYPYTHON_PATTERN: &str =
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The end-of-text special token.
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// The start-of-text token that GPT-2 style `encoder.json` files may list and
/// that tiktoken drops (its id stays undecodable).
pub const STARTOFTEXT: &str = "<|startoftext|>";

/// What is wrong with a line of `vocab.bpe` (the `reason` of [`TokenizeError::MalformedMerge`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeLineProblem {
    /// The file has no lines at all.
    #[error("empty file (expected a header line such as `# BPE Encoder v3`)")]
    EmptyFile,
    /// A merge line without exactly two tokens.
    #[error("expected two tokens separated by a space, found {found}")]
    PartCount {
        /// Tokens found on the line.
        found: usize,
    },
    /// A merge whose result an earlier rank already is.
    #[error("merge result duplicates the token of rank {rank}")]
    Duplicate {
        /// The earlier rank.
        rank: u32,
    },
}

/// How `encoder.json` and `vocab.bpe` disagree (the `detail` of [`TokenizeError::Inconsistent`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabDisagreement {
    /// A token's id is not its merge rank.
    #[error("token {token:?} has id {id} in encoder.json but rank {rank} from the merges")]
    IdIsNotRank {
        /// The token (GPT-2 byte symbols).
        token: String,
        /// Its id in encoder.json.
        id: u32,
        /// Its rank from the merges.
        rank: u32,
    },
    /// A token that is neither a byte nor a merge result.
    #[error("token {token:?} (id {id}) is neither a byte nor made by a merge")]
    NotMade {
        /// The token.
        token: String,
        /// Its id in encoder.json.
        id: u32,
    },
    /// Different counts of mergeable tokens.
    #[error("encoder.json lists {listed} mergeable tokens, the merges make {made}{}", missing_example(.example))]
    Count {
        /// Mergeable tokens in encoder.json.
        listed: usize,
        /// Tokens the merges make (with the 256 bytes).
        made: usize,
        /// A rank (and its token) that encoder.json lacks, if any.
        example: Option<(usize, String)>,
    },
    /// `<|endoftext|>`'s id is a mergeable rank.
    #[error("{ENDOFTEXT} has id {id}, which is a mergeable rank")]
    EndOfTextIsRank {
        /// The id.
        id: u32,
    },
    /// `<|endoftext|>` and `<|startoftext|>` share an id.
    #[error("{ENDOFTEXT} and {STARTOFTEXT} share id {id}")]
    SharedId {
        /// The id.
        id: u32,
    },
}

fn missing_example(example: &Option<(usize, String)>) -> String {
    example
        .as_ref()
        .map(|(r, t)| format!("; e.g. rank {r} ({t:?})"))
        .unwrap_or_default()
}

/// Why a `tokenizer.json` could not be loaded (the `problem` of [`TokenizeError::Load`]).
#[derive(Debug, thiserror::Error)]
pub enum LoadProblem {
    /// The text is not json.
    #[error("not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The tokenizers crate refused the json.
    #[error("{0}")]
    Tokenizers(#[source] tokenizers::Error),
}

/// Why a tokenizer could not be saved (the `problem` of [`TokenizeError::Save`]).
#[derive(Debug, thiserror::Error)]
pub enum SaveProblem {
    /// The tokenizers crate could not serialise it.
    #[error("{0}")]
    Serialise(#[source] tokenizers::Error),
    /// Writing the file failed.
    #[error("{0}")]
    Write(#[source] crate::fsio::FsioError),
}

/// What is wrong with a vocabulary (the `problem` of [`TokenizeError::BadVocab`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabProblem {
    /// No tokens at all.
    #[error("the vocabulary is empty (0 tokens); every text would encode to nothing")]
    Empty,
    /// Ids far sparser than the token count (a table of mostly holes).
    #[error("token ids reach {max_id} for only {entries} tokens")]
    Sparse {
        /// The largest id.
        max_id: usize,
        /// Tokens in the vocabulary.
        entries: usize,
    },
}

/// Why the BPE trainer's merges are not readable (the `what` of [`TokenizeError::TrainedMerges`]).
#[derive(Debug, thiserror::Error)]
pub enum TrainedMergesProblem {
    /// The trained model does not serialise to json.
    #[error("the BPE does not serialise: {0}")]
    Serialise(#[source] serde_json::Error),
    /// The json has no `merges` array.
    #[error("no merges list")]
    NoList,
    /// A merge that is not two byte-level tokens (as the trainer wrote it).
    #[error("merge {merge}")]
    BadMerge {
        /// The merge or the part of it that is unreadable.
        merge: String,
    },
}

/// Errors of loading, importing and using a tokenizer. Errors about files
/// name the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// A tokenizer file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A GPT-2 `encoder.json` is not a json object of token → id.
    #[error("{} is not a valid JSON token->id map: {source}", path.display())]
    Json {
        /// The encoder.json file.
        path: PathBuf,
        /// The json parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A line of a GPT-2 `vocab.bpe` is not two space-separated tokens.
    #[error("{}:{line}: malformed merge line {content:?}: {reason}", path.display())]
    MalformedMerge {
        /// The vocab.bpe file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line as read.
        content: String,
        /// What is wrong with it.
        #[source]
        reason: MergeLineProblem,
    },
    /// A merge names a token that neither is a byte nor comes from an earlier merge.
    #[error("{}:{line}: merge refers to unknown token {token:?} (not a byte and not produced by an earlier merge)", path.display())]
    UnknownMergeToken {
        /// The vocab.bpe file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The unknown token.
        token: String,
    },
    /// A token uses a character outside GPT-2's byte-to-unicode alphabet.
    #[error("{}: token {token:?} contains a character outside the GPT-2 byte alphabet", path.display())]
    InvalidSymbol {
        /// The file holding the token.
        path: PathBuf,
        /// The token.
        token: String,
    },
    /// encoder.json and vocab.bpe do not describe the same vocabulary.
    #[error("{} and {} disagree: {detail}", encoder_json.display(), vocab_bpe.display())]
    Inconsistent {
        /// The encoder.json file.
        encoder_json: PathBuf,
        /// The vocab.bpe file.
        vocab_bpe: PathBuf,
        /// How they disagree (boxed: it keeps every tokenizer `Result` small).
        #[source]
        detail: Box<VocabDisagreement>,
    },
    /// `tokenizer.json` could not be parsed by the tokenizers crate.
    #[error("cannot load tokenizer {}: {problem}", path.display())]
    Load {
        /// The tokenizer.json file.
        path: PathBuf,
        /// The json parser's or the tokenizers crate's error.
        #[source]
        problem: LoadProblem,
    },
    /// The tokenizer could not be written.
    #[error("cannot save tokenizer to {}: {problem}", path.display())]
    Save {
        /// The destination file.
        path: PathBuf,
        /// The tokenizers crate's (or the file system's) error.
        #[source]
        problem: SaveProblem,
    },
    /// The tokenizers crate refused to build the model, pre-tokenizer or special token.
    #[error("cannot build tokenizer: {0}")]
    Build(#[source] tokenizers::Error),
    /// `<|endoftext|>` is also the text of a mergeable token.
    #[error("cannot build tokenizer: {ENDOFTEXT} collides with a mergeable token")]
    SpecialCollides,
    /// The tokenizers crate gave `<|endoftext|>` another id than the files say.
    #[error("cannot build tokenizer: {ENDOFTEXT} got id {got:?}, expected {expected}")]
    SpecialId {
        /// The id it got, if any.
        got: Option<u32>,
        /// The id in the files.
        expected: u32,
    },
    /// A BPE vocabulary too small for the bytes and the special token.
    #[error(
        "cannot build tokenizer: vocab size {vocab_size} is too small: the 256 bytes and <|endoftext|> need {min}"
    )]
    VocabTooSmall {
        /// The vocabulary size asked for.
        vocab_size: usize,
        /// The smallest size accepted.
        min: usize,
    },
    /// The required strings need more merges than the vocabulary has room for.
    #[error("cannot build tokenizer: vocab size {vocab_size} is too small for the {required} required tokens (they need {merges} merges)")]
    RequiredDoNotFit {
        /// The vocabulary size asked for.
        vocab_size: usize,
        /// How many strings are required.
        required: usize,
        /// The merges they need.
        merges: usize,
    },
    /// Required strings that the pre-tokenizer regex splits, so that they can never be single tokens.
    #[error("cannot build tokenizer: the pre-tokenizer regex splits these required strings, so they can never be single tokens: {}", strings.join(", "))]
    RequiredSplit {
        /// Each string with the pieces it is split into, quoted and escaped.
        strings: Vec<String>,
    },
    /// Required strings that the trained tokenizer still encodes as several tokens.
    #[error("cannot build tokenizer: required strings that do not encode as one token: {}", strings.join(", "))]
    RequiredNotSingle {
        /// Each string with its token count, quoted and escaped.
        strings: Vec<String>,
    },
    /// The BPE trainer's merges are not in the form this build reads (a tokenizers version change).
    #[error("cannot build tokenizer: trained BPE: unexpected merge list ({what})")]
    TrainedMerges {
        /// What was found.
        #[source]
        what: TrainedMergesProblem,
    },
    /// The tokenizer is not byte-level BPE, so token bytes (and exemplar display) cannot be recovered.
    #[error(
        "tokenizer {}: vocabulary entry {token:?} (id {id}) is not in the GPT-2 byte alphabet; only byte-level BPE \
         tokenizers are supported",
        path.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "<in memory>".into())
    )]
    NotByteLevel {
        /// The tokenizer file, or `None` for one built in memory.
        path: Option<PathBuf>,
        /// The first vocabulary entry outside the byte alphabet.
        token: String,
        /// Its id.
        id: u32,
    },
    /// An empty vocabulary, or ids so sparse that the id table would be mostly holes (a hostile file's way of
    /// asking for gigabytes).
    #[error("tokenizer {}: {problem}", path.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "<in memory>".into()))]
    BadVocab {
        /// The tokenizer file, or `None` for one built in memory.
        path: Option<PathBuf>,
        /// What is wrong with the vocabulary.
        #[source]
        problem: VocabProblem,
    },
    /// The tokenizers crate failed to encode a text.
    #[error("encoding failed: {0}")]
    Encode(#[source] tokenizers::Error),
    /// Decoding met an id with no bytes.
    #[error("token id {0} has no bytes (unknown or undecodable id)")]
    UnknownId(u32),
}

/// A byte-level BPE tokenizer with tiktoken semantics.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Raw bytes of every id below `vocab_size`; `None` for holes (such as the
    /// dropped `<|startoftext|>`).
    id_bytes: Vec<Option<Vec<u8>>>,
    /// Special (added) tokens: (content, id).
    specials: Vec<(String, u32)>,
    eot: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("specials", &self.specials)
            .finish()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json` (as written by [`Tokenizer::save`]). The
    /// model must be byte-level (every vocab entry in the GPT-2 byte
    /// alphabet).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TokenizeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TokenizeError::Io {
            path: path.to_owned(),
            source,
        })?;
        // The JSON syntax is checked first: tokenizers 0.23 panics (an `expect` in its decoder's deserializer)
        // on a syntax error inside the `decoder` field, where it should return an error (found by fuzzing).
        serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| TokenizeError::Load {
            path: path.to_owned(),
            problem: LoadProblem::Json(e),
        })?;
        let inner: tokenizers::Tokenizer = text.parse().map_err(|e: tokenizers::Error| TokenizeError::Load {
            path: path.to_owned(),
            problem: LoadProblem::Tokenizers(e),
        })?;
        Self::from_inner(inner).map_err(|e| match e {
            TokenizeError::NotByteLevel { token, id, .. } => TokenizeError::NotByteLevel {
                path: Some(path.to_owned()),
                token,
                id,
            },
            TokenizeError::BadVocab { problem, .. } => TokenizeError::BadVocab {
                path: Some(path.to_owned()),
                problem,
            },
            e => e,
        })
    }

    /// Wraps a `tokenizers::Tokenizer` whose model vocabulary is byte-level.
    /// Special-token parsing of input text is switched off (tiktoken's
    /// `encode_ordinary`).
    pub fn from_inner(mut inner: tokenizers::Tokenizer) -> Result<Self, TokenizeError> {
        inner.set_encode_special_tokens(true);
        let model_vocab = tokenizers::Model::get_vocab(inner.get_model());
        let added = inner.get_added_tokens_decoder();
        let max_id = model_vocab
            .values()
            .chain(added.keys())
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let entries = model_vocab.len() + added.len();
        if model_vocab.is_empty() {
            return Err(TokenizeError::BadVocab {
                path: None,
                problem: VocabProblem::Empty,
            });
        }
        // Real vocabularies number their tokens densely; allow generous holes, not a 4-billion-slot table.
        if max_id > 4 * entries + 1024 {
            return Err(TokenizeError::BadVocab {
                path: None,
                problem: VocabProblem::Sparse {
                    max_id: max_id - 1,
                    entries,
                },
            });
        }
        let mut id_bytes: Vec<Option<Vec<u8>>> = vec![None; max_id];
        for (token, &id) in &model_vocab {
            if added.contains_key(&id) {
                continue;
            }
            let b = bytes::symbols_to_bytes(token).ok_or_else(|| TokenizeError::NotByteLevel {
                path: None,
                token: token.clone(),
                id,
            })?;
            id_bytes[id as usize] = Some(b);
        }
        let mut specials = Vec::new();
        for (&id, tok) in &added {
            id_bytes[id as usize] = Some(tok.content.as_bytes().to_vec());
            if tok.special {
                specials.push((tok.content.clone(), id));
            }
        }
        // Longest first, so that matching in `encode_with_specials` is greedy.
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let eot = specials.iter().find(|(c, _)| c == ENDOFTEXT).map(|&(_, id)| id);
        Ok(Self {
            inner,
            id_bytes,
            specials,
            eot,
        })
    }

    /// Writes `tokenizer.json` (pretty-printed).
    ///
    /// Note: the file format cannot record that special tokens in input text
    /// are to be encoded as ordinary text; [`Tokenizer::load`] restores that,
    /// other `tokenizers` users will parse `<|endoftext|>` as the special
    /// token unless they call `set_encode_special_tokens(true)`.
    /// Written atomically ([`crate::fsio::write_atomic`]): a failed or killed save leaves the old file whole.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), TokenizeError> {
        let path = path.as_ref();
        let save_err = |problem: SaveProblem| TokenizeError::Save {
            path: path.to_owned(),
            problem,
        };
        let text = self
            .inner
            .to_string(true)
            .map_err(|e| save_err(SaveProblem::Serialise(e)))?;
        crate::fsio::write_atomic(path, text.as_bytes()).map_err(|e| save_err(SaveProblem::Write(e)))
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes text as ordinary text (tiktoken `encode_ordinary`; also
    /// tiktoken's `encode(text, disallowed_special=())`): special-token text
    /// such as `<|endoftext|>` gives ordinary tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.inner.encode(text, false).map_err(TokenizeError::Encode)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes text, turning every occurrence of a special token's text
    /// (e.g. `<|endoftext|>`) into that special token (tiktoken
    /// `encode(text, allowed_special="all")`).
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let mut ids = Vec::new();
        let mut rest = text;
        'outer: while !rest.is_empty() {
            // Earliest occurrence of any special; longest wins at a position.
            let mut best: Option<(usize, &str, u32)> = None;
            for (content, id) in &self.specials {
                if let Some(pos) = rest.find(content.as_str()) {
                    if best.is_none_or(|(p, c, _)| pos < p || (pos == p && content.len() > c.len())) {
                        best = Some((pos, content, *id));
                    }
                }
            }
            match best {
                Some((pos, content, id)) => {
                    ids.extend(self.encode(&rest[..pos])?);
                    ids.push(id);
                    rest = &rest[pos + content.len()..];
                }
                None => {
                    ids.extend(self.encode(rest)?);
                    break 'outer;
                }
            }
        }
        Ok(ids)
    }

    /// Decodes ids to text, replacing invalid UTF-8 with U+FFFD. Ids without
    /// bytes (unknown, or the dropped `<|startoftext|>`) decode to U+FFFD too;
    /// use [`Tokenizer::decode_bytes`] to have them rejected.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = Vec::new();
        for &id in ids {
            match self.token_bytes_ref(id) {
                Some(b) => out.extend_from_slice(b),
                None => out.extend_from_slice("\u{FFFD}".as_bytes()),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Decodes ids to raw bytes; fails on an id without bytes.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizeError> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes_ref(id).ok_or(TokenizeError::UnknownId(id))?);
        }
        Ok(out)
    }

    /// The raw bytes of one token (tiktoken `decode_single_token_bytes`);
    /// `None` for ids out of range or without bytes (such as 2046 in
    /// `tinypython_2k`). A special token's bytes are its text.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        self.token_bytes_ref(id).map(<[u8]>::to_vec)
    }

    /// Like [`Tokenizer::token_bytes`], borrowed.
    pub fn token_bytes_ref(&self, id: u32) -> Option<&[u8]> {
        self.id_bytes.get(id as usize)?.as_deref()
    }

    /// One token for display: its bytes decoded as UTF-8 with errors
    /// replaced by U+FFFD. An id without bytes shows as `<|unk:ID|>`.
    pub fn token_display(&self, id: u32) -> String {
        match self.token_bytes_ref(id) {
            Some(b) => String::from_utf8_lossy(b).into_owned(),
            None => format!("<|unk:{id}|>"),
        }
    }

    /// One more than the largest id (2048 for `tinypython_2k`), holes
    /// included.
    pub fn vocab_size(&self) -> usize {
        self.id_bytes.len()
    }

    /// The id of the `<|endoftext|>` special token, if there is one.
    pub fn eot_id(&self) -> Option<u32> {
        self.eot
    }

    /// The special tokens, (text, id).
    pub fn special_tokens(&self) -> impl Iterator<Item = (&str, u32)> {
        self.specials.iter().map(|(c, id)| (c.as_str(), *id))
    }

    /// The id of a token given by its raw bytes (ordinary tokens first, then
    /// special tokens by their text).
    pub fn id_of_bytes(&self, bytes: &[u8]) -> Option<u32> {
        let symbols = self::bytes::bytes_to_symbols(bytes);
        if let Some(id) = tokenizers::Model::token_to_id(self.inner.get_model(), &symbols) {
            if !self.specials.iter().any(|&(_, s)| s == id) {
                return Some(id);
            }
        }
        let text = std::str::from_utf8(bytes).ok()?;
        self.specials.iter().find(|(c, _)| c == text).map(|&(_, id)| id)
    }
}

/// Escapes a token's display text so that whitespace and control characters
/// are visible: `\n`, `\r`, `\t`, `\\`, `\"`, other control characters as
/// `\u{..}`. Spaces are kept; quote the result to make them visible.
pub fn escape_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
