//! Crash-safe persistence of session files and the lock that keeps a second instance from writing one.
//!
//! A save writes a temp file beside the session, fsyncs it, renames it over the session and fsyncs the
//! directory: a reader (or the next start after a crash) finds the old file or the new one, never a mix.
//! The lock is `<session>.lock`, created with O_EXCL and holding the owner's pid; a lock whose pid is dead is
//! stale and taken over.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::{Result, Session, SessionError};

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SessionError + '_ {
    move |source| SessionError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` atomically and durably (temp file in the same directory, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = dir_of(path);
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("session");
    // The pid keeps two writers (a read-only viewer exporting, say) from sharing a temp file.
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        // The rename is durable only once the directory entry is.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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

/// Whether a process with this pid exists (signal 0 checks without sending anything).
fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for the process's existence and our permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The held lock on a session file; released (the lock file removed) on drop.
#[derive(Debug)]
pub struct SessionLock {
    path: PathBuf,
}

impl SessionLock {
    pub fn lock_path(session: &Path) -> PathBuf {
        let mut s = session.as_os_str().to_owned();
        s.push(".lock");
        PathBuf::from(s)
    }

    /// Takes the lock, or says which live process holds it. A lock left by a dead process is taken over.
    pub fn acquire(session: &Path) -> Result<SessionLock> {
        let path = Self::lock_path(session);
        let dir = dir_of(&path);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(format!("{}\n", std::process::id()).as_bytes())
                        .map_err(io_err(&path))?;
                    let _ = f.sync_all();
                    return Ok(SessionLock { path });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if pid == std::process::id() => {
                            return Err(SessionError::Locked {
                                path: session.display().to_string(),
                                pid,
                                lock: path.display().to_string(),
                            })
                        }
                        Ok(pid) if pid_alive(pid) => {
                            return Err(SessionError::Locked {
                                path: session.display().to_string(),
                                pid,
                                lock: path.display().to_string(),
                            })
                        }
                        // Dead owner, or a lock file cut short by a crash between create and write: stale.
                        _ => {
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Err(SessionError::Other(format!(
            "could not take the lock {} (another instance keeps racing for it)",
            path.display()
        )))
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A session as opened for the UI: writable (with the lock held) or read-only with the reason.
#[derive(Debug)]
pub struct OpenedSession {
    pub path: PathBuf,
    pub session: Session,
    /// Some(reason): never write this file.
    pub read_only: Option<String>,
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
