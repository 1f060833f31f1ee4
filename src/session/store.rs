//! Crash-safe persistence of session files and the lock that keeps a second instance from writing one.
//!
//! A save goes through the one atomic writer ([`crate::fsio::write_atomic`]): a reader (or the next start
//! after a crash) finds the old file or the new one, never a mix, and a session given as a symbolic link is
//! written through to its target. The lock is an OS file lock on `<session>.lock` (holding the owner's pid
//! for messages), which the OS releases when its holder dies.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{Result, Session, SessionError};
use crate::fsio::{self, FileLock, FsioError};

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SessionError + '_ {
    move |source| SessionError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` atomically and durably (see [`crate::fsio::write_atomic`]), creating its folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    fsio::write_atomic(path, bytes).map_err(|e| io_err(path)(e.into_io()))
}

/// Saves a session (its canonical JSON) atomically.
pub fn save(path: &Path, session: &Session) -> Result<()> {
    write_atomic(path, session.to_json().as_bytes())
}

/// Reads a session file: Ok(None) when there is none.
pub fn load(path: &Path) -> Result<Option<Session>> {
    match fs::read_to_string(path) {
        Ok(text) => Session::from_json(&text, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The held lock on a session file; released on drop, or by the OS when the process dies.
#[derive(Debug)]
pub struct SessionLock {
    _lock: FileLock,
}

impl SessionLock {
    /// The lock file of a session: `<session>.lock`.
    pub fn lock_path(session: &Path) -> PathBuf {
        let mut s = session.as_os_str().to_owned();
        s.push(".lock");
        PathBuf::from(s)
    }

    /// Takes the lock, or says which live process holds it.
    pub fn acquire(session: &Path) -> Result<SessionLock> {
        let path = Self::lock_path(session);
        match FileLock::try_acquire(&path) {
            Ok(l) => Ok(SessionLock { _lock: l }),
            Err(FsioError::Locked { pid, .. }) => Err(SessionError::Locked {
                path: session.display().to_string(),
                pid,
                lock: path.display().to_string(),
            }),
            Err(e) => Err(io_err(&path)(e.into_io())),
        }
    }
}

/// A session as opened for the UI: writable (with the lock held) or read-only with the reason.
#[derive(Debug)]
pub struct OpenedSession {
    /// The session file.
    pub path: PathBuf,
    /// Its content (a new session when the file did not exist).
    pub session: Session,
    /// Some(reason): never write this file.
    pub read_only: Option<String>,
    /// The held lock, released on drop; `None` when read-only.
    pub lock: Option<SessionLock>,
    /// Whether the file existed.
    pub existed: bool,
}

/// Opens (or starts) the session at `path` for the model with `fingerprint`. A newer format version, another
/// model or a live lock give a read-only session with the reason; a corrupt file is an error (it is left as it
/// is, for the analyst to repair). `fresh` makes the session when there is no file.
pub fn open(path: &Path, fingerprint: &str, fresh: impl FnOnce() -> Session) -> Result<OpenedSession> {
    let (lock, mut read_only) = match SessionLock::acquire(path) {
        Ok(l) => (Some(l), None),
        Err(e @ SessionError::Locked { .. }) => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    let loaded = match load(path) {
        Ok(s) => s,
        Err(e @ SessionError::NewerVersion { .. }) => {
            // Shown empty: its contents cannot be read faithfully, and it is never written.
            let mut s = fresh();
            s.annotations.clear();
            return Ok(OpenedSession {
                path: path.to_path_buf(),
                session: s,
                read_only: Some(e.to_string()),
                lock: None,
                existed: true,
            });
        }
        Err(e) => return Err(e),
    };
    let existed = loaded.is_some();
    let session = match loaded {
        Some(s) => {
            if s.model.fingerprint != fingerprint && read_only.is_none() {
                let made_for = match &s.model.name {
                    Some(n) => format!("{n} ({})", s.model.fingerprint),
                    None => s.model.fingerprint.clone(),
                };
                read_only = Some(
                    SessionError::OtherModel {
                        path: path.display().to_string(),
                        made_for,
                        given: fingerprint.to_string(),
                    }
                    .to_string(),
                );
            }
            s
        }
        None => fresh(),
    };
    let lock = if read_only.is_some() { None } else { lock };
    Ok(OpenedSession {
        path: path.to_path_buf(),
        session,
        read_only,
        lock,
        existed,
    })
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 (UTC), by the civil-from-days algorithm.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
