//! An exclusive OS file lock (`File::try_lock`, flock on Unix) on a lock file beside what it guards.
//!
//! The OS drops the lock when its holder dies, however it dies, so there is no stale lock to detect and no
//! window in which a half-written lock file passes for a stale one. The holder's pid is written into the file
//! only to name it in messages.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{dir_of, io_err, FsioError, Result};

/// A held lock; released (and its file removed) on drop, or by the OS when the process ends.
#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    file: File,
}

impl FileLock {
    /// Takes the lock at `path` (created if missing), or fails at once with [`FsioError::Locked`] naming the
    /// holder's pid.
    pub fn try_acquire(path: &Path) -> Result<FileLock> {
        Self::take(path, false)
    }

    /// Takes the lock at `path`, waiting for its holder to release it.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        Self::take(path, true)
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn take(path: &Path, wait: bool) -> Result<FileLock> {
        let dir = dir_of(path);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        // A holder removes the file before it unlocks: a lock taken on a file no longer at `path` guards
        // nothing, so it is dropped and taken again on the file now there.
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(io_err(path))?;
            if wait {
                file.lock().map_err(io_err(path))?;
            } else {
                match file.try_lock() {
                    Ok(()) => {}
                    Err(fs::TryLockError::WouldBlock) => {
                        return Err(FsioError::Locked {
                            path: path.to_path_buf(),
                            pid: holder_pid(file),
                        })
                    }
                    Err(fs::TryLockError::Error(e)) => return Err(io_err(path)(e)),
                }
            }
            if !same_file(&file, path) {
                continue;
            }
            let mut lock = FileLock {
                path: path.to_path_buf(),
                file,
            };
            lock.write_pid().map_err(io_err(path))?;
            return Ok(lock);
        }
    }

    fn write_pid(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(format!("{}\n", std::process::id()).as_bytes())
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Removed while still held (the lock goes with the descriptor, after this), so that no one takes
        // this file for a free lock.
        let _ = fs::remove_file(&self.path);
    }
}

/// The pid in a held lock file. Its holder writes it just after taking the lock, so a file still empty is
/// read again for a moment; 0 when it never shows.
fn holder_pid(mut file: File) -> u32 {
    for _ in 0..20 {
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    0
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let a = FileLock::try_acquire(&p).unwrap();
        match FileLock::try_acquire(&p) {
            Err(FsioError::Locked { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        drop(a);
        assert!(!p.exists());
        let b = FileLock::try_acquire(&p).unwrap();
        assert_eq!(
            fs::read_to_string(b.path()).unwrap().trim(),
            std::process::id().to_string()
        );
    }

    #[test]
    fn an_empty_or_dead_lock_file_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        fs::write(&p, b"").unwrap();
        drop(FileLock::try_acquire(&p).unwrap());
        fs::write(&p, b"999999999\n").unwrap();
        drop(FileLock::try_acquire(&p).unwrap());
    }

    #[test]
    fn a_waiting_taker_gets_the_lock_when_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let a = FileLock::try_acquire(&p).unwrap();
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || FileLock::acquire(&p).map(|l| l.path().exists()))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(a);
        assert!(waiter.join().unwrap().unwrap());
    }
}
