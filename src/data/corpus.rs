//! Corpora: what models train on and what scans read.
//!
//! * [`SyntheticCorpus`]: a deterministic generator of realistic, varied Python modules (a few hundred to ~2,000
//!   characters each). Document `i` depends only on `(seed, i)`, so splits are index ranges and generation
//!   parallelises. The generator uses its own SplitMix64 stream (not `rand`'s `StdRng`), so the text does not
//!   change when dependencies are upgraded. Every construct that the 20 tasks of the paper (Gao et al. 2025,
//!   Table 1) contrast occurs naturally and often: `("`/`('` strings, keyword parameters with `=None`,
//!   `set()`/`""` accumulators (the name often `current`) later used with `.add`/`+=`, `self.x = x`, `with
//!   open(...) as f` vs `f = open(...)` with read- or write-like names, dict vs list literals, list statements
//!   nested to depth 3 (about 15% of statement lines; `]]\n` vs `]\n`), `for` vs `while`, `else` vs `elif`,
//!   f-strings vs plain prints, ternaries, swaps `a, b = b, a`, `for` bodies at every indentation, `lambda` vs
//!   `def`, `if x == y:` vs `x = y`, `if flag == True :` vs `flag = True`, `while True:` vs `return True`,
//!   `enumerate` vs `range`.
//! * [`CorpusSource`]: a corpus named on the command line: `synthetic`, `synthetic:SEED`, a directory (every text
//!   file below it), or a `.jsonl` file (one `{"text": ...}` object per line), with a deterministic
//!   train / held-out split ([`Split`]).
//! * Real code ([`realcode`]): `stdlib` (the machine's Python standard library) and `dir:PATH` (the `.py` files
//!   below a directory), cleaned, split into train / held-out by file.
//! * Mixtures: `mix:stdlib=0.7,synthetic=0.3` ([`CorpusSource::Mix`]): documents of the parts interleaved so that
//!   each part's share of the characters follows its weight.
//! * [`CorpusStats`]: character, line and construct counts, to check a corpus's composition.

mod python;
pub mod realcode;
mod rng;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The seed of `synthetic` without `:SEED`.
pub const DEFAULT_SEED: u64 = 0;

/// First index of the synthetic held-out split; training documents are the indices below it.
pub const SYNTHETIC_HELD_OUT_START: u64 = 1 << 62;

/// For file corpora, document `i` (in reading order) is held out when `i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1`
/// (every 20th document).
pub const HELD_OUT_EVERY: usize = 20;

/// Errors of naming and reading corpora. Messages name the file (and line for jsonl).
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The corpus spec names no corpus this build knows (e.g. a bad `synthetic:SEED`).
    #[error("bad corpus spec {spec:?}: {reason}")]
    BadSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        #[source]
        reason: SpecProblem,
    },
    /// The named path does not exist.
    #[error("corpus {} does not exist", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The path exists but is neither a folder nor a `.jsonl` file.
    #[error("corpus {} is neither a directory nor a .jsonl file", path.display())]
    NotACorpus {
        /// The path as given.
        path: PathBuf,
    },
    /// A corpus file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A jsonl line is not a json object with a text field.
    #[error("{}:{line}: {reason}", path.display())]
    Jsonl {
        /// The jsonl file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        #[source]
        reason: JsonlLineError,
    },
    /// The corpus yields no documents.
    #[error("corpus {} has no documents ({why})", path.display())]
    Empty {
        /// The corpus path.
        path: PathBuf,
        /// Why it has none.
        why: EmptyCorpus,
    },
}

/// What is wrong with a corpus spec (the `reason` of [`CorpusError::BadSpec`]).
#[derive(Debug, thiserror::Error)]
pub enum SpecProblem {
    /// An empty spec.
    #[error("empty; expected `synthetic`, `synthetic:SEED`, a directory or a .jsonl file")]
    Empty,
    /// `synthetic:SEED` with a seed that is not a number.
    #[error("the seed after `synthetic:` must be a non-negative integer ({0})")]
    SyntheticSeed(#[source] std::num::ParseIntError),
    /// A part's `:SEED` or a mix's `seed=N` that is not a number.
    #[error("the seed must be a non-negative integer ({0})")]
    Seed(#[source] std::num::ParseIntError),
    /// A mix item without `=WEIGHT`.
    #[error("`{item}` is not PART=WEIGHT (e.g. stdlib=0.7)")]
    NotPartWeight {
        /// The item as given.
        item: String,
    },
    /// A mix weight that is not a number.
    #[error("the weight of `{part}` is not a number ({source})")]
    WeightNotNumber {
        /// The part.
        part: String,
        /// The parser's complaint.
        #[source]
        source: std::num::ParseFloatError,
    },
    /// A mix weight that is zero, negative or not finite.
    #[error("the weight of `{part}` must be positive")]
    WeightNotPositive {
        /// The part.
        part: String,
    },
    /// A mix inside a mix.
    #[error("a mix cannot contain another mix")]
    NestedMix,
    /// A mix without parts.
    #[error("a mix needs at least one PART=WEIGHT")]
    EmptyMix,
    /// `python3` could not be run to find its standard library.
    #[error("cannot run python3 to find its standard library ({0})")]
    NoPython(#[source] std::io::Error),
    /// `python3` ran but did not print its standard library.
    #[error("python3 could not name its standard library: {stderr}")]
    PythonFailed {
        /// What python3 printed on stderr (its own words).
        stderr: String,
    },
}

/// Why a corpus yields no documents (the `why` of [`CorpusError::Empty`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmptyCorpus {
    /// A folder without files.
    #[error("no files below it")]
    NoFiles,
    /// A jsonl file whose lines are all blank.
    #[error("no non-blank lines")]
    NoLines,
    /// A code folder without `.py` files.
    #[error("no .py files below it")]
    NoPython,
}

/// The deterministic synthetic Python corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticCorpus {
    seed: u64,
}

impl SyntheticCorpus {
    /// The corpus generated from `seed`; the same seed always yields the same documents.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The seed the documents are generated from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Document `index`: a Python module that depends only on `(seed, index)`.
    pub fn document(&self, index: u64) -> String {
        python::generate(self.seed, index)
    }

    /// The documents of an index range, in order.
    pub fn documents(&self, range: Range<u64>) -> impl Iterator<Item = String> + Send + 'static {
        let c = *self;
        range.map(move |i| c.document(i))
    }
}

/// Which part of a corpus to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// Every document. For a synthetic corpus this is the training range (the held-out range starts at 2^62 and
    /// is never reached in practice).
    #[default]
    All,
    /// The training documents: synthetic indices `0..2^62`; for files all but every 20th document.
    Train,
    /// The held-out documents: synthetic indices `2^62..`; for files every 20th document (the 20th, 40th, ...).
    HeldOut,
}

/// A corpus named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorpusSource {
    /// `synthetic` or `synthetic:SEED`.
    Synthetic {
        /// Seed of the generator (the default seed when the spec has none).
        seed: u64,
    },
    /// Every text file below the directory, recursively, in sorted path order. Hidden files and directories
    /// (names starting with `.`) are skipped, and so are files that are not UTF-8 or contain a NUL byte
    /// (counted, see [`Documents::skipped`]) and empty files.
    Directory(PathBuf),
    /// A `.jsonl` file: one JSON object with a string field `"text"` per line (blank lines are ignored).
    Jsonl(PathBuf),
    /// `stdlib[:SEED]` (the machine's Python standard library, found with `python3`) or `dir:PATH[:SEED]`: the
    /// cleaned `.py` files below `root` in a seeded order, held out by file ([`realcode`]).
    RealCode {
        /// `stdlib` or `dir:PATH`, as written.
        label: String,
        /// The folder whose `.py` files are read (the standard library's, or the user's).
        root: PathBuf,
        /// Seeds the order in which the files are served.
        seed: u64,
    },
    /// `mix:PART=WEIGHT,PART=WEIGHT[,seed=N]`: parts (any spec but another mix, without commas) interleaved so
    /// that each part's share of the characters is its weight's share of the total. The mix ends when a finite
    /// part runs out, so the shares hold over every prefix.
    Mix {
        /// (part, weight in thousandths).
        parts: Vec<(CorpusSource, u32)>,
    },
}

impl std::fmt::Display for CorpusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorpusSource::Synthetic { seed } => write!(f, "synthetic:{seed}"),
            CorpusSource::Directory(p) | CorpusSource::Jsonl(p) => write!(f, "{}", p.display()),
            CorpusSource::RealCode { label, seed, .. } => {
                if *seed == DEFAULT_SEED {
                    write!(f, "{label}")
                } else {
                    write!(f, "{label}:{seed}")
                }
            }
            CorpusSource::Mix { parts } => {
                f.write_str("mix:")?;
                for (i, (p, w)) in parts.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{p}={}", *w as f64 / 1000.0)?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for CorpusSource {
    type Err = CorpusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl CorpusSource {
    /// Parses `synthetic`, `synthetic:SEED`, `stdlib`, `stdlib:SEED`, `dir:PATH`, `mix:PART=W,...`, a
    /// directory, or a `.jsonl` file. Paths must exist.
    pub fn parse(spec: &str) -> Result<Self, CorpusError> {
        let trimmed = spec.trim();
        if let Some(rest) = trimmed.strip_prefix("mix:") {
            return parse_mix(spec, rest);
        }
        if trimmed == "stdlib" || trimmed.starts_with("stdlib:") {
            let seed = match trimmed.strip_prefix("stdlib:") {
                Some(s) => parse_seed(spec, s)?,
                None => DEFAULT_SEED,
            };
            return Ok(CorpusSource::RealCode {
                label: "stdlib".into(),
                root: realcode::stdlib_dir()?,
                seed,
            });
        }
        if let Some(rest) = trimmed.strip_prefix("dir:") {
            // `dir:PATH:SEED` when the text after the last colon is a number and PATH alone exists.
            let (path, seed) = match rest.rsplit_once(':') {
                Some((p, s)) if s.parse::<u64>().is_ok() && Path::new(p).is_dir() => (p, parse_seed(spec, s)?),
                _ => (rest, DEFAULT_SEED),
            };
            let root = PathBuf::from(path);
            if !root.is_dir() {
                return Err(CorpusError::NotFound { path: root });
            }
            return Ok(CorpusSource::RealCode {
                label: format!("dir:{path}"),
                root,
                seed,
            });
        }
        if trimmed.is_empty() {
            return Err(CorpusError::BadSpec {
                spec: spec.to_owned(),
                reason: SpecProblem::Empty,
            });
        }
        if trimmed == "synthetic" {
            return Ok(CorpusSource::Synthetic { seed: DEFAULT_SEED });
        }
        if let Some(seed) = trimmed.strip_prefix("synthetic:") {
            let seed = seed.trim().parse::<u64>().map_err(|e| CorpusError::BadSpec {
                spec: spec.to_owned(),
                reason: SpecProblem::SyntheticSeed(e),
            })?;
            return Ok(CorpusSource::Synthetic { seed });
        }
        let path = PathBuf::from(spec);
        let meta = fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CorpusError::NotFound { path: path.clone() },
            _ => CorpusError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            Ok(CorpusSource::Directory(path))
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl")) {
            Ok(CorpusSource::Jsonl(path))
        } else {
            Err(CorpusError::NotACorpus { path })
        }
    }

    /// All documents ([`Split::All`]). Synthetic: an effectively endless iterator (2^62 documents) — take what
    /// you need. Directory and jsonl: finite, read lazily (a jsonl file is validated in full first, so that a bad
    /// line is reported before any document is used).
    pub fn documents(&self) -> Result<Box<dyn Iterator<Item = String> + Send>, CorpusError> {
        Ok(Box::new(self.split(Split::All)?))
    }

    /// The held-out documents (see [`Split::HeldOut`]); disjoint from [`CorpusSource::train`].
    pub fn held_out(&self) -> Result<Documents, CorpusError> {
        self.split(Split::HeldOut)
    }

    /// The training documents (see [`Split::Train`]).
    pub fn train(&self) -> Result<Documents, CorpusError> {
        self.split(Split::Train)
    }

    /// The parts of a mix with their weights (in thousandths); any other corpus is its own single part.
    pub fn parts(&self) -> Vec<(CorpusSource, u32)> {
        match self {
            CorpusSource::Mix { parts } => parts.clone(),
            other => vec![(other.clone(), 1000)],
        }
    }

    /// The documents of one split, each with the index of the part (see [`CorpusSource::parts`]) it came from.
    pub fn split_labelled(
        &self,
        split: Split,
    ) -> Result<Box<dyn Iterator<Item = (usize, String)> + Send>, CorpusError> {
        match self {
            CorpusSource::Mix { parts } => {
                let mut streams = Vec::with_capacity(parts.len());
                for (p, w) in parts {
                    streams.push((p.split(split)?, *w, 0u64));
                }
                Ok(Box::new(Mixed { streams }))
            }
            other => Ok(Box::new(other.split(split)?.map(|d| (0, d)))),
        }
    }

    /// The documents of one split, with a count of skipped files.
    pub fn split(&self, split: Split) -> Result<Documents, CorpusError> {
        let skipped = Arc::new(AtomicUsize::new(0));
        let inner: Box<dyn Iterator<Item = String> + Send> = match self {
            CorpusSource::RealCode { root, seed, .. } => {
                let files = realcode::code_files(root, *seed)?;
                let counter = skipped.clone();
                Box::new(
                    files
                        .into_iter()
                        .filter(move |f| match split {
                            Split::All => true,
                            Split::Train => !f.is_held_out(),
                            Split::HeldOut => f.is_held_out(),
                        })
                        .filter_map(move |f| match f.read() {
                            Ok(t) => Some(t),
                            Err(realcode::Rejected::NotText) => {
                                counter.fetch_add(1, Ordering::Relaxed);
                                None
                            }
                            Err(_) => None,
                        }),
                )
            }
            CorpusSource::Mix { parts } => {
                let mut streams = Vec::with_capacity(parts.len());
                for (p, w) in parts {
                    streams.push((p.split(split)?, *w));
                }
                Box::new(
                    Mixed {
                        streams: streams.into_iter().map(|(d, w)| (d, w, 0u64)).collect(),
                    }
                    .map(|(_, d)| d),
                )
            }
            CorpusSource::Synthetic { seed } => {
                let range = match split {
                    Split::All | Split::Train => 0..SYNTHETIC_HELD_OUT_START,
                    Split::HeldOut => SYNTHETIC_HELD_OUT_START..u64::MAX,
                };
                Box::new(SyntheticCorpus::new(*seed).documents(range))
            }
            CorpusSource::Directory(dir) => {
                let files = list_files(dir)?;
                if files.is_empty() {
                    return Err(CorpusError::Empty {
                        path: dir.clone(),
                        why: EmptyCorpus::NoFiles,
                    });
                }
                let counter = skipped.clone();
                let docs = files.into_iter().filter_map(move |p| match read_text_file(&p) {
                    Some(t) if t.is_empty() => None,
                    Some(t) => Some(t),
                    None => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                });
                filter_split(docs, split)
            }
            CorpusSource::Jsonl(path) => {
                let n = validate_jsonl(path)?;
                if n == 0 {
                    return Err(CorpusError::Empty {
                        path: path.clone(),
                        why: EmptyCorpus::NoLines,
                    });
                }
                let file = fs::File::open(path).map_err(|source| CorpusError::Io {
                    path: path.clone(),
                    source,
                })?;
                let docs = BufReader::new(file).lines().map_while(Result::ok).filter_map(|l| {
                    if l.trim().is_empty() {
                        return None;
                    }
                    jsonl_text(&l).ok()
                });
                filter_split(docs, split)
            }
        };
        Ok(Documents { inner, skipped })
    }
}

fn parse_seed(spec: &str, s: &str) -> Result<u64, CorpusError> {
    s.trim().parse::<u64>().map_err(|e| CorpusError::BadSpec {
        spec: spec.to_owned(),
        reason: SpecProblem::Seed(e),
    })
}

/// `PART=WEIGHT,...[,seed=N]`; `seed=N` reseeds the parts that take a seed (synthetic and real code) unless the
/// part names its own.
fn parse_mix(spec: &str, rest: &str) -> Result<CorpusSource, CorpusError> {
    let bad = |reason: SpecProblem| CorpusError::BadSpec {
        spec: spec.to_owned(),
        reason,
    };
    let mut parts = Vec::new();
    let mut seed = None;
    for item in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, weight) = item
            .rsplit_once('=')
            .ok_or_else(|| bad(SpecProblem::NotPartWeight { item: item.to_string() }))?;
        if name.trim() == "seed" {
            seed = Some(parse_seed(spec, weight)?);
            continue;
        }
        let w: f64 = weight.trim().parse().map_err(|source| {
            bad(SpecProblem::WeightNotNumber {
                part: name.to_string(),
                source,
            })
        })?;
        if !(w.is_finite() && w > 0.0) {
            return Err(bad(SpecProblem::WeightNotPositive { part: name.to_string() }));
        }
        if name.trim().starts_with("mix:") {
            return Err(bad(SpecProblem::NestedMix));
        }
        let part = CorpusSource::parse(name)?;
        let thousandths = (w * 1000.0).round().max(1.0) as u32;
        parts.push((part, thousandths, name.contains(':') && !name.starts_with("dir:")));
    }
    if parts.is_empty() {
        return Err(bad(SpecProblem::EmptyMix));
    }
    let parts = parts
        .into_iter()
        .map(|(mut p, w, own_seed)| {
            if let (Some(s), false) = (seed, own_seed) {
                match &mut p {
                    CorpusSource::Synthetic { seed } | CorpusSource::RealCode { seed, .. } => *seed = s,
                    _ => {}
                }
            }
            (p, w)
        })
        .collect();
    Ok(CorpusSource::Mix { parts })
}

/// Interleaves documents: the next comes from the part furthest below its share of the characters so far (ties:
/// the first part), so the mix is deterministic and each prefix follows the weights. Ends when a part ends.
struct Mixed {
    /// (documents, weight, characters taken).
    streams: Vec<(Documents, u32, u64)>,
}

impl Iterator for Mixed {
    /// (index of the part, document).
    type Item = (usize, String);
    fn next(&mut self) -> Option<(usize, String)> {
        // chars / weight smallest, compared exactly as chars_a * w_b < chars_b * w_a.
        let i = (0..self.streams.len()).min_by(|&a, &b| {
            let (_, wa, ca) = &self.streams[a];
            let (_, wb, cb) = &self.streams[b];
            (*ca as u128 * *wb as u128).cmp(&(*cb as u128 * *wa as u128))
        })?;
        let (docs, _, chars) = &mut self.streams[i];
        let d = docs.next()?;
        *chars += d.len() as u64;
        Some((i, d))
    }
}

/// An iterator over a corpus's documents that counts the files it skipped (binary or non-UTF-8).
pub struct Documents {
    inner: Box<dyn Iterator<Item = String> + Send>,
    skipped: Arc<AtomicUsize>,
}

impl Documents {
    /// Files skipped so far because they were binary, not UTF-8 or unreadable (directory corpora only).
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }
}

impl Iterator for Documents {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        self.inner.next()
    }
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents").field("skipped", &self.skipped()).finish()
    }
}

fn filter_split(
    docs: impl Iterator<Item = String> + Send + 'static,
    split: Split,
) -> Box<dyn Iterator<Item = String> + Send> {
    match split {
        Split::All => Box::new(docs),
        Split::Train => Box::new(
            docs.enumerate()
                .filter(|(i, _)| i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1)
                .map(|(_, d)| d),
        ),
        Split::HeldOut => Box::new(
            docs.enumerate()
                .filter(|(i, _)| i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1)
                .map(|(_, d)| d),
        ),
    }
}

/// Every regular file below `dir` (not following symlinked directories, skipping hidden names), sorted.
fn list_files(dir: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|source| CorpusError::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| CorpusError::Io {
                path: d.clone(),
                source,
            })?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let ft = entry.file_type().map_err(|source| CorpusError::Io {
                path: path.clone(),
                source,
            })?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The file's text, or `None` if it is unreadable, not UTF-8, or contains a NUL byte.
fn read_text_file(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Why a line of a jsonl corpus is not a document.
#[derive(Debug, thiserror::Error)]
pub enum JsonlLineError {
    /// The line could not be read (an I/O error, or bytes that are not UTF-8).
    #[error("cannot read line: {0}")]
    Read(#[source] std::io::Error),
    /// The line is not json.
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The json is not an object.
    #[error("expected a JSON object with a \"text\" field")]
    NotObject,
    /// The object has no `text` field.
    #[error("object has no \"text\" field")]
    NoText,
    /// `text` is not a string.
    #[error("field \"text\" must be a string, found {0}")]
    TextNotString(&'static str),
}

fn jsonl_text(line: &str) -> Result<String, JsonlLineError> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(JsonlLineError::Json)?;
    let obj = v.as_object().ok_or(JsonlLineError::NotObject)?;
    match obj.get("text") {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(JsonlLineError::TextNotString(json_kind(other))),
        None => Err(JsonlLineError::NoText),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Checks every line of a jsonl file; returns the number of documents.
fn validate_jsonl(path: &Path) -> Result<usize, CorpusError> {
    let file = fs::File::open(path).map_err(|source| CorpusError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut n = 0;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| CorpusError::Jsonl {
            path: path.to_owned(),
            line: i + 1,
            reason: JsonlLineError::Read(e),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        jsonl_text(&line).map_err(|reason| CorpusError::Jsonl {
            path: path.to_owned(),
            line: i + 1,
            reason,
        })?;
        n += 1;
    }
    Ok(n)
}

// --------------------------------------------------------------------------------------------------------------
// Statistics.

/// A construct counted by [`CorpusStats`]: a name, what it means, and a test on one line (without its newline).
pub struct Construct {
    /// Short name, the key in [`CorpusStats::constructs`].
    pub name: &'static str,
    /// One line saying what is counted.
    pub description: &'static str,
    matches: fn(&str, &str) -> bool,
}

impl Construct {
    /// Whether `line` (without its trailing newline) shows the construct.
    pub fn matches(&self, line: &str) -> bool {
        (self.matches)(line, line.trim_start())
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `NAME = rest` with a plain identifier on the left; returns `rest`.
fn simple_assign(t: &str) -> Option<(&str, &str)> {
    let (lhs, rhs) = t.split_once(" = ")?;
    is_ident(lhs).then_some((lhs, rhs))
}

fn is_swap(t: &str) -> bool {
    let Some((lhs, rhs)) = t.split_once(" = ") else {
        return false;
    };
    let (Some((a, b)), Some((c, d))) = (lhs.split_once(", "), rhs.split_once(", ")) else {
        return false;
    };
    a == d && b == c && !a.is_empty() && !b.is_empty()
}

fn has_fstring(l: &str) -> bool {
    let b = l.as_bytes();
    (0..b.len().saturating_sub(1)).any(|i| {
        b[i] == b'f'
            && (b[i + 1] == b'"' || b[i + 1] == b'\'')
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
    })
}

fn is_list_stmt(t: &str) -> bool {
    let rhs = match simple_assign(t) {
        Some((_, r)) => r,
        None => match t.split_once(" = ") {
            Some((l, r)) if l.starts_with("self.") && is_ident(&l[5..]) => r,
            _ => t.strip_prefix("return ").unwrap_or(""),
        },
    };
    (rhs.starts_with('[') && (rhs.ends_with(']') || rhs == "[")) && rhs != "[]"
        || (t.contains(".append([") || t.starts_with("print([")) && t.ends_with("])")
}

/// The constructs [`CorpusStats`] counts, one test per line each.
pub const CONSTRUCTS: &[Construct] = &[
    Construct {
        name: "list_stmt",
        description: "statement assigning/returning a non-empty list literal (line)",
        matches: |_, t| is_list_stmt(t),
    },
    Construct {
        name: "ends_]]",
        description: "line ending `]]`",
        matches: |l, _| l.ends_with("]]"),
    },
    Construct {
        name: "nested_ends_]",
        description: "list literal opening `[[` whose line ends with a single `]` (`[[1, 2], 3, 4]`)",
        matches: |_, t| {
            t.split_once(" = [[")
                .is_some_and(|(l, _)| is_ident(l.trim_start_matches("self.")))
                && t.ends_with(']')
                && !t.ends_with("]]")
        },
    },
    Construct {
        name: "int_key_dict",
        description: "dict literal with an int key `{3: ...`",
        matches: |_, t| {
            simple_assign(t).is_some_and(|(_, r)| {
                r.strip_prefix('{')
                    .and_then(|r| r.split_once(": "))
                    .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()))
            })
        },
    },
    Construct {
        name: "while_name",
        description: "`while NAME:`",
        matches: |_, t| {
            t.strip_prefix("while ")
                .and_then(|r| r.strip_suffix(':'))
                .is_some_and(|n| is_ident(n) && n != "True")
        },
    },
    Construct {
        name: "def_last_=None",
        description: "`def` whose last parameter defaults to None, after another parameter",
        matches: |_, t| t.starts_with("def ") && t.ends_with("=None):") && t.contains(", "),
    },
    Construct {
        name: "print(\"label\", x)",
        description: "`print(\"Label\", value)`",
        matches: |_, t| {
            (t.starts_with("print(\"") || t.starts_with("print('"))
                && (t.contains("\", ") || t.contains("', "))
                && t.ends_with(')')
        },
    },
    Construct {
        name: "ends_]",
        description: "line ending `]` but not `]]`",
        matches: |l, _| l.ends_with(']') && !l.ends_with("]]"),
    },
    Construct {
        name: "list_depth3",
        description: "line with `[[[`",
        matches: |l, _| l.contains("[[["),
    },
    Construct {
        name: "dict_literal",
        description: "dict literal with a quoted key `{\"k\": ...`",
        matches: |l, _| l.contains("{\"") && l.contains("\": ") || l.contains("{'") && l.contains("': "),
    },
    Construct {
        name: "set_literal",
        description: "`NAME = {a, b}` (no colon)",
        matches: |_, t| {
            simple_assign(t)
                .is_some_and(|(_, r)| r.starts_with('{') && r.ends_with('}') && r.len() > 2 && !r.contains(':'))
        },
    },
    Construct {
        name: "set_init",
        description: "`NAME = set()`",
        matches: |_, t| simple_assign(t).is_some_and(|(_, r)| r == "set()"),
    },
    Construct {
        name: "str_init",
        description: "`NAME = \"\"` or `NAME = ''`",
        matches: |_, t| simple_assign(t).is_some_and(|(_, r)| r == "\"\"" || r == "''"),
    },
    Construct {
        name: "current_init",
        description: "`current = set()` / `current = \"\"`",
        matches: |_, t| t == "current = set()" || t == "current = \"\"" || t == "current = ''",
    },
    Construct {
        name: ".add(",
        description: "`.add(` call",
        matches: |l, _| l.contains(".add("),
    },
    Construct {
        name: "+=",
        description: "` += `",
        matches: |l, _| l.contains(" += "),
    },
    Construct {
        name: "current.add/+=",
        description: "`current.add(` or `current += `",
        matches: |_, t| t.starts_with("current.add(") || t.starts_with("current += "),
    },
    Construct {
        name: "with_open",
        description: "`with open(`",
        matches: |_, t| t.starts_with("with open("),
    },
    Construct {
        name: "with_open_r",
        description: "`with open(..., 'r')` (or \"r\")",
        matches: |_, t| t.starts_with("with open(") && (t.contains("'r'") || t.contains("\"r\"")),
    },
    Construct {
        name: "with_open_w",
        description: "`with open(..., 'w')` (or \"w\")",
        matches: |_, t| t.starts_with("with open(") && (t.contains("'w'") || t.contains("\"w\"")),
    },
    Construct {
        name: "open_assign",
        description: "`NAME = open(`",
        matches: |_, t| simple_assign(t).is_some_and(|(_, r)| r.starts_with("open(")),
    },
    Construct {
        name: "lambda",
        description: "line with `lambda`",
        matches: |l, _| l.contains("lambda"),
    },
    Construct {
        name: "lambda_assign",
        description: "`NAME = lambda`",
        matches: |_, t| simple_assign(t).is_some_and(|(_, r)| r.starts_with("lambda")),
    },
    Construct {
        name: "def",
        description: "`def ` line",
        matches: |_, t| t.starts_with("def "),
    },
    Construct {
        name: "def_=None",
        description: "`def` with a `=None` keyword parameter",
        matches: |_, t| t.starts_with("def ") && t.contains("=None"),
    },
    Construct {
        name: "def_no_kwargs",
        description: "`def` whose header ends `):` without `=`",
        matches: |_, t| t.starts_with("def ") && t.ends_with("):") && !t.contains('='),
    },
    Construct {
        name: "class",
        description: "`class ` line",
        matches: |_, t| t.starts_with("class "),
    },
    Construct {
        name: "__init__",
        description: "`def __init__(`",
        matches: |_, t| t.starts_with("def __init__("),
    },
    Construct {
        name: "self.x = x",
        description: "`self.NAME = NAME`",
        matches: |_, t| {
            t.strip_prefix("self.")
                .and_then(|r| r.split_once(" = "))
                .is_some_and(|(a, b)| a == b && is_ident(a))
        },
    },
    Construct {
        name: "for_range",
        description: "`for ... in range(`",
        matches: |_, t| t.starts_with("for ") && t.contains(" in range("),
    },
    Construct {
        name: "for_enumerate",
        description: "`for ..., ... in enumerate(`",
        matches: |_, t| t.starts_with("for ") && t.contains(" in enumerate("),
    },
    Construct {
        name: "for_other",
        description: "other `for` loops",
        matches: |_, t| t.starts_with("for ") && !t.contains(" in range(") && !t.contains(" in enumerate("),
    },
    Construct {
        name: "while_true",
        description: "`while True:`",
        matches: |_, t| t == "while True:",
    },
    Construct {
        name: "while_cond",
        description: "other `while` loops",
        matches: |_, t| t.starts_with("while ") && t != "while True:",
    },
    Construct {
        name: "return_true",
        description: "`return True`",
        matches: |_, t| t == "return True",
    },
    Construct {
        name: "if",
        description: "`if ` line",
        matches: |_, t| t.starts_with("if "),
    },
    Construct {
        name: "elif",
        description: "`elif ` line",
        matches: |_, t| t.starts_with("elif "),
    },
    Construct {
        name: "else",
        description: "`else:` line",
        matches: |_, t| t == "else:",
    },
    Construct {
        name: "ternary",
        description: "`A if C else B` expression",
        matches: |_, t| {
            !t.starts_with("if ")
                && !t.starts_with("elif ")
                && t.contains(" if ")
                && t.contains(" else ")
                && !t.contains(" for ")
        },
    },
    Construct {
        name: "if_==",
        description: "`if ... == ...:`",
        matches: |_, t| t.starts_with("if ") && t.contains(" == "),
    },
    Construct {
        name: "== True :",
        description: "`if X == True :` (space before the colon)",
        matches: |_, t| t.starts_with("if ") && t.ends_with(" :"),
    },
    Construct {
        name: "x = True",
        description: "`NAME = True`",
        matches: |_, t| simple_assign(t).is_some_and(|(_, r)| r == "True"),
    },
    Construct {
        name: "swap",
        description: "`a, b = b, a`",
        matches: |_, t| is_swap(t),
    },
    Construct {
        name: "fstring",
        description: "f-string",
        matches: |l, _| has_fstring(l),
    },
    Construct {
        name: "print(\"",
        description: "`print(\"`",
        matches: |l, _| l.contains("print(\""),
    },
    Construct {
        name: "print('",
        description: "`print('`",
        matches: |l, _| l.contains("print('"),
    },
    Construct {
        name: "print(f",
        description: "`print(f\"` / `print(f'`",
        matches: |l, _| l.contains("print(f\"") || l.contains("print(f'"),
    },
    Construct {
        name: "comment",
        description: "comment line",
        matches: |_, t| t.starts_with('#'),
    },
    Construct {
        name: "import",
        description: "import line",
        matches: |_, t| t.starts_with("import ") || t.starts_with("from ") && t.contains(" import "),
    },
    Construct {
        name: "try/except",
        description: "`try:` line",
        matches: |_, t| t == "try:",
    },
    Construct {
        name: "indent_4",
        description: "line indented 4 levels (16 spaces)",
        matches: |l, _| l.starts_with("                ") && !l.starts_with("                 "),
    },
    Construct {
        name: "main_guard",
        description: "`if __name__ == ...`",
        matches: |_, t| t.starts_with("if __name__ =="),
    },
];

/// Counts of characters, lines and [`CONSTRUCTS`] over some documents.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CorpusStats {
    /// Documents counted.
    pub documents: u64,
    /// Unicode scalar values (chars) over all documents.
    pub chars: u64,
    /// UTF-8 bytes over all documents.
    pub bytes: u64,
    /// Lines over all documents (a last line without newline counts).
    pub lines: u64,
    /// Lines holding only whitespace (or nothing).
    pub blank_lines: u64,
    /// Lines whose first non-blank character is `#`.
    pub comment_lines: u64,
    /// Non-blank, non-comment lines.
    pub statement_lines: u64,
    /// Characters of the shortest document.
    pub min_doc_chars: u64,
    /// Characters of the longest document.
    pub max_doc_chars: u64,
    /// Per construct name (in [`CONSTRUCTS`]): the number of lines showing it.
    pub constructs: BTreeMap<String, u64>,
}

impl CorpusStats {
    /// All counts zero, with every construct of [`CONSTRUCTS`] present at 0.
    pub fn new() -> Self {
        Self {
            constructs: CONSTRUCTS.iter().map(|c| (c.name.to_owned(), 0)).collect(),
            ..Self::default()
        }
    }

    /// Adds one document.
    pub fn add(&mut self, doc: &str) {
        let chars = doc.chars().count() as u64;
        if self.documents == 0 || chars < self.min_doc_chars {
            self.min_doc_chars = chars;
        }
        self.max_doc_chars = self.max_doc_chars.max(chars);
        self.documents += 1;
        self.chars += chars;
        self.bytes += doc.len() as u64;
        for line in doc.lines() {
            self.lines += 1;
            let t = line.trim();
            if t.is_empty() {
                self.blank_lines += 1;
                continue;
            }
            if t.starts_with('#') {
                self.comment_lines += 1;
            } else {
                self.statement_lines += 1;
            }
            for c in CONSTRUCTS {
                if c.matches(line) {
                    *self.constructs.entry(c.name.to_owned()).or_default() += 1;
                }
            }
        }
    }

    /// The count of one construct (0 for unknown names).
    pub fn count(&self, name: &str) -> u64 {
        self.constructs.get(name).copied().unwrap_or(0)
    }

    /// Stats of some documents.
    pub fn of<'a>(docs: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = Self::new();
        for d in docs {
            s.add(d);
        }
        s
    }
}
