use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// Opens (creating when missing) a file for locking. NTFS ACLs, not modes, guard it.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Windows cannot open a directory as a plain file to flush it. The rename itself is made
/// durable instead: [`persist`] calls `MoveFileExW` with `MOVEFILE_WRITE_THROUGH`. A removal
/// (`remove_durably`, for a logout) has no such flag and is not flushed here.
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Renames the fully written and flushed temporary file over `target` with
/// `MoveFileExW(.., MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)`: the call is documented
/// not to return until the move is on the disk. (`tempfile`'s own `persist`, and `std::fs::rename`,
/// pass `MOVEFILE_REPLACE_EXISTING` without write-through, so the rename could still sit in the
/// cache after they return.) The temporary file stays open, as `tempfile` opens it with
/// `FILE_SHARE_DELETE`, which a rename needs. On failure the temporary file is removed.
pub(crate) fn persist(temp: tempfile::NamedTempFile, target: &Path) -> io::Result<File> {
    // `keep` clears FILE_ATTRIBUTE_TEMPORARY (a file so marked may never reach the disk) and
    // stops the removal on drop; from here the temporary file is ours to remove on failure.
    let (file, temp_path) = temp.keep().map_err(|e| e.error)?;
    match replace(&temp_path, target) {
        Ok(()) => Ok(file),
        Err(error) => {
            drop(file);
            let _ = fs::remove_file(&temp_path);
            Err(error)
        }
    }
}

/// How long a rename keeps trying while a reader holds `auth.json` open in a way that forbids
/// replacing it.
const REPLACE_PATIENCE: Duration = Duration::from_secs(1);

/// `MoveFileExW` with write-through, and what to do when the target is open.
///
/// A reader that opened `auth.json` without `FILE_SHARE_DELETE`, or any reader on a system or
/// filesystem without POSIX rename semantics, makes the classic rename fail with
/// `ERROR_ACCESS_DENIED` or `ERROR_SHARING_VIOLATION` (seen under Wine 8.0 with a reader that
/// std opened). Failing there would lose a rotated token, so the rename is retried: first with
/// `std::fs::rename`, which on Windows 10 1607 and later asks for POSIX semantics (the open file
/// keeps its contents for its readers, the name moves on), then, while the target stays busy,
/// again every millisecond for at most [`REPLACE_PATIENCE`]: readers hold the file for a read
/// of a few kilobytes. The wait is bounded, Windows-only, and happens only under contention.
fn replace(from: &Path, to: &Path) -> io::Result<()> {
    let started = Instant::now();
    loop {
        let error = match move_file_write_through(from, to) {
            Ok(()) => return Ok(()),
            Err(error) if is_busy(&error) => error,
            Err(error) => return Err(error),
        };
        match fs::rename(from, to) {
            Ok(()) => return Ok(()),
            Err(again) if is_busy(&again) && started.elapsed() < REPLACE_PATIENCE => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return Err(error),
        }
    }
}

/// Whether a rename failed because another handle has the target open.
fn is_busy(error: &io::Error) -> bool {
    // ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION.
    matches!(error.raw_os_error(), Some(5 | 32 | 33))
}

fn move_file_write_through(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::{
        MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH, MoveFileExW,
    };
    let wide = |path: &Path| -> Vec<u16> {
        path.as_os_str()
            .encode_wide()
            .chain(std::iter::once(0))
            .collect()
    };
    let (from, to) = (wide(from), wide(to));
    // SAFETY: both arguments are NUL-terminated UTF-16 strings that outlive the call.
    let moved = unsafe {
        MoveFileExW(
            from.as_ptr(),
            to.as_ptr(),
            MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
        )
    };
    if moved == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether lock files keep one descriptor per process between transactions (see `lock.rs`).
/// Not here: stable std exposes no file id to check that a kept handle still names the file the
/// path names, so lock files are opened per transaction, as before.
pub(crate) const KEEP_LOCK_DESCRIPTORS: bool = false;

/// Not compared on Windows (see [`KEEP_LOCK_DESCRIPTORS`]); never called there.
pub(crate) fn same_file(_a: &fs::Metadata, _b: &fs::Metadata) -> bool {
    true
}

/// Windows has no `/proc/locks`: the holder note names the holder.
pub(crate) fn lock_holder_pid(_file: &File) -> Option<u32> {
    None
}

/// Not looked up on Windows.
pub(crate) fn program_name(_pid: u32) -> Option<String> {
    None
}

/// Makes what was written to `file` durable: `FlushFileBuffers`.
pub(crate) fn sync_file(file: &File) -> io::Result<()> {
    file.sync_all()
}

/// Creates a directory (and its parents); it inherits the user profile's ACL.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Files inherit the user profile's ACL; nothing to change.
pub(crate) fn make_private(_file: &File) -> io::Result<()> {
    Ok(())
}

/// The ACL of the directory applies on Windows, as for [`make_private`].
pub(crate) fn make_readable(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Whether a lock failure means "this filesystem cannot lock".
pub(crate) fn is_lock_unsupported(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Unsupported
}

/// Permissions are ACLs on Windows; this check does not apply.
pub(crate) fn is_readable_by_others(_metadata: &fs::Metadata) -> bool {
    false
}
