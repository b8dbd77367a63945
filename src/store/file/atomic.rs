//! The durable atomic write: temp file in the same directory (created exclusively, 0600), write,
//! fsync the file, rename over the target, fsync the directory.
//!
//! A crash at any step leaves the old file or the new one, whole. What is *not* promised: a
//! temporary file may be left behind by a crash (the next writer holding the lock removes it,
//! after its own write; so does the first transaction of each process),
//! and a reader that opened the old file keeps reading the old contents.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use crate::error::{Error, Result};
use crate::failpoint::crash_at;
use crate::store::sys;

/// How many symlinks are followed before giving up (the kernel's own limit on Linux).
const MAX_SYMLINKS: usize = 40;

/// Where writes to `path` must go: `path` itself, or the final target of its symlinks, so that
/// a symlinked `auth.json` stays a symlink.
pub(crate) fn resolve_target(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_owned();
    for _ in 0..MAX_SYMLINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&current)
                    .map_err(|e| Error::io("read the symlink", &current, e))?;
                current = match current.parent() {
                    Some(parent) if link.is_relative() => parent.join(link),
                    _ => link,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(Error::io("inspect", &current, e)),
        }
    }
    Err(Error::io(
        "resolve",
        path,
        io::Error::other("too many levels of symbolic links"),
    ))
}

/// The prefix and suffix of our temporary files next to `target`.
fn temp_affixes(target: &Path) -> (String, &'static str) {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "auth.json".into());
    (format!(".{name}."), ".tmp")
}

/// Writes `bytes` to `target` (already resolved) durably and atomically. After a refresh, the
/// time from the authority's answer to the rename is the window in which a crash loses the
/// rotated token, so this does the durable write and nothing else.
pub(crate) fn write_atomically(target: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(target, bytes, Visibility::Private, Mode::Credentials)
}

/// Who may read a file written by [`write_file_durably`](super::write_file_durably).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Visibility {
    /// Only its owner (0600 on Unix), from its creation on: credentials, a store URL with its
    /// password.
    Private,
    /// Its owner writes, everyone reads (0644 on Unix): what other programs read, such as a
    /// service definition. On Windows both inherit the ACL of the directory.
    Readable,
}

/// [`write_atomically`] with the file's [`Visibility`], for the files beside the credentials.
/// The failpoints are the credentials' own: a crash test that names a step means `auth.json`'s
/// write, not that of a record or a service file written on the way.
pub(crate) fn write_atomically_as(
    target: &Path,
    bytes: &[u8],
    visibility: Visibility,
) -> Result<()> {
    write_replacing(target, bytes, visibility, Mode::Durable)
}

/// [`write_atomically_as`] without the fsyncs: readers see the old file or the new one, whole,
/// but after a power loss the old one (or none) may be what survives. For a record that is only
/// a hint, written where every fsync would lengthen a transaction.
pub(crate) fn write_atomically_not_durably(
    target: &Path,
    bytes: &[u8],
    visibility: Visibility,
) -> Result<()> {
    write_replacing(target, bytes, visibility, Mode::NotDurable)
}

/// How a file is replaced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `auth.json`: durable, and the failpoints of the crash tests act.
    Credentials,
    /// Durable.
    Durable,
    /// Atomic only.
    NotDurable,
}

fn write_replacing(target: &Path, bytes: &[u8], visibility: Visibility, mode: Mode) -> Result<()> {
    let crash_at = |step| {
        if mode == Mode::Credentials {
            crash_at(step);
        }
    };
    let durable = mode != Mode::NotDurable;
    let dir = parent_dir(target);
    let (prefix, suffix) = temp_affixes(target);
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))?;
    match visibility {
        Visibility::Private => sys::make_private(temp.as_file())
            .map_err(|e| Error::io("restrict permissions of", temp.path(), e))?,
        Visibility::Readable => sys::make_readable(temp.as_file())
            .map_err(|e| Error::io("set the permissions of", temp.path(), e))?,
    }
    crash_at("after-create");
    // Through the inner file: NamedTempFile's own Write adds the path to the error, and ours
    // already names it.
    temp.as_file_mut()
        .write_all(bytes)
        .map_err(|e| Error::io("write the temporary file", temp.path(), e))?;
    crash_at("after-write");
    if durable {
        sys::sync_file(temp.as_file())
            .map_err(|e| Error::io("fsync the temporary file", temp.path(), e))?;
    }
    crash_at("after-fsync");
    // On failure the temporary file is removed. The platform's rename: rename(2) on Unix,
    // MoveFileExW with write-through on Windows.
    sys::persist(temp, target)
        .map_err(|e| Error::io("rename the temporary file over", target, e))?;
    crash_at("after-rename");
    if durable {
        sys::sync_dir(dir).map_err(|e| Error::io("fsync the directory", dir, e))?;
    }
    crash_at("after-dir-fsync");
    Ok(())
}

/// Removes `target` (already resolved) and makes the removal durable.
pub(crate) fn remove_durably(target: &Path) -> Result<bool> {
    match fs::remove_file(target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("remove", target, e)),
    }
    let dir = parent_dir(target);
    sys::sync_dir(dir).map_err(|e| Error::io("fsync the directory", dir, e))?;
    Ok(true)
}

fn parent_dir(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// [`remove_stale_temp_files`] next to what `auth_path` resolves to, the first time a
/// transaction of this process holds the lock on it; later, writes remove them (see
/// `Transaction::write`).
pub(crate) fn remove_stale_temp_files_once(auth_path: &Path) {
    static SWEPT: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(Default::default);
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        if swept.contains(auth_path) {
            return;
        }
        swept.insert(auth_path.to_owned());
    }
    if let Ok(target) = resolve_target(auth_path) {
        remove_stale_temp_files(&target);
    }
}

/// Removes temporary files a crashed writer left next to `target`. Best effort. Only a holder of
/// the transaction lock may call it: then no live writer of ours has a temporary file.
pub(crate) fn remove_stale_temp_files(target: &Path) {
    let (prefix, suffix) = temp_affixes(target);
    let Ok(entries) = fs::read_dir(parent_dir(target)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(suffix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::debug!(path = %entry.path().display(), "removed a stale temporary file")
                }
                Err(error) => {
                    tracing::debug!(path = %entry.path().display(), %error, "could not remove a stale temporary file")
                }
            }
        }
    }
}

#[cfg(all(test, unix))] // modes and symlinks; tests/it/store_platform.rs runs everywhere
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn writes_through_a_symlink_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        fs::create_dir(&real_dir).unwrap();
        let link = dir.path().join("auth.json");
        symlink("real/auth.json", &link).unwrap();
        let target = resolve_target(&link).unwrap();
        write_atomically(&target, b"{}").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(real_dir.join("auth.json")).unwrap(), b"{}");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn removes_stale_temp_files_and_only_ours() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("auth.json");
        fs::write(dir.path().join(".auth.json.abc123.tmp"), "torn").unwrap();
        fs::write(dir.path().join("other.tmp"), "keep").unwrap();
        remove_stale_temp_files(&target);
        write_atomically(&target, b"{}").unwrap();
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["auth.json", "other.tmp"]);
    }

    #[test]
    fn loose_permissions_become_private_after_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("auth.json");
        fs::write(&target, "{}").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&target, b"{ }").unwrap();
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
