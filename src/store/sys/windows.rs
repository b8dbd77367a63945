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
