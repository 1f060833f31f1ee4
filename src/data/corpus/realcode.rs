//! Real Python code as a corpus: the machine's standard library (`stdlib`) or any directory of `.py` files
//! (`dir:PATH`), cleaned the way the reference's tinypython data was meant to be: code a small model can learn
//! from, in the register of the synthetic generator.
//!
//! Cleaning (measured with `corpus stats`, figures in docs/corpus.md):
//! * Test files are dropped (a path component `test`, `tests` or `idle_test`, or a file named `test_*.py` /
//!   `*_test.py`): in the standard library they are as large as the rest of it together and full of deliberately
//!   odd code (encodings, syntax errors, data tables).
//! * Files with any non-ASCII character are dropped: the 2,048-token byte-level vocabulary would spend merges on
//!   UTF-8 fragments that no task needs; these are a few percent of the files.
//! * Docstrings longer than [`MAX_DOCSTRING_LINES`] lines keep their first line only (`"""Summary."""`): long
//!   prose dominates the standard library otherwise, while code stays valid and the quote tokens stay common.
//! * Comments are kept: they are short, and real code has them.
//! * Runs of more than two blank lines become two; trailing whitespace is removed.
//! * Files larger than [`MAX_FILE_BYTES`] after cleaning are dropped (generated tables such as
//!   `pydoc_data/topics.py`).
//!
//! The held-out split is by file: a file is held out when a stable hash (FNV-1a) of its path relative to the
//! root, with `/` separators, is 0 modulo [`HELD_OUT_EVERY`]. Adding or removing other
//! files never moves a file between splits. Reading order is a seeded shuffle of the files, so that a corpus cut
//! at a token budget draws from the whole tree, and the same seed and files give the same documents.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{list_files, read_text_file, CorpusError, EmptyCorpus, SpecProblem};
use circuitscope_kernels::rng::mix64;

/// A file is held out when the hash of its relative path is 0 modulo this (about 10% of the files: the
/// standard library keeps ~700 files after cleaning, and the wild split needs enough of them).
pub const HELD_OUT_EVERY: u64 = 10;

/// A docstring with more lines than this keeps only its first line.
pub const MAX_DOCSTRING_LINES: usize = 6;

/// Files larger than this after cleaning are dropped.
pub const MAX_FILE_BYTES: usize = 100_000;

/// Why a file is not in the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Rejected {
    /// A test file (by its path).
    TestFile,
    /// Unreadable, not UTF-8 or binary.
    NotText,
    /// Contains a non-ASCII character.
    NonAscii,
    /// Larger than [`MAX_FILE_BYTES`] after cleaning.
    TooLarge,
    /// Nothing left after cleaning.
    Empty,
}

/// One `.py` file of a real-code tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFile {
    /// The file on disk.
    pub path: PathBuf,
    /// The path relative to the root, `/`-separated: what the split hashes.
    pub relative: String,
}

impl CodeFile {
    /// Whether the file belongs to the held-out split.
    pub fn is_held_out(&self) -> bool {
        is_held_out(&self.relative)
    }

    /// The cleaned text, or why the file is not used.
    pub fn read(&self) -> Result<String, Rejected> {
        if is_test_path(&self.relative) {
            return Err(Rejected::TestFile);
        }
        let text = read_text_file(&self.path).ok_or(Rejected::NotText)?;
        clean(&text)
    }
}

/// Whether a relative path is held out (stable: depends on the path only).
pub fn is_held_out(relative: &str) -> bool {
    fnv1a(relative.as_bytes()).is_multiple_of(HELD_OUT_EVERY)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The standard library directory of the machine's `python3` (`sysconfig.get_paths()["stdlib"]`).
pub fn stdlib_dir() -> Result<PathBuf, CorpusError> {
    let bad = |reason: SpecProblem| CorpusError::BadSpec {
        spec: "stdlib".into(),
        reason,
    };
    let out = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"])
        .output()
        .map_err(|e| bad(SpecProblem::NoPython(e)))?;
    if !out.status.success() {
        return Err(bad(SpecProblem::PythonFailed {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.is_dir() {
        return Err(CorpusError::NotFound { path: dir });
    }
    Ok(dir)
}

/// The `.py` files below `root` (skipping `site-packages` / `dist-packages`), in a seeded order.
pub fn code_files(root: &Path, seed: u64) -> Result<Vec<CodeFile>, CorpusError> {
    let mut files: Vec<CodeFile> = list_files(root)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .filter_map(|path| {
            let rel = path.strip_prefix(root).ok()?;
            let relative = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if relative
                .split('/')
                .any(|c| c == "site-packages" || c == "dist-packages")
            {
                return None;
            }
            Some(CodeFile { path, relative })
        })
        .collect();
    if files.is_empty() {
        return Err(CorpusError::Empty {
            path: root.to_owned(),
            why: EmptyCorpus::NoPython,
        });
    }
    // Sort first so that the order depends on the set of paths only, then shuffle by a keyed hash.
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    files.sort_by_key(|f| mix64(fnv1a(f.relative.as_bytes()) ^ mix64(seed)));
    Ok(files)
}

/// What cleaning did to a tree of `.py` files: the figures behind the cleaning decisions.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Survey {
    /// `.py` files found (site-packages excluded).
    pub files: usize,
    /// Their bytes before cleaning.
    pub raw_bytes: u64,
    /// Files kept, and their bytes after cleaning.
    pub kept_files: usize,
    /// Bytes of the kept files after cleaning.
    pub kept_bytes: u64,
    /// Kept files and bytes in the held-out split.
    pub held_out_files: usize,
    /// Bytes of the held-out files after cleaning.
    pub held_out_bytes: u64,
    /// Per reason: (files, raw bytes) dropped.
    pub rejected: std::collections::BTreeMap<String, (usize, u64)>,
    /// Long docstrings cut to their first line in kept files.
    pub docstrings_cut: usize,
}

/// Reads and cleans every file below `root` and counts what happened.
pub fn survey(root: &Path) -> Result<Survey, CorpusError> {
    let mut s = Survey::default();
    for f in code_files(root, 0)? {
        let raw = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
        s.files += 1;
        s.raw_bytes += raw;
        match f.read() {
            Ok(t) => {
                s.kept_files += 1;
                s.kept_bytes += t.len() as u64;
                if f.is_held_out() {
                    s.held_out_files += 1;
                    s.held_out_bytes += t.len() as u64;
                }
                if let Some(orig) = read_text_file(&f.path) {
                    let lines: Vec<&str> = orig.lines().collect();
                    s.docstrings_cut += (0..lines.len())
                        .filter(|&i| long_docstring(&lines, i).is_some())
                        .count();
                }
            }
            Err(r) => {
                let e = s.rejected.entry(format!("{r:?}")).or_default();
                e.0 += 1;
                e.1 += raw;
            }
        }
    }
    Ok(s)
}

/// Whether a relative path names a test file.
pub fn is_test_path(relative: &str) -> bool {
    let mut parts = relative.split('/').peekable();
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            let stem = p.strip_suffix(".py").unwrap_or(p);
            return stem.starts_with("test_") || stem.ends_with("_test") || stem == "test";
        }
        if matches!(p, "test" | "tests" | "idle_test") {
            return true;
        }
    }
    false
}

/// Cleans one file's text (see the module docs).
pub fn clean(text: &str) -> Result<String, Rejected> {
    if !text.is_ascii() {
        return Err(Rejected::NonAscii);
    }
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let mut blanks = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if let Some((end, kept)) = long_docstring(&lines, i) {
            out.push_str(&kept);
            out.push('\n');
            blanks = 0;
            i = end + 1;
            continue;
        }
        if line.is_empty() {
            blanks += 1;
            if blanks <= 2 {
                out.push('\n');
            }
        } else {
            blanks = 0;
            out.push_str(line);
            out.push('\n');
        }
        i += 1;
    }
    let out = out.trim_start_matches('\n').to_owned();
    if out.trim().is_empty() {
        return Err(Rejected::Empty);
    }
    if out.len() > MAX_FILE_BYTES {
        return Err(Rejected::TooLarge);
    }
    Ok(out)
}

/// When line `i` opens a docstring statement (a line that is only a triple-quoted string start) of more than
/// [`MAX_DOCSTRING_LINES`] lines: its last line's index and the one-line docstring that replaces it.
fn long_docstring(lines: &[&str], i: usize) -> Option<(usize, String)> {
    let line = lines[i];
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let prefix_len = body.find("\"\"\"").or_else(|| body.find("'''"))?;
    let prefix = &body[..prefix_len];
    if !matches!(prefix, "" | "r" | "R" | "u" | "U") {
        return None;
    }
    let quote = &body[prefix_len..prefix_len + 3];
    let rest = &body[prefix_len + 3..];
    if rest.contains(quote) {
        return None; // a one-line docstring
    }
    let end = (i + 1..lines.len()).find(|&j| lines[j].contains(quote))?;
    // Only a docstring statement: nothing after its closing quotes.
    if !lines[end].trim_end().ends_with(quote) || lines[end].matches(quote).count() != 1 {
        return None;
    }
    if end - i < MAX_DOCSTRING_LINES {
        return None;
    }
    let first = std::iter::once(rest.trim())
        .chain(lines[i + 1..end].iter().map(|l| l.trim()))
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .replace('\\', "")
        .replace(quote, "");
    Some((end, format!("{indent}{prefix}{quote}{first}{quote}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_docstrings_keep_their_first_line() {
        let src = "def f():\n    \"\"\"Sum things.\n\n    a\n    b\n    c\n    d\n    \"\"\"\n    return 1\n";
        assert_eq!(
            clean(src).unwrap(),
            "def f():\n    \"\"\"Sum things.\"\"\"\n    return 1\n"
        );
        let short = "def f():\n    \"\"\"Short.\n\n    more\n    \"\"\"\n    return 1\n";
        assert_eq!(clean(short).unwrap(), short);
    }

    #[test]
    fn non_ascii_and_blank_runs() {
        assert_eq!(clean("x = 'é'\n"), Err(Rejected::NonAscii));
        assert_eq!(clean("a = 1\n\n\n\n\nb = 2  \n").unwrap(), "a = 1\n\n\nb = 2\n");
    }

    #[test]
    fn test_paths() {
        assert!(is_test_path("test/test_os.py"));
        assert!(is_test_path("idlelib/idle_test/x.py"));
        assert!(is_test_path("foo/test_bar.py"));
        assert!(!is_test_path("unittest/case.py"));
        assert!(!is_test_path("contest.py"));
    }
}
