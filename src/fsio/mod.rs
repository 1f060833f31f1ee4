//! Every file circuitscope writes goes through here: one atomic writer for single files, one for whole
//! directories, an OS file lock, and `-` as standard output.
//!
//! The promises (docs/reliability.md): a reader, or the next run after a crash, finds a target's old contents or
//! its new ones, never a mix, a truncation or an empty file; a failed write leaves the old file as it was and
//! no temp file behind; a symlink is written through to its target; a device or FIFO is streamed to, never
//! replaced; temp files of a killed writer are swept by the next write beside them.

mod atomic;
mod dir;
mod lock;
mod output;
mod temp;

pub use atomic::{write_atomic, write_atomic_with, Destination};
pub use dir::{DirWriter, Keep};
pub use lock::FileLock;
pub use output::Output;

use std::path::{Path, PathBuf};

/// What can go wrong writing or locking a file.
#[derive(Debug, thiserror::Error)]
pub enum FsioError {
    /// A system call on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The target exists but is not a regular file (a folder, device, socket), so it is not replaced.
    #[error("{}: {what}; refusing to replace it", path.display())]
    NotRegular {
        /// The target.
        path: PathBuf,
        /// What it is instead, for the message (e.g. "a directory").
        what: &'static str,
    },
    /// Following symbolic links from `path` did not end within 40 steps.
    #[error("{}: more than 40 levels of symbolic links", path.display())]
    LinkLoop {
        /// Where the chain of links started.
        path: PathBuf,
    },
    /// Another live process holds the lock.
    #[error("{}: locked by process {pid}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The process id written in the lock file.
        pid: u32,
    },
}

impl FsioError {
    /// The error as a `std::io::Error` (with this error's message), for callers whose error types wrap io.
    pub fn into_io(self) -> std::io::Error {
        match self {
            FsioError::Io { source, .. } => source,
            e => std::io::Error::other(e.to_string()),
        }
    }
}

impl From<FsioError> for std::io::Error {
    fn from(e: FsioError) -> Self {
        e.into_io()
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, FsioError>;

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> FsioError + '_ {
    move |source| FsioError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The folder a path lives in (`.` for a bare name).
pub(crate) fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Makes a folder's entries (a rename, a new file) durable. Not every platform opens folders: best effort.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
