//! An output named on the command line: `-` is standard output, anything else a path written atomically.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{io_err, write_atomic, Result};

/// Where a command writes its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `-`: standard output.
    Stdout,
    /// A path, written through [`write_atomic`].
    Path(PathBuf),
}

impl Output {
    /// `-` is standard output; anything else a path.
    pub fn parse(arg: &OsStr) -> Output {
        if arg == "-" {
            Output::Stdout
        } else {
            Output::Path(PathBuf::from(arg))
        }
    }

    /// Same as [`Output::parse`] for a path given as one.
    pub fn from_path(p: &Path) -> Output {
        Self::parse(p.as_os_str())
    }

    /// Writes `bytes` whole.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)
                    .and_then(|()| out.flush())
                    .map_err(io_err(Path::new("-")))
            }
            Output::Path(p) => write_atomic(p, bytes),
        }
    }

    /// Whether this is standard output (messages then go to stderr only, never mixed into it).
    pub fn is_stdout(&self) -> bool {
        matches!(self, Output::Stdout)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Stdout => f.write_str("standard output"),
            Output::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_is_stdout_and_anything_else_a_path() {
        assert_eq!(Output::parse(OsStr::new("-")), Output::Stdout);
        assert_eq!(Output::parse(OsStr::new("./-")), Output::Path(PathBuf::from("./-")));
        assert_eq!(Output::parse(OsStr::new("a.md")), Output::Path(PathBuf::from("a.md")));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.md");
        Output::from_path(&p).write(b"x").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
        // Writing to stdout in a test prints; that it is not a file named `-` is the point.
        Output::Stdout.write(b"").unwrap();
        assert!(!Path::new("-").exists());
    }
}
