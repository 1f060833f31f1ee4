//! Tasks: generators of minimal pairs for circuit discovery (reference-model.md D.3/D.4) and the task loss (D.2).
//!
//! A [`TaskPair`] is two natural Python snippets that differ minimally and each end exactly at a decision point:
//! `prompt` (class 1) continues with `target`, `prompt_alt` (class 2, the counterfactual) with `alt`. The 20
//! built-in tasks of the paper's Table 1 are deterministic template generators ([`registry`], [`by_name`]);
//! a pair depends only on (task, seed, index). [`JsonlTask`] reads a user's pairs from a file.
//!
//! Train and test sets ([`split`]) are disjoint by content: a pair belongs to the test set when a stable hash of
//! its two prompts is 0 mod 5, and the two sets draw from disjoint index ranges (train from 0, test from
//! [`TEST_INDEX_OFFSET`]), skipping the pairs of the other set.

mod builtin;
mod jsonl;
pub mod loss;
mod rng;
pub(crate) mod snippets;
pub mod wild;

use std::path::PathBuf;

pub use jsonl::JsonlTask;
pub use loss::{contrast_loss, contrast_loss_tensor, one_sided_correct, one_sided_loss, pair_correct};

/// The seed that [`split`] and the CLI use unless told otherwise.
pub const DEFAULT_SEED: u64 = 0;

/// Where the test set's indices start (the train set's start at 0).
pub const TEST_INDEX_OFFSET: u64 = 1 << 40;

/// One minimal pair.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskPair {
    /// Class 1; its correct next token is `target`.
    pub prompt: String,
    /// The correct continuation of `prompt` (meant to be one token).
    pub target: String,
    /// The counterfactual (class 2). Equal to `prompt` only for one-sided user items (see [`JsonlTask`]).
    pub prompt_alt: String,
    /// The correct continuation of `prompt_alt`. `None`: the loss pushes `target` down on the counterfactual
    /// over the full vocabulary instead (reference `else_elif`).
    pub alt: Option<String>,
}

impl TaskPair {
    /// A one-sided item has no counterfactual (`prompt_alt == prompt`); score it with [`one_sided_loss`].
    pub fn is_one_sided(&self) -> bool {
        self.prompt == self.prompt_alt
    }
}

/// A source of minimal pairs.
pub trait Task: Send + Sync {
    /// The task's name, e.g. `bracket_counting`.
    fn name(&self) -> &str;
    /// One line on what decides the pair.
    fn description(&self) -> &str;
    /// Pair `index` under `seed`: a function of (seed, index) only.
    fn pair(&self, seed: u64, index: u64) -> TaskPair;
    /// Every string that can be a `target` or `alt`, class 1's first. For most tasks two strings.
    fn targets(&self) -> Vec<String>;
    /// The number of distinct pairs for finite tasks (a jsonl file), `None` for generators.
    fn finite_len(&self) -> Option<usize> {
        None
    }
}

/// What is wrong with one record of a jsonl task file (the `problem` of [`TaskError::Record`]).
#[derive(Debug, thiserror::Error)]
pub enum RecordProblem {
    /// A line longer than any model's context could hold.
    #[error("record of {bytes} bytes; a task prompt longer than {max_kib} KiB cannot fit any model's context")]
    TooLong {
        /// The line's length.
        bytes: usize,
        /// The limit, in KiB.
        max_kib: usize,
    },
    /// The line is not a json record.
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A required field is absent.
    #[error("missing field \"{field}\"")]
    MissingField {
        /// `prompt` or `target`.
        field: &'static str,
    },
    /// A field that must hold text is empty.
    #[error("\"{field}\" is empty")]
    EmptyField {
        /// `prompt`, `target` or `prompt_alt`.
        field: &'static str,
    },
    /// An empty `alt` (null or absent means none).
    #[error("\"alt\" is empty (use null or leave it out)")]
    EmptyAlt,
    /// `alt` equals `target`.
    #[error("\"alt\" equals \"target\"")]
    AltIsTarget,
    /// `prompt_alt` equals `prompt`.
    #[error("\"prompt_alt\" equals \"prompt\" (leave it out for a one-sided item)")]
    PromptAltIsPrompt,
}

/// Errors of task lookup and loading.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A task file could not be read.
    #[error("cannot read task file {path}: {source}")]
    Io {
        /// The task file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record (line) of a task file is malformed.
    #[error("{path}:{line}: {problem}")]
    Record {
        /// The task file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the record.
        #[source]
        problem: RecordProblem,
    },
    /// A task file holds no records.
    #[error("{path}: no records")]
    Empty {
        /// The task file.
        path: PathBuf,
    },
    /// No built-in task has this name.
    #[error("unknown task `{name}`; tasks are: {known}")]
    UnknownTask {
        /// The name as given.
        name: String,
        /// The known task names, comma-separated, for the message.
        known: String,
    },
}

/// A built-in generator task.
struct BuiltinTask {
    spec: &'static builtin::Spec,
    stream: u64,
}

impl Task for BuiltinTask {
    fn name(&self) -> &str {
        self.spec.name
    }

    fn description(&self) -> &str {
        self.spec.description
    }

    fn pair(&self, seed: u64, index: u64) -> TaskPair {
        let mut rng = rng::Rng::new(seed, self.stream, index);
        (self.spec.generate)(&mut rng)
    }

    fn targets(&self) -> Vec<String> {
        (self.spec.targets)()
    }
}

fn builtin(spec: &'static builtin::Spec) -> Box<dyn Task> {
    Box::new(BuiltinTask {
        spec,
        stream: rng::fnv1a(spec.name.as_bytes()),
    })
}

/// The 20 built-in tasks, in the order of the paper's Table 1.
pub fn registry() -> Vec<Box<dyn Task>> {
    builtin::SPECS.iter().map(builtin).collect()
}

/// The built-in tasks' names, in registry order.
pub fn names() -> Vec<&'static str> {
    builtin::SPECS.iter().map(|s| s.name).collect()
}

/// A built-in task by name.
pub fn by_name(name: &str) -> Option<Box<dyn Task>> {
    builtin::SPECS.iter().find(|s| s.name == name).map(builtin)
}

/// Like [`by_name`], with an error that lists the known names.
pub fn lookup(name: &str) -> Result<Box<dyn Task>, TaskError> {
    by_name(name).ok_or_else(|| TaskError::UnknownTask {
        name: name.to_owned(),
        known: names().join(", "),
    })
}

/// A built-in task by name, or a user task from a `.jsonl` file path (see [`JsonlTask`]).
pub fn resolve(name_or_path: &str) -> Result<Box<dyn Task>, TaskError> {
    if name_or_path.ends_with(".jsonl") {
        return Ok(Box::new(JsonlTask::load(name_or_path)?));
    }
    lookup(name_or_path)
}

/// Every target and alt string of every built-in task, deduplicated, in registry order: the strings a tokenizer
/// trainer must make single tokens.
pub fn target_strings() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in registry() {
        for s in t.targets() {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// Train or test of the generator, or wild: pairs mined from the held-out files of real code ([`wild`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The pairs used to train (prune) circuits.
    Train,
    /// The held-out pairs used to evaluate them.
    Test,
    /// Pairs mined from the held-out files of a real-code corpus (`tasks::wild`): code nobody wrote for the task.
    Wild,
}

/// The corpus whose held-out files the wild split mines unless told otherwise.
pub const WILD_CORPUS: &str = "stdlib";

/// `n` wild pairs of `task` from the held-out files of `corpus` (a real-code or mixed corpus; see [`wild`]),
/// deterministic for the corpus's seed and files. A task without a miner has none.
pub fn wild_split(
    task: &str,
    corpus: &crate::data::corpus::CorpusSource,
    n: usize,
) -> Result<Vec<TaskPair>, crate::data::corpus::CorpusError> {
    if !wild::has_miner(task) {
        return Ok(Vec::new());
    }
    // Only real code: synthetic parts of a mix are the generator's own register.
    let mut pairs = Vec::new();
    for (part, _) in corpus.parts() {
        if matches!(part, crate::data::corpus::CorpusSource::RealCode { .. }) {
            pairs.extend(wild::mine(task, part.held_out()?, n - pairs.len()));
        }
        if pairs.len() >= n {
            break;
        }
    }
    Ok(pairs)
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            "wild" => Ok(Split::Wild),
            _ => Err(format!("unknown split `{s}` (expected train, test or wild)")),
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Wild => "wild",
        })
    }
}

/// Which split a pair's content belongs to.
pub fn split_of(pair: &TaskPair) -> Split {
    let mut bytes = Vec::with_capacity(pair.prompt.len() + pair.prompt_alt.len() + 1);
    bytes.extend_from_slice(pair.prompt.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(pair.prompt_alt.as_bytes());
    if rng::fnv1a(&bytes).is_multiple_of(5) {
        Split::Test
    } else {
        Split::Train
    }
}

/// `n` pairs of `split` under [`DEFAULT_SEED`]; see [`split_seeded`].
pub fn split(task: &dyn Task, split: Split, n: usize) -> Vec<TaskPair> {
    split_seeded(task, split, n, DEFAULT_SEED)
}

/// `n` pairs of `split` under `seed`, deterministic. Generators: indices from 0 (train) or
/// [`TEST_INDEX_OFFSET`] (test), keeping the pairs whose content belongs to the split ([`split_of`]), so train
/// and test never share a pair. Finite tasks: their pairs that belong to the split, in order, at most `n` (may
/// be fewer, even none for a tiny file's test split). Generators give fewer than `n` only when 200·n + 1000
/// draws do not find enough. [`Split::Wild`] mines [`WILD_CORPUS`] (see [`wild_split`], which names the corpus
/// and reports errors); here a corpus that cannot be read gives no pairs, with a warning in the log.
pub fn split_seeded(task: &dyn Task, split: Split, n: usize, seed: u64) -> Vec<TaskPair> {
    if split == Split::Wild {
        let source = crate::data::corpus::CorpusSource::parse(&format!("{WILD_CORPUS}:{seed}"));
        return match source.and_then(|c| wild_split(task.name(), &c, n)) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("wild split of {}: {e}", task.name());
                Vec::new()
            }
        };
    }
    if let Some(len) = task.finite_len() {
        return (0..len as u64)
            .map(|i| task.pair(seed, i))
            .filter(|p| split_of(p) == split)
            .take(n)
            .collect();
    }
    let start = match split {
        Split::Train => 0,
        Split::Test | Split::Wild => TEST_INDEX_OFFSET,
    };
    let mut out = Vec::with_capacity(n);
    let budget = 200 * n as u64 + 1000;
    let mut i = 0;
    while out.len() < n && i < budget {
        let p = task.pair(seed, start + i);
        if split_of(&p) == split {
            out.push(p);
        }
        i += 1;
    }
    out
}
