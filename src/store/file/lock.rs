//! The two advisory locks shared with Codex (and the agent's own), and the only module that calls
//! lock syscalls.
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
//! * On Unix, one descriptor per lock file and process (for up to 16 lock files), kept open
//!   between transactions: closing a file opened for writing would wake every process watching
//!   the directory. After acquiring, the holder checks that the path still names the locked
//!   inode, and reopens when it does not. On Windows the lock files are opened per transaction.
//! * The wait is bounded. It starts with a non-blocking attempt; only when the lock is contended
//!   does a helper thread (from a small pool of this module's, reused between waits) block in the
//!   kernel on the descriptor, so the waiter wakes the moment the holder releases (no polling)
//!   and the async runtime's threads never block. A waiter that gives up at its deadline leaves
//!   the descriptor to the helper thread, which closes it, and so releases the lock, as soon as
//!   its blocked call returns: a waiter that gave up never holds the lock.
//! * Who holds the lock is for messages only, never for decisions. On Linux the kernel names the
//!   holder's pid in `/proc/locks`, which also names holders that write nothing (Codex). Where
//!   that does not name us for our own lock (no `/proc/locks`, or a filesystem whose inodes it
//!   shows differently; checked once per process and lock file), the holder writes its pid,
//!   program and start time into `auth.lock` after acquiring, in place, and blanks them before
//!   releasing; waiters read that note when `/proc/locks` names nobody.
//! * The kernel releases the lock of a holder that dies, so there is no stale-lock logic and no
//!   lock stealing.
//! * `authstore-agent.lock` is authstore's own **agent lock**, unknown to Codex and never taken
//!   together with the two above: the active `authstore agent` holds it for its life, a standby
//!   waits for it without a deadline (on a helper thread, as above), and `status` asks whether it
//!   is held ([`holding`]). The `presence` module states what it is for.
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

/// At most this many lock files keep a descriptor open between transactions; a process that
/// works on more Codex homes opens the others per transaction.
const MAX_KEPT_DESCRIPTORS: usize = 16;

/// Per-process mutexes, one per lock path, in front of the file locks.
static IN_PROCESS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// The descriptors kept open between transactions, and whether each lock file needs the note.
static KEPT: LazyLock<Mutex<HashMap<PathBuf, Kept>>> = LazyLock::new(Default::default);

#[derive(Debug, Default)]
struct Kept {
    /// Not locked, and used by nobody while it is here.
    file: Option<File>,
    /// Whether holders of this lock file write the note (`None`: not known yet).
    note: Option<bool>,
}

/// A held `auth.lock`. Dropping it clears the holder note (when one was written) and releases
/// the lock; the descriptor is kept for the next transaction.
#[derive(Debug)]
pub(crate) struct TransactionLock {
    file: Option<File>,
    path: PathBuf,
    waited: Duration,
    note: bool,
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
        let Some(mut file) = self.file.take() else {
            return;
        };
        // Blank the note while still holding the lock, so that a note seen by a waiter always
        // names the current holder. Overwritten in place, never truncated: truncating a file to
        // zero makes ext4 flush it on close, which would slow every hand-off.
        if self.note
            && let Err(error) = write_note(&mut file, "")
        {
            tracing::debug!(path = %self.path.display(), %error, "could not clear the lock holder note");
        }
        release(&self.path, file);
    }
}

/// Unlocks `file` and keeps it for the next transaction on `path`.
fn release(path: &Path, file: File) {
    if !sys::KEEP_LOCK_DESCRIPTORS || file.unlock().is_err() {
        // Closing releases it for sure.
        drop(file);
        return;
    }
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = kept.get_mut(path) {
        entry.file = Some(file);
    }
}

/// A descriptor of the lock file at `path`: the one kept from an earlier transaction, or a new
/// one (created 0600 when missing).
fn take_descriptor(path: &Path) -> io::Result<File> {
    let kept = KEPT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(path)
        .and_then(|entry| entry.file.take());
    match kept {
        Some(file) => Ok(file),
        None => sys::open_lock_file(path),
    }
}

/// Whether `path` still names the inode `file` is open on (a lock on a replaced file excludes
/// nobody). Errors count as "no": the caller reopens, and reports a real error from there.
fn still_names(path: &Path, file: &File) -> bool {
    if !sys::KEEP_LOCK_DESCRIPTORS {
        return true;
    }
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(named), Ok(open)) => sys::same_file(&named, &open),
        _ => false,
    }
}

/// Acquires `auth.lock` at `path`, waiting at most `deadline`.
///
/// # Errors
/// A lock timeout naming the holder when the deadline passes; an unsupported-lock error
/// when the filesystem cannot lock; an I/O error when the lock file cannot be opened (missing or
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
    if crate::failpoint::active("lock-unsupported") {
        sys::open_lock_file(path).map_err(|e| Error::io("open the lock file", path, e))?;
        return Err(lock_error(
            path,
            io::Error::new(
                io::ErrorKind::Unsupported,
                "locks not supported (failpoint)",
            ),
        ));
    }

    let mut attempts = 0;
    let file = loop {
        let file = take_descriptor(path).map_err(|e| Error::io("open the lock file", path, e))?;
        let file = lock_within(file, path, deadline, started, true).await?;
        attempts += 1;
        // Replaced again and again is not something to chase: after three, go on as before.
        if attempts >= 3 || still_names(path, &file) {
            break file;
        }
        // The file was replaced (deleted and recreated by hand): lock the one the path names.
        tracing::debug!(path = %path.display(), "the lock file was replaced; reopening it");
        let _ = file.unlock();
        KEPT.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
    };
    let note = needs_note(path, &file);
    let mut lock = TransactionLock {
        file: Some(file),
        path: path.to_owned(),
        waited: started.elapsed(),
        note,
        _in_process: guard,
    };
    if note
        && let Some(file) = lock.file.as_mut()
        && let Err(error) = write_holder_note(file)
    {
        tracing::debug!(path = %path.display(), %error, "could not write the lock holder note");
    }
    Ok(lock)
}

/// Whether holders of `path` must write the note: decided once per process and lock file,
/// holding the lock, by looking for ourselves in `/proc/locks`. Also registers `path` for
/// keeping its descriptor (when there is room).
fn needs_note(path: &Path, file: &File) -> bool {
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(Kept {
        note: Some(note), ..
    }) = kept.get(path)
    {
        return *note;
    }
    let visible = sys::lock_holder_pid(file) == Some(std::process::id());
    if kept.len() < MAX_KEPT_DESCRIPTORS || kept.contains_key(path) {
        kept.entry(path.to_owned()).or_default().note = Some(!visible);
    }
    !visible
}

/// Locks `file` (the lock file at `path`), waiting until `started + deadline` at most. Returns
/// the descriptor, locked. `patient`: say whom we wait for after [`PATIENCE`].
async fn lock_within(
    file: File,
    path: &Path,
    deadline: Duration,
    started: Instant,
    patient: bool,
) -> Result<File> {
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let remaining = deadline.saturating_sub(started.elapsed());
            wait_for_lock(file, path, remaining, started, patient).await
        }
        Err(std::fs::TryLockError::Error(error)) => Err(lock_error(path, error)),
    }
}

/// Blocks a helper thread in the kernel's lock call, so that the hand-off is immediate.
async fn wait_for_lock(
    file: File,
    path: &Path,
    remaining: Duration,
    started: Instant,
    patient: bool,
) -> Result<File> {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let holder = read_holder_note(path);
        tracing::debug!(path = %path.display(), holder = holder.as_deref().unwrap_or("unknown"), "lock contended, waiting");
    }
    let (sender, mut receiver) = oneshot::channel();
    helpers::run(Box::new(move || {
        let result = file.lock().map(|()| file);
        // When the waiter gave up, the receiver is gone and the descriptor comes back (or is
        // dropped with the channel): closing it releases the lock.
        drop(sender.send(result));
    }))
    .map_err(|e| Error::io("start a thread to wait for", path, e))?;

    let timed_out = || Error::lock_timeout(path, started.elapsed(), read_holder_note(path));
    let patience = if patient {
        PATIENCE.min(remaining)
    } else {
        remaining
    };
    let result = match tokio::time::timeout(patience, &mut receiver).await {
        Ok(result) => result,
        Err(_) if !patient => return Err(timed_out()),
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
                Err(_) => return Err(timed_out()),
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

/// Takes `auth.json.lock` for the duration of `write`, waiting at most `deadline` for it (off
/// the runtime's threads, as for `auth.lock`). Codex holds it only around its own file write, so
/// contention is brief.
///
/// `write` (the durable write: two fsyncs, about half a millisecond on a quick disk) runs on the
/// calling task's thread: handing it to another thread would add a thread wake-up to the window
/// in which a crash loses a rotated token, and nothing else in the process waits for this task's
/// thread while the transaction holds the lock.
pub(crate) async fn with_write_lock<T>(
    path: &Path,
    deadline: Duration,
    write: impl FnOnce() -> Result<T>,
) -> Result<T> {
    with_write_lock_async(path, deadline, || std::future::ready(write())).await
}

/// [`with_write_lock`] around a write that is itself asynchronous: the keyring store's update
/// of its item (one D-Bus call), which Codex's commit excludes by the same lock.
pub(crate) async fn with_write_lock_async<T, F>(
    path: &Path,
    deadline: Duration,
    write: impl FnOnce() -> F,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let started = Instant::now();
    let file = take_descriptor(path).map_err(|e| Error::io("open the lock file", path, e))?;
    let file = lock_within(file, path, deadline, started, false).await?;
    if !still_names(path, &file) {
        // Replaced by hand: lock the file the path names now. The transaction lock is held, so
        // this is rare and never a loop in practice; a second replacement is an error.
        let _ = file.unlock();
        KEPT.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
        let file =
            sys::open_lock_file(path).map_err(|e| Error::io("open the lock file", path, e))?;
        let file = lock_within(file, path, deadline, started, false).await?;
        let result = write().await;
        let _ = file.unlock();
        return result;
    }
    let result = write().await;
    {
        let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < MAX_KEPT_DESCRIPTORS && !kept.contains_key(path) {
            kept.insert(path.to_owned(), Kept::default());
        }
    }
    release(path, file);
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

/// Who holds the lock at `path`, if known: for messages only, never for decisions. The kernel's
/// view first (`/proc/locks` on Linux: `pid N (program)`), else the note the holder wrote.
pub(crate) fn read_holder_note(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    if let Some(pid) = sys::lock_holder_pid(&file) {
        return Some(match sys::program_name(pid) {
            Some(program) => format!("pid {pid} ({program})"),
            None => format!("pid {pid}"),
        });
    }
    let mut note = String::new();
    file.take(MAX_NOTE_BYTES).read_to_string(&mut note).ok()?;
    let note = note.trim();
    (!note.is_empty()).then(|| note.to_owned())
}

/// A held agent lock (`authstore-agent.lock`): the one active `authstore agent` of a home holds
/// it for its whole life, and the kernel releases it when the agent exits or dies (SIGKILL
/// included). It is the agent's own lock, never `auth.lock`: a standby agent waiting for it
/// holds nothing Codex or a transaction needs.
#[derive(Debug)]
pub(crate) struct AgentLock {
    _file: File,
}

/// Takes the agent lock at `path` (created 0600 when missing) if nobody holds it; `Ok(None)`
/// when another process does.
///
/// # Errors
/// An I/O error when the lock file cannot be opened; an unsupported-lock error on a filesystem
/// that cannot lock.
pub(crate) fn try_acquire_agent_lock(path: &Path) -> Result<Option<AgentLock>> {
    for _ in 0..3 {
        let file =
            sys::open_lock_file(path).map_err(|e| Error::io("open the lock file", path, e))?;
        match file.try_lock() {
            Ok(()) if still_names(path, &file) => return Ok(Some(AgentLock { _file: file })),
            // Replaced by hand after we opened it: lock the file the path names now.
            Ok(()) => continue,
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(error)) => return Err(lock_error(path, error)),
        }
    }
    Err(Error::io(
        "lock",
        path,
        io::Error::other("the lock file keeps being replaced"),
    ))
}

/// Waits until the agent lock at `path` is free and takes it: no deadline, and no polling (a
/// helper thread blocks in the kernel's lock call, off the runtime's threads, and the waiter
/// wakes the moment the holder releases or dies). Dropping the future abandons the wait; the
/// helper thread then releases the lock as soon as it gets it.
///
/// # Errors
/// As [`try_acquire_agent_lock`].
pub(crate) async fn wait_for_agent_lock(path: &Path) -> Result<AgentLock> {
    loop {
        let file =
            sys::open_lock_file(path).map_err(|e| Error::io("open the lock file", path, e))?;
        let (sender, receiver) = oneshot::channel();
        helpers::run(Box::new(move || {
            let result = file.lock().map(|()| file);
            drop(sender.send(result));
        }))
        .map_err(|e| Error::io("start a thread to wait for", path, e))?;
        match receiver.await {
            Ok(Ok(file)) if still_names(path, &file) => return Ok(AgentLock { _file: file }),
            // Replaced by hand while we waited: wait for the file the path names now.
            Ok(Ok(_replaced)) => continue,
            Ok(Err(error)) => return Err(lock_error(path, error)),
            Err(_) => {
                return Err(Error::io(
                    "wait for",
                    path,
                    io::Error::other("lock wait thread stopped"),
                ));
            }
        }
    }
}

/// Whether a lock file is held, as far as this process can tell without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holding {
    /// Nobody holds it (or the file does not exist).
    Free,
    /// Someone holds it; the kernel named the holder's pid where it can (`/proc/locks`).
    Held { pid: Option<u32> },
}

/// Whether the lock at `path` is held, without creating the file and without waiting: the
/// holder in `/proc/locks` on Linux; else (no `/proc/locks`, or a filesystem whose inodes it
/// shows differently) a shared try-lock, released at once, that fails only while someone holds
/// the lock exclusively. The try-lock never delays a holder: a waiter that was about to get the
/// lock gets it a moment later.
pub(crate) fn holding(path: &Path) -> Holding {
    let Ok(file) = File::open(path) else {
        return Holding::Free;
    };
    if let Some(pid) = sys::lock_holder_pid(&file) {
        return Holding::Held { pid: Some(pid) };
    }
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Holding::Free
        }
        Err(std::fs::TryLockError::WouldBlock) => Holding::Held { pid: None },
        // Cannot tell (a filesystem that cannot lock): nobody can hold it either.
        Err(std::fs::TryLockError::Error(_)) => Holding::Free,
    }
}

/// The threads that block in the kernel's lock call for waiters: reused between waits (an idle
/// thread ends after [`helpers::KEEP_ALIVE`]), and not tokio's blocking pool, whose shutdown
/// would wait for a thread still blocked after its waiter gave up.
mod helpers {
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc::{Sender, channel};
    use std::sync::{LazyLock, Mutex};
    use std::time::Duration;

    pub(super) type Job = Box<dyn FnOnce() + Send>;

    /// How long an idle helper thread waits for the next wait before it ends.
    pub(super) const KEEP_ALIVE: Duration = Duration::from_secs(10);

    /// One sender per idle thread (with the thread's number), the most recently idle last.
    static IDLE: LazyLock<Mutex<Vec<Idle>>> = LazyLock::new(Default::default);
    /// An idle thread: its number, and where to send it the next job.
    type Idle = (u64, Sender<Job>);
    static NEXT: AtomicU64 = AtomicU64::new(0);

    /// Runs `job` on an idle helper thread, or on a new one.
    pub(super) fn run(job: Job) -> io::Result<()> {
        let idle = IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let job = match idle {
            // A thread is removed from IDLE only by whoever hands it a job, or by itself before
            // it ends (under the lock), so this thread is alive and will take the job.
            Some((_, thread)) => match thread.send(job) {
                Ok(()) => return Ok(()),
                Err(returned) => returned.0,
            },
            None => job,
        };
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        std::thread::Builder::new()
            .name("authstore-lock-wait".into())
            .spawn(move || {
                let mut job = job;
                loop {
                    job();
                    let (sender, receiver) = channel();
                    IDLE.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((id, sender));
                    job = match receiver.recv_timeout(KEEP_ALIVE) {
                        Ok(next) => next,
                        Err(_) => {
                            let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(at) = idle.iter().position(|(i, _)| *i == id) {
                                idle.remove(at);
                                return;
                            }
                            drop(idle);
                            // Someone took this thread just now: its job is on the way.
                            match receiver.recv() {
                                Ok(next) => next,
                                Err(_) => return,
                            }
                        }
                    };
                }
            })
            .map(drop)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Another open file description of `path` (flock excludes it even in this process).
    fn other(path: &Path) -> File {
        sys::open_lock_file(path).unwrap()
    }

    #[test]
    fn the_holder_is_named_and_a_replaced_lock_file_is_locked_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.lock");
        let runtime = runtime();
        let held = runtime
            .block_on(acquire_transaction_lock(&path, Duration::from_secs(10)))
            .unwrap();
        let holder = read_holder_note(&path).expect("the holder is known");
        assert!(
            holder.contains(&format!("pid {}", std::process::id())),
            "{holder}"
        );
        assert!(matches!(
            other(&path).try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(held);

        // Replaced by hand between two transactions: the kept descriptor is on the old inode,
        // and the next transaction must lock the file the path names.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        let held = runtime
            .block_on(acquire_transaction_lock(&path, Duration::from_secs(10)))
            .unwrap();
        assert!(matches!(
            other(&path).try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(held);
        other(&path).try_lock().expect("released");
    }

    #[test]
    fn a_write_lock_waiter_that_gave_up_never_keeps_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json.lock");
        let foreign = other(&path);
        foreign.lock().unwrap();
        let runtime = runtime();
        let mut wrote = false;
        let result = runtime.block_on(with_write_lock(&path, Duration::from_millis(50), || {
            wrote = true;
            Ok(())
        }));
        assert!(
            matches!(&result, Err(error) if error.kind() == crate::ErrorKind::LockTimeout),
            "{result:?}"
        );
        assert!(!wrote, "nothing is written without the lock");

        // The helper thread is still blocked in flock; once the foreign holder releases, it gets
        // the lock and must let it go at once: a blocking lock from elsewhere then succeeds.
        foreign.unlock().unwrap();
        let (sender, receiver) = mpsc::channel();
        let next = other(&path);
        std::thread::spawn(move || sender.send(next.lock().map(|()| next)));
        let next = receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("the abandoned waiter released the lock")
            .unwrap();
        next.unlock().unwrap();

        // And the write lock works again.
        let wrote = runtime
            .block_on(with_write_lock(&path, Duration::from_secs(10), || Ok(true)))
            .unwrap();
        assert!(wrote);
    }
}
