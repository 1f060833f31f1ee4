//! The writer of whole folders (a model directory, a scan index): the new contents are built in a temp folder
//! beside the target and swapped in with one rename, so that a reader never sees new weights with an old
//! config, however the writer dies.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::{dir_of, io_err, sync_dir, temp, FsioError, Result};

/// What of the old folder the new one keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Only what was written into the new folder.
    Nothing,
    /// Also every old entry that was not written anew (a model directory's scan/ and circuits), hard-linked
    /// (copied where links are impossible).
    Others,
}

/// A folder being written: fill [`DirWriter::path`], then [`DirWriter::commit`]. Dropped uncommitted, the
/// temp folder is removed and the target left as it was.
#[derive(Debug)]
pub struct DirWriter {
    target: PathBuf,
    staging: Option<tempfile::TempDir>,
    keep: Keep,
}

impl DirWriter {
    /// Starts writing the folder `dir` (a symbolic link to a folder is written through).
    pub fn begin(dir: &Path, keep: Keep) -> Result<DirWriter> {
        let target = match fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => fs::canonicalize(dir).map_err(io_err(dir))?,
            Ok(m) if !m.is_dir() => {
                return Err(FsioError::NotRegular {
                    path: dir.to_path_buf(),
                    what: "not a directory",
                })
            }
            _ => dir.to_path_buf(),
        };
        let name = target.file_name().ok_or_else(|| FsioError::NotRegular {
            path: dir.to_path_buf(),
            what: "not a directory name",
        })?;
        let parent = dir_of(&target);
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        temp::sweep(&target);
        let staging = tempfile::Builder::new()
            .prefix(&temp::prefix(name))
            .suffix(temp::SUFFIX)
            .tempdir_in(parent)
            .map_err(io_err(parent))?;
        Ok(DirWriter {
            target,
            staging: Some(staging),
            keep,
        })
    }

    /// The temp folder to write the new contents into.
    pub fn path(&self) -> &Path {
        self.staging.as_ref().map_or(self.target.as_path(), |s| s.path())
    }

    /// The folder being replaced (after following a link).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Swaps the new folder in: atomically where the OS exchanges two paths in one step (Linux), else in two
    /// renames with the old folder moved aside first, which the next writer moves back after a crash between.
    pub fn commit(mut self) -> Result<()> {
        let Some(staging) = self.staging.take() else {
            return Ok(());
        };
        let new = staging.path().to_path_buf();
        let exists = self.target.is_dir();
        if exists && self.keep == Keep::Others {
            link_missing(&self.target, &new)?;
        }
        sync_dir(&new);
        // From here the temp folder is ours to move or remove.
        let new = staging.keep();
        let parent = dir_of(&self.target).to_path_buf();
        let result = if !exists {
            fs::rename(&new, &self.target).map_err(io_err(&self.target))
        } else if exchange(&new, &self.target) {
            // `new` now holds the old contents.
            let _ = fs::remove_dir_all(&new);
            Ok(())
        } else {
            let name = self.target.file_name().unwrap_or_default();
            let old = temp::old_path(&parent, name);
            fs::rename(&self.target, &old)
                .map_err(io_err(&self.target))
                .and_then(|()| fs::rename(&new, &self.target).map_err(io_err(&self.target)))
                .map(|()| {
                    let _ = fs::remove_dir_all(&old);
                })
        };
        if result.is_err() && new.exists() {
            let _ = fs::remove_dir_all(&new);
        }
        sync_dir(&parent);
        result
    }
}

/// Hard-links (or copies) into `new` every entry of `old` that `new` lacks, folders recursively.
fn link_missing(old: &Path, new: &Path) -> Result<()> {
    for entry in fs::read_dir(old).map_err(io_err(old))? {
        let entry = entry.map_err(io_err(old))?;
        let name: OsString = entry.file_name();
        let (from, to) = (entry.path(), new.join(&name));
        if fs::symlink_metadata(&to).is_ok() {
            if to.is_dir() && from.is_dir() && !entry.file_type().map_err(io_err(&from))?.is_symlink() {
                link_missing(&from, &to)?;
            }
            continue;
        }
        let ft = entry.file_type().map_err(io_err(&from))?;
        if ft.is_symlink() {
            let link = fs::read_link(&from).map_err(io_err(&from))?;
            #[cfg(unix)]
            std::os::unix::fs::symlink(&link, &to).map_err(io_err(&to))?;
            #[cfg(not(unix))]
            let _ = link;
        } else if ft.is_dir() {
            fs::create_dir(&to).map_err(io_err(&to))?;
            link_missing(&from, &to)?;
        } else if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(io_err(&from))?;
        }
    }
    Ok(())
}

/// Swaps two paths in one step (Linux renameat2 RENAME_EXCHANGE); false where unsupported.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let (Ok(ca), Ok(cb)) = (
        CString::new(a.as_os_str().as_bytes()),
        CString::new(b.as_os_str().as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: both arguments are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_folder_appears_whole() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("model");
        let w = DirWriter::begin(&target, Keep::Nothing).unwrap();
        fs::write(w.path().join("config.json"), b"{}").unwrap();
        assert!(!target.exists());
        w.commit().unwrap();
        assert_eq!(names(&target), ["config.json"]);
        assert_eq!(names(root.path()), ["model"]);
    }

    #[test]
    fn replacing_keeps_the_others_when_asked() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("model");
        fs::create_dir_all(target.join("scan")).unwrap();
        fs::write(target.join("scan/index.json"), b"scan").unwrap();
        fs::write(target.join("config.json"), b"old").unwrap();
        fs::write(target.join("model.safetensors"), b"old").unwrap();
        let w = DirWriter::begin(&target, Keep::Others).unwrap();
        fs::write(w.path().join("config.json"), b"new").unwrap();
        w.commit().unwrap();
        assert_eq!(names(&target), ["config.json", "model.safetensors", "scan"]);
        assert_eq!(fs::read(target.join("config.json")).unwrap(), b"new");
        assert_eq!(fs::read(target.join("model.safetensors")).unwrap(), b"old");
        assert_eq!(fs::read(target.join("scan/index.json")).unwrap(), b"scan");
        assert_eq!(names(root.path()), ["model"]);

        let w = DirWriter::begin(&target, Keep::Nothing).unwrap();
        fs::write(w.path().join("only"), b"1").unwrap();
        w.commit().unwrap();
        assert_eq!(names(&target), ["only"]);
        assert_eq!(names(root.path()), ["model"]);
    }

    #[test]
    fn dropped_uncommitted_leaves_the_old_folder_and_no_temp() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("model");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("config.json"), b"old").unwrap();
        let w = DirWriter::begin(&target, Keep::Others).unwrap();
        fs::write(w.path().join("config.json"), b"new").unwrap();
        drop(w);
        assert_eq!(fs::read(target.join("config.json")).unwrap(), b"old");
        assert_eq!(names(root.path()), ["model"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_folder_is_written_through() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink("real", &link).unwrap();
        let w = DirWriter::begin(&link, Keep::Nothing).unwrap();
        fs::write(w.path().join("f"), b"1").unwrap();
        w.commit().unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(real.join("f")).unwrap(), b"1");
    }

    #[test]
    fn a_file_is_not_a_folder() {
        let root = tempfile::tempdir().unwrap();
        let f = root.path().join("f");
        fs::write(&f, b"x").unwrap();
        assert!(matches!(
            DirWriter::begin(&f, Keep::Nothing),
            Err(FsioError::NotRegular { .. })
        ));
    }
}
