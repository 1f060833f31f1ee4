//! The one writer of single files: a temp file beside the target, fsynced, renamed over it
//! (`tempfile::NamedTempFile::persist`), the folder fsynced. Links are written through, devices and FIFOs
//! streamed to, folders and block devices refused.

use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use super::{dir_of, io_err, sync_dir, temp, FsioError, Result};

/// Where a write to a path really goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A regular file (that may not exist yet), after following every symbolic link: replaced atomically.
    File(PathBuf),
    /// A character device or a FIFO (`/dev/null`, a named pipe): written to as a stream, never replaced.
    Device(PathBuf),
    /// This process's standard output (`/dev/stdout`, `/proc/self/fd/1`).
    Stdout,
    /// This process's standard error.
    Stderr,
}

impl Destination {
    /// Follows `path`'s symbolic links to what a write to it must change.
    pub fn resolve(path: &Path) -> Result<Destination> {
        let mut p = path.to_path_buf();
        for _ in 0..40 {
            if let Some(d) = descriptor(&p)? {
                return Ok(d);
            }
            let meta = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Destination::File(p)),
                Err(e) => return Err(io_err(&p)(e)),
            };
            let ft = meta.file_type();
            if ft.is_symlink() {
                let to = fs::read_link(&p).map_err(io_err(&p))?;
                p = if to.is_absolute() { to } else { dir_of(&p).join(to) };
                continue;
            }
            if ft.is_file() {
                return Ok(Destination::File(p));
            }
            return match special_kind(&ft) {
                Special::Stream => Ok(Destination::Device(p)),
                Special::Refused(what) => Err(FsioError::NotRegular { path: p, what }),
            };
        }
        Err(FsioError::LinkLoop {
            path: path.to_path_buf(),
        })
    }
}

enum Special {
    Stream,
    Refused(&'static str),
}

fn special_kind(ft: &fs::FileType) -> Special {
    if ft.is_dir() {
        return Special::Refused("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() || ft.is_fifo() {
            return Special::Stream;
        }
        if ft.is_block_device() {
            return Special::Refused("a block device");
        }
        if ft.is_socket() {
            return Special::Refused("a socket");
        }
    }
    Special::Refused("not a regular file")
}

/// An already-open descriptor named by path (`/dev/stdout`, `/dev/fd/N`, `/proc/<pid>/fd/N`): its link
/// points at no path that could be replaced (`pipe:[…]`), so it is written to as it is.
fn descriptor(p: &Path) -> Result<Option<Destination>> {
    let parts: Vec<_> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let fd = match (p.is_absolute(), parts.as_slice()) {
        (true, ["dev", "stdout"]) => Some(("self", "1")),
        (true, ["dev", "stderr"]) => Some(("self", "2")),
        (true, ["dev", "fd", n]) => Some(("self", *n)),
        (true, ["proc", pid, "fd", n]) => Some((*pid, *n)),
        _ => None,
    };
    let Some((pid, n)) = fd else {
        return Ok(None);
    };
    let own = pid == "self" || pid.parse::<u32>().ok() == Some(std::process::id());
    match (own, n) {
        (true, "1") => return Ok(Some(Destination::Stdout)),
        (true, "2") => return Ok(Some(Destination::Stderr)),
        _ => {}
    }
    let meta = fs::metadata(p).map_err(io_err(p))?;
    if meta.is_dir() {
        return Err(FsioError::NotRegular {
            path: p.to_path_buf(),
            what: "a directory",
        });
    }
    Ok(Some(Destination::Device(p.to_path_buf())))
}

/// Writes `bytes` to `path` atomically and durably; see [`write_atomic_with`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes what `fill` writes to `path`: a reader finds the old contents or the new ones, never a mix, a
/// truncation or an empty file. A symbolic link is written through (the link stays, its target changes); a
/// device, FIFO or open descriptor is streamed to; a folder or block device is refused. The folder must exist
/// (a typo in a path is an error, not a new tree). On any error the old file is left as it was and the temp file removed; temp files of dead
/// writers of the same target are swept first.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    match Destination::resolve(path)? {
        Destination::File(target) => replace_file(&target, fill),
        Destination::Device(p) => {
            let mut f = OpenOptions::new().write(true).open(&p).map_err(io_err(&p))?;
            let mut w = BufWriter::new(&mut f);
            fill(&mut w).map_err(io_err(&p))?;
            w.flush().map_err(io_err(&p))
        }
        Destination::Stdout => {
            let mut out = std::io::stdout().lock();
            fill(&mut out).and_then(|()| out.flush()).map_err(io_err(path))
        }
        Destination::Stderr => {
            let mut out = std::io::stderr().lock();
            fill(&mut out).and_then(|()| out.flush()).map_err(io_err(path))
        }
    }
}

fn replace_file(target: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let dir = dir_of(target);
    let name = target.file_name().ok_or_else(|| FsioError::NotRegular {
        path: target.to_path_buf(),
        what: "not a file name",
    })?;
    temp::sweep(target);
    // A replaced file keeps its mode; a new one gets the usual 0666 less the umask (tempfile's default is 0600).
    let mode = fs::metadata(target).ok().map(|m| m.permissions());
    let prefix = temp::prefix(name);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(temp::SUFFIX);
    #[cfg(unix)]
    let new_mode = {
        use std::os::unix::fs::PermissionsExt;
        fs::Permissions::from_mode(0o666)
    };
    #[cfg(unix)]
    builder.permissions(new_mode);
    // Dropping the temp file on any error below removes it.
    let mut tmp = builder.tempfile_in(dir).map_err(io_err(dir))?;
    let tmp_path = tmp.path().to_path_buf();
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        fill(&mut w).map_err(io_err(&tmp_path))?;
        w.flush().map_err(io_err(&tmp_path))?;
    }
    if let Some(m) = mode {
        tmp.as_file().set_permissions(m).map_err(io_err(&tmp_path))?;
    }
    tmp.as_file().sync_all().map_err(io_err(&tmp_path))?;
    tmp.persist(target).map_err(|e| io_err(target)(e.error))?;
    // The rename is durable only once the folder entry is.
    sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temps_in(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(temp::SUFFIX))
            .collect()
    }

    #[test]
    fn writes_and_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(temps_in(p.parent().unwrap()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn keeps_the_mode_of_a_replaced_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        fs::write(&p, b"old contents").unwrap();
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"half of the new")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"old contents");
        assert!(temps_in(dir.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_written_through_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real/session.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.json");
        // A relative link, through a second link, resolves against each link's own folder.
        std::os::unix::fs::symlink("real/session.json", &link).unwrap();
        let link2 = dir.path().join("link2.json");
        std::os::unix::fs::symlink(&link, &link2).unwrap();
        write_atomic(&link2, b"new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(fs::symlink_metadata(&link2).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        // A dangling link creates its target.
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink("real/made.json", &dangling).unwrap();
        write_atomic(&dangling, b"made").unwrap();
        assert_eq!(fs::read(dir.path().join("real/made.json")).unwrap(), b"made");
        assert!(fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    }

    #[cfg(unix)]
    #[test]
    fn link_loops_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        assert!(matches!(write_atomic(&a, b"x"), Err(FsioError::LinkLoop { .. })));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn devices_and_fifos_are_streamed_to_never_replaced() {
        use std::os::unix::fs::FileTypeExt;
        write_atomic(Path::new("/dev/null"), b"into the void").unwrap();
        assert!(fs::metadata("/dev/null").unwrap().file_type().is_char_device());
        // /dev/full: the error of the device, and the device stays a device.
        if Path::new("/dev/full").exists() {
            let e = write_atomic(Path::new("/dev/full"), &[0u8; 10_000]).unwrap_err();
            assert!(e.to_string().contains("/dev/full"), "{e}");
            assert!(fs::metadata("/dev/full").unwrap().file_type().is_char_device());
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(&fifo).unwrap())
        };
        write_atomic(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }

    #[test]
    fn folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(
            matches!(
                e,
                FsioError::NotRegular {
                    what: "a directory",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn open_descriptors_are_not_replaced() {
        assert_eq!(
            Destination::resolve(Path::new("/dev/stdout")).unwrap(),
            Destination::Stdout
        );
        assert_eq!(
            Destination::resolve(Path::new("/proc/self/fd/2")).unwrap(),
            Destination::Stderr
        );
        let own = format!("/proc/{}/fd/1", std::process::id());
        assert_eq!(Destination::resolve(Path::new(&own)).unwrap(), Destination::Stdout);
    }
}
