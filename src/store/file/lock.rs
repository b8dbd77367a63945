//! The two advisory locks shared with Codex, and the only module that calls lock syscalls.
//!
//! # Protocol
//!
//! * `auth.lock` is the **transaction lock**. It is held across a whole transaction: re-read,
//!   decide, network refresh, write. Codex takes the same lock (blocking) around the commit of
//!   tokens it refreshed, so a Codex commit waits for an authstore transaction and then sees the
//!   new credentials.
//! * `auth.json.lock` is the **write lock**. It is taken only while `auth.lock` is held (always in
//!   that order) and only around the file write itself, never across a network call: Codex tries
//!   it without waiting and drops the tokens it just obtained when it cannot get it.
//! * Both files are created with mode 0600 when missing and are never deleted or renamed: a lock on
//!   a file that another process has replaced excludes nobody. `auth.json` itself is never locked,
//!   because the atomic rename replaces its inode.
//! * Inside one process, transactions are serialized by an async mutex in front of the file lock,
//!   so a process never contends with itself and waiting tasks hold no thread.
//! * The wait is bounded. It starts with a non-blocking attempt; only when the lock is contended
//!   does a thread block in the kernel, so the waiter wakes the moment the holder releases (no
//!   polling). A holder records its pid, program and start time in `auth.lock` for messages, and
//!   clears them before it releases. The kernel releases the lock of a holder that dies, so there
//!   is no stale-lock logic and no lock stealing.
#![allow(clippy::disallowed_methods)] // this module is where the lock calls live

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedMutexGuard, oneshot};

use crate::error::{Error, Result};
use crate::store::sys;

/// After this long waiting, tell the user whom we are waiting for.
const PATIENCE: Duration = Duration::from_secs(1);

/// The holder note is a fixed-size record at the start of `auth.lock`, padded with spaces.
const NOTE_BYTES: usize = 128;
/// The holder note written into `auth.lock` is read back at most this long.
const MAX_NOTE_BYTES: u64 = 512;

/// Per-process mutexes, one per lock path, in front of the file locks.
static IN_PROCESS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// A held `auth.lock`. Dropping it clears the holder note and releases the lock.
#[derive(Debug)]
pub(crate) struct TransactionLock {
    file: File,
    path: PathBuf,
    waited: Duration,
    _in_process: OwnedMutexGuard<()>,
}

impl TransactionLock {
    /// How long acquiring took.
    pub(crate) fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for TransactionLock {
    fn drop(&mut self) {
        // Blank the note while still holding the lock, so that a note seen by a waiter always
        // names the current holder. Overwritten in place, never truncated: truncating a file to
        // zero makes ext4 flush it on close, which would slow every hand-off. Closing the file
        // descriptor releases the lock.
        if let Err(error) = write_note(&mut self.file, "") {
            tracing::debug!(path = %self.path.display(), %error, "could not clear the lock holder note");
        }
        let _ = self.file.unlock();
    }
}

/// Acquires `auth.lock` at `path`, waiting at most `deadline`.
///
/// # Errors
/// [`ErrorKind::LockTimeout`](crate::ErrorKind::LockTimeout) naming the holder when the deadline passes; [`ErrorKind::LockUnsupported`](crate::ErrorKind::LockUnsupported)
/// when the filesystem cannot lock; [`ErrorKind::Io`](crate::ErrorKind::Io) when the lock file cannot be opened (missing or
/// read-only directory).
pub(crate) async fn acquire_transaction_lock(
    path: &Path,
    deadline: Duration,
) -> Result<TransactionLock> {
    let started = Instant::now();
    let in_process = in_process_mutex(path);
    let guard = match tokio::time::timeout(deadline, in_process.lock_owned()).await {
        Ok(guard) => guard,
        Err(_) => {
            return Err(Error::lock_timeout(
                path,
                started.elapsed(),
                Some(format!("this process (pid {})", std::process::id())),
            ));
        }
    };

    let file = sys::open_lock_file(path).map_err(|e| Error::io("open the lock file", path, e))?;
    if crate::failpoint::active("lock-unsupported") {
        return Err(lock_error(
            path,
            io::Error::new(
                io::ErrorKind::Unsupported,
                "locks not supported (failpoint)",
            ),
        ));
    }
    let file = match file.try_lock() {
        Ok(()) => file,
        Err(std::fs::TryLockError::WouldBlock) => {
            let remaining = deadline.saturating_sub(started.elapsed());
            wait_for_lock(file, path, remaining, started).await?
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(lock_error(path, error)),
    };
    let mut lock = TransactionLock {
        file,
        path: path.to_owned(),
        waited: started.elapsed(),
        _in_process: guard,
    };
    if let Err(error) = write_holder_note(&mut lock.file) {
        tracing::debug!(path = %path.display(), %error, "could not write the lock holder note");
    }
    Ok(lock)
}

/// Blocks a helper thread in the kernel's lock call, so that the hand-off is immediate.
async fn wait_for_lock(
    file: File,
    path: &Path,
    remaining: Duration,
    started: Instant,
) -> Result<File> {
    let holder = read_holder_note(path);
    tracing::debug!(path = %path.display(), holder = holder.as_deref().unwrap_or("unknown"), "lock contended, waiting");
    let (sender, mut receiver) = oneshot::channel();
    std::thread::Builder::new()
        .name("authstore-lock-wait".into())
        .spawn(move || {
            let result = file.lock().map(|()| file);
            // When the waiter gave up, the receiver is gone: dropping the file releases the lock.
            let _ = sender.send(result);
        })
        .map_err(|e| Error::io("start a thread to wait for", path, e))?;

    let patience = PATIENCE.min(remaining);
    let result = match tokio::time::timeout(patience, &mut receiver).await {
        Ok(result) => result,
        Err(_) => {
            let holder = read_holder_note(path);
            tracing::warn!(
                "Blocking waiting for file lock on {} (held by {})",
                path.display(),
                holder
                    .as_deref()
                    .unwrap_or("another process, possibly Codex")
            );
            match tokio::time::timeout(remaining.saturating_sub(patience), receiver).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(Error::lock_timeout(
                        path,
                        started.elapsed(),
                        read_holder_note(path),
                    ));
                }
            }
        }
    };
    match result {
        Ok(Ok(file)) => Ok(file),
        Ok(Err(error)) => Err(lock_error(path, error)),
        Err(_) => Err(Error::io(
            "wait for",
            path,
            io::Error::other("lock wait thread stopped"),
        )),
    }
}

/// Takes `auth.json.lock` for the duration of `write`. Codex holds it only around its own file
/// write, so contention is brief; we retry without blocking a thread for long.
pub(crate) fn with_write_lock<T>(
    path: &Path,
    deadline: Duration,
    write: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let file = sys::open_lock_file(path).map_err(|e| Error::io("open the lock file", path, e))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::lock_timeout(path, started.elapsed(), None));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(lock_error(path, error)),
        }
    }
    let result = write();
    let _ = file.unlock();
    result
}

fn lock_error(path: &Path, error: io::Error) -> Error {
    if sys::is_lock_unsupported(&error) {
        Error::lock_unsupported(path, error)
    } else {
        Error::io("lock", path, error)
    }
}

fn in_process_mutex(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    let mut map = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(path.to_owned()).or_default().clone()
}

fn write_holder_note(file: &mut File) -> io::Result<()> {
    let program = std::env::args()
        .next()
        .and_then(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let note = format!(
        "pid {} ({program}) since {}",
        std::process::id(),
        crate::document::format_timestamp(SystemTime::now())
    );
    write_note(file, &note)
}

/// Writes `note` as the fixed-size, space-padded record at the start of the file.
fn write_note(file: &mut File, note: &str) -> io::Result<()> {
    let mut record = [b' '; NOTE_BYTES];
    let note = note.as_bytes();
    // Cut at a character boundary: the note is for humans and must stay valid UTF-8.
    let mut len = note.len().min(NOTE_BYTES - 1);
    while len > 0 && std::str::from_utf8(&note[..len]).is_err() {
        len -= 1;
    }
    record[..len].copy_from_slice(&note[..len]);
    record[NOTE_BYTES - 1] = b'\n';
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&record)
}

/// The note the current holder wrote, if any: for messages only, never for decisions.
pub(crate) fn read_holder_note(path: &Path) -> Option<String> {
    let mut note = String::new();
    File::open(path)
        .ok()?
        .take(MAX_NOTE_BYTES)
        .read_to_string(&mut note)
        .ok()?;
    let note = note.trim();
    (!note.is_empty()).then(|| note.to_owned())
}
