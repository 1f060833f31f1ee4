//! Temp files and folders beside a target, and the sweep that removes those of writers that died.
//!
//! A temp entry is named `.<target name>.<writer pid>.<random>.cstmp`: the pid tells the next writer whether
//! its owner still lives, so that a writer killed mid-save leaves nothing behind once the next write runs.
//! `.<name>.<pid>.old.cstmp` is a folder moved aside during a directory swap without an atomic exchange.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// The suffix that marks circuitscope's temp entries.
pub(crate) const SUFFIX: &str = ".cstmp";

/// The prefix of temp entries for `name` written by this process.
pub(crate) fn prefix(name: &OsStr) -> String {
    format!(".{}.{}.", name.to_string_lossy(), std::process::id())
}

/// The path a folder is moved to during a non-atomic swap.
pub(crate) fn old_path(dir: &Path, name: &OsStr) -> PathBuf {
    dir.join(format!("{}old{SUFFIX}", prefix(name)))
}

/// Whether a process with this pid exists (signal 0 checks without sending anything).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    #[cfg(unix)]
    {
        // SAFETY: kill with signal 0 only checks for the process's existence and our permission.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        // Without a cheap liveness check, never take another process's temp file for stale.
        true
    }
}

/// The owner pid and the random part of a temp entry of `name`, or None when `entry` is not one.
fn parse<'a>(entry: &'a str, name: &str) -> Option<(u32, &'a str)> {
    let rest = entry
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('.')?
        .strip_suffix(SUFFIX)?;
    let (pid, random) = rest.split_once('.')?;
    if random.is_empty() || random.contains('.') {
        return None;
    }
    Some((pid.parse().ok()?, random))
}

/// Removes the temp entries of `target` whose writer is dead. A folder moved aside by a swap that died
/// before moving the new one in is moved back when the target is missing, so that no crash loses it.
pub(crate) fn sweep(target: &Path) {
    let (Some(name), dir) = (target.file_name().and_then(OsStr::to_str), super::dir_of(target)) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((pid, random)) = file_name.to_str().and_then(|e| parse(e, name)) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        let path = entry.path();
        if random == "old" && !target.exists() && fs::rename(&path, target).is_ok() {
            continue;
        }
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let _ = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_temp_entries_of_the_target() {
        assert_eq!(parse(".a.json.12.Xy9.cstmp", "a.json"), Some((12, "Xy9")));
        assert_eq!(parse(".a.json.12.old.cstmp", "a.json"), Some((12, "old")));
        // Another target whose name starts with this one's.
        assert_eq!(parse(".a.json.5.12.Xy9.cstmp", "a.json"), None);
        assert_eq!(parse(".a.json.x.Xy9.cstmp", "a.json"), None);
        assert_eq!(parse("a.json.12.Xy9.cstmp", "a.json"), None);
        assert_eq!(parse(".a.json.12.Xy9", "a.json"), None);
    }

    #[test]
    fn sweeps_dead_writers_and_keeps_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t.json");
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let stale = dir.path().join(format!(".t.json.{dead_pid}.abc{SUFFIX}"));
        let live = dir.path().join(format!(".t.json.{}.abc{SUFFIX}", std::process::id()));
        let stale_dir = dir.path().join(format!(".t.json.{dead_pid}.def{SUFFIX}"));
        fs::write(&stale, b"x").unwrap();
        fs::write(&live, b"x").unwrap();
        fs::create_dir(&stale_dir).unwrap();
        fs::write(stale_dir.join("f"), b"x").unwrap();
        sweep(&target);
        assert!(!stale.exists());
        assert!(!stale_dir.exists());
        assert!(live.exists());
    }

    #[test]
    fn a_folder_moved_aside_comes_back_when_the_target_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("scan");
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let old = dir.path().join(format!(".scan.{dead_pid}.old{SUFFIX}"));
        fs::create_dir(&old).unwrap();
        fs::write(old.join("index.json"), b"{}").unwrap();
        sweep(&target);
        assert_eq!(fs::read(target.join("index.json")).unwrap(), b"{}");
    }
}
