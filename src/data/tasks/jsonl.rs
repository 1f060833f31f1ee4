//! User tasks from a jsonl file.
//!
//! One record per line: `{"prompt": STR, "target": STR, "alt": STR|null, "prompt_alt": STR}`; blank lines are
//! skipped, other fields are ignored. `prompt` and `target` are required and non-empty.
//!
//! * With `prompt_alt`: a minimal pair like the built-in tasks (`alt` optional; without it the counterfactual's
//!   loss is the full-vocabulary branch).
//! * Without `prompt_alt`: a **one-sided** item: the pair gets `prompt_alt == prompt`
//!   ([`TaskPair::is_one_sided`]), and it must be scored on the prompt alone with
//!   [`one_sided_loss`](super::one_sided_loss) / [`one_sided_correct`](super::one_sided_correct): `target` should
//!   beat `alt` (or, without `alt`, have p > 0.5). The two-sided loss of such a pair is meaningless (its minimum
//!   is indifference between the two tokens).
//! * `alt` equal to `target` is an error, as is a `prompt_alt` equal to `prompt` (leave it out instead).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{RecordProblem, Task, TaskError, TaskPair};

/// The longest record accepted. Prompts are left-truncated to the context anyway; a 5 MB prompt once took
/// 1.1 GB to tokenize before the truncation threw it away.
const MAX_RECORD_BYTES: usize = 256 << 10;

#[derive(Deserialize)]
struct Record {
    prompt: Option<String>,
    target: Option<String>,
    #[serde(default)]
    alt: Option<String>,
    #[serde(default)]
    prompt_alt: Option<String>,
}

/// A task read from a jsonl file: a finite list of pairs.
#[derive(Debug, Clone)]
pub struct JsonlTask {
    name: String,
    description: String,
    path: PathBuf,
    pairs: Vec<TaskPair>,
}

impl JsonlTask {
    /// Reads `path`; the task is named after the file stem.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TaskError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TaskError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses jsonl `text`; `path` only names the source in errors and in the task's name.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TaskError> {
        let mut pairs = Vec::new();
        let err = |line: usize, problem: RecordProblem| TaskError::Record {
            path: path.to_owned(),
            line,
            problem,
        };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            if raw.len() > MAX_RECORD_BYTES {
                return Err(err(
                    line,
                    RecordProblem::TooLong {
                        bytes: raw.len(),
                        max_kib: MAX_RECORD_BYTES >> 10,
                    },
                ));
            }
            let rec: Record = serde_json::from_str(raw).map_err(|e| err(line, RecordProblem::Json(e)))?;
            let prompt = rec
                .prompt
                .ok_or_else(|| err(line, RecordProblem::MissingField { field: "prompt" }))?;
            let target = rec
                .target
                .ok_or_else(|| err(line, RecordProblem::MissingField { field: "target" }))?;
            if prompt.is_empty() {
                return Err(err(line, RecordProblem::EmptyField { field: "prompt" }));
            }
            if target.is_empty() {
                return Err(err(line, RecordProblem::EmptyField { field: "target" }));
            }
            if rec.alt.as_deref() == Some("") {
                return Err(err(line, RecordProblem::EmptyAlt));
            }
            if rec.alt.as_deref() == Some(target.as_str()) {
                return Err(err(line, RecordProblem::AltIsTarget));
            }
            let prompt_alt = match rec.prompt_alt {
                Some(p) if p == prompt => return Err(err(line, RecordProblem::PromptAltIsPrompt)),
                Some(p) if p.is_empty() => return Err(err(line, RecordProblem::EmptyField { field: "prompt_alt" })),
                Some(p) => p,
                None => prompt.clone(),
            };
            pairs.push(TaskPair {
                prompt,
                target,
                prompt_alt,
                alt: rec.alt,
            });
        }
        if pairs.is_empty() {
            return Err(TaskError::Empty { path: path.to_owned() });
        }
        let name = path
            .file_stem()
            .map_or_else(|| "jsonl".to_owned(), |s| s.to_string_lossy().into_owned());
        let description = format!("user task from {} ({} pairs)", path.display(), pairs.len());
        Ok(JsonlTask {
            name,
            description,
            path: path.to_owned(),
            pairs,
        })
    }

    /// All pairs, in file order.
    pub fn pairs(&self) -> &[TaskPair] {
        &self.pairs
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Task for JsonlTask {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    /// Pair `index` modulo the number of records (the file order; `seed` is not used).
    fn pair(&self, _seed: u64, index: u64) -> TaskPair {
        self.pairs[(index % self.pairs.len() as u64) as usize].clone()
    }

    fn targets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.pairs {
            for s in std::iter::once(&p.target).chain(p.alt.as_ref()) {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    fn finite_len(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}
