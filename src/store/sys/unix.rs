use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Opens (creating when missing, mode 0600) a file for locking.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Makes the directory durable after a rename inside it.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    sync_file(&File::open(dir)?)
}

/// Makes what was written to `file` durable: on the drive, not in its cache.
///
/// Linux and the other Unixes: `fsync(2)`. macOS: `fsync` only hands the data to the drive,
/// whose cache may still lose it at a power cut; `fcntl(F_FULLFSYNC)` asks the drive to flush,
/// as SQLite, PostgreSQL and Apple's own guidance do. Filesystems that refuse it (some network
/// and FAT-family volumes answer ENOTSUP or EINVAL) get plain `fsync`, SQLite's fallback too.
pub(crate) fn sync_file(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: `fd` is an open descriptor owned by `file` for the whole call.
        if unsafe { libc::fcntl(fd, libc::F_FULLFSYNC) } != -1 {
            return Ok(());
        }
        tracing::trace!(error = %io::Error::last_os_error(), "F_FULLFSYNC refused; using fsync");
    }
    loop {
        // SAFETY: as above.
        if unsafe { libc::fsync(fd) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Creates a directory (and its parents) readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Sets owner-only permissions on a freshly created temporary file.
pub(crate) fn make_private(file: &File) -> io::Result<()> {
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

/// Owner writes, everyone reads: 0644, whatever the umask (a file other programs read).
pub(crate) fn make_readable(file: &File) -> io::Result<()> {
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

/// Whether a lock failure means "this filesystem cannot lock" rather than a passing error.
pub(crate) fn is_lock_unsupported(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Unsupported
        || matches!(
            error.raw_os_error(),
            Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS)
        )
}

/// Whether the file's permissions let the group or others read it.
pub(crate) fn is_readable_by_others(metadata: &fs::Metadata) -> bool {
    metadata.permissions().mode() & 0o077 != 0
}

/// Whether lock files keep one descriptor per process between transactions (see `lock.rs`):
/// here the inode behind a kept descriptor can be compared with what the path names.
pub(crate) const KEEP_LOCK_DESCRIPTORS: bool = true;

/// Whether two metadata describe the same file (device and inode).
pub(crate) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Renames the fully written and fsynced temporary file over `target`: `rename(2)`, atomic. Its
/// durability comes from fsyncing the directory afterwards ([`sync_dir`]). On failure the
/// temporary file is removed.
pub(crate) fn persist(temp: tempfile::NamedTempFile, target: &Path) -> io::Result<File> {
    temp.persist(target).map_err(|e| e.error)
}

/// The pid of the process holding the `flock` on `file`'s inode, from `/proc/locks`. For
/// messages only; `None` when unknown.
#[cfg(target_os = "linux")]
pub(crate) fn lock_holder_pid(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let locks = fs::read_to_string("/proc/locks").ok()?;
    holder_in_proc_locks(&locks, u64::from(major), u64::from(minor), meta.ino())
}

/// Other Unix systems have no `/proc/locks`: the holder note names the holder.
#[cfg(not(target_os = "linux"))]
pub(crate) fn lock_holder_pid(_file: &File) -> Option<u32> {
    None
}

/// The short name of process `pid` (`/proc/PID/comm`), for messages.
#[cfg(target_os = "linux")]
pub(crate) fn program_name(pid: u32) -> Option<String> {
    let name = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Not known without `/proc`.
#[cfg(not(target_os = "linux"))]
pub(crate) fn program_name(_pid: u32) -> Option<String> {
    None
}

/// Finds the holder (not a blocked waiter, shown with `->`, nor a shared lock) of a `FLOCK` lock on the inode in
/// the text of `/proc/locks`: `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`, the device in
/// hexadecimal.
#[cfg(any(target_os = "linux", test))]
fn holder_in_proc_locks(locks: &str, major: u64, minor: u64, inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let mut fields = line.split_whitespace().skip(1);
        if fields.next()? != "FLOCK" {
            return None;
        }
        // A shared (READ) lock is a reader's momentary probe, never a holder: transactions and
        // agents lock exclusively.
        if fields.nth(1)? != "WRITE" {
            return None;
        }
        let pid: u32 = fields.next()?.parse().ok()?;
        let mut id = fields.next()?.split(':');
        let (dev_major, dev_minor, ino) = (id.next()?, id.next()?, id.next()?);
        let same = u64::from_str_radix(dev_major, 16).ok()? == major
            && u64::from_str_radix(dev_minor, 16).ok()? == minor
            && ino.parse::<u64>().ok()? == inode;
        (same && pid > 0).then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::holder_in_proc_locks;

    #[test]
    fn proc_locks_names_the_holder_not_a_waiter() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 fd:01:5678 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 999 fd:01:5678 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 4321 08:02:5678 0 EOF\n";
        assert_eq!(holder_in_proc_locks(locks, 0xfd, 1, 5678), Some(1234));
        assert_eq!(holder_in_proc_locks(locks, 8, 2, 5678), Some(4321));
        assert_eq!(holder_in_proc_locks(locks, 8, 2, 1), None);
        let waiter_only = "2: -> FLOCK  ADVISORY  WRITE 999 fd:01:5678 0 EOF\n";
        assert_eq!(holder_in_proc_locks(waiter_only, 0xfd, 1, 5678), None);
        let shared_only = "4: FLOCK  ADVISORY  READ 555 fd:01:5678 0 EOF\n";
        assert_eq!(holder_in_proc_locks(shared_only, 0xfd, 1, 5678), None);
    }
}
