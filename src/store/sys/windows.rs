use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Opens (creating when missing) a file for locking. NTFS ACLs, not modes, guard it.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Windows cannot open a directory as a plain file to flush it; `MoveFileEx` with
/// write-through (used by `std::fs::rename` on NTFS) already makes the rename durable.
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Creates a directory (and its parents); it inherits the user profile's ACL.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Files inherit the user profile's ACL; nothing to change.
pub(crate) fn make_private(_file: &File) -> io::Result<()> {
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
