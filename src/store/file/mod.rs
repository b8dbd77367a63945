//! The file store: `auth.json` in a Codex home, changed only inside a cross-process transaction.
//!
//! A [`FileTransaction`] holds `auth.lock` from [`FileStore::begin`] until it is dropped. Inside
//! it the caller reads the current document, decides, and writes or removes it; each write takes
//! `auth.json.lock` around the durable atomic write (see the `lock` module for the protocol and
//! the lock order). Changes made by other processes are seen through a watch of the directory
//! (the `watch` module), else by comparing the file's metadata once per look.
//!
//! # Per platform
//!
//! What each platform does, and how it is verified. Linux runs the whole suite; macOS and Windows
//! are compiled and linted for (`scripts/cross-check.sh`), and the platform-neutral tests run as
//! Windows programs under Wine (`scripts/wine-tests.sh`); nothing here runs on macOS.
//!
//! - **Locks.** std's `File::lock` everywhere, the call Codex (a Rust program) makes too: `flock`
//!   on Linux and macOS (APFS and HFS+ support it; it is advisory, per open file, and released
//!   when the holder dies), `LockFileEx` on Windows, which is a **mandatory** byte-range lock: a
//!   locked `auth.lock` cannot be read through another handle. Nothing needs to read it: the
//!   holder note is for messages, and a reader that cannot see it names no holder. That Codex
//!   locks the same two files was observed with strace on Linux (0.171.0); on macOS and Windows
//!   it follows from Codex using the same std call on the same paths, not from a run.
//! - **Durability.** Linux: `fsync` of the file, `rename`, `fsync` of the directory. macOS:
//!   `fsync` leaves the data in the drive's cache, so the file and the directory are flushed with
//!   `fcntl(F_FULLFSYNC)`, falling back to `fsync` where a filesystem refuses it (as SQLite
//!   does). Windows: `FlushFileBuffers`, then `MoveFileExW(MOVEFILE_REPLACE_EXISTING |
//!   MOVEFILE_WRITE_THROUGH)`; a rename refused because a reader holds `auth.json` open is retried
//!   with POSIX semantics and then for up to a second (Wine 8.0 refuses it even to a reader that
//!   allows deletion), because failing there would lose a rotated token. A directory cannot be
//!   flushed on Windows; NTFS journals the rename.
//! - **Permissions.** Unix: 0600 files, a 0700 home. Windows: files inherit the ACL of the user's
//!   profile directory, which already keeps other users out; authstore sets no ACL of its own
//!   (a documented limit), and `status` does not warn there.
//! - **The watch.** Linux: inotify on the directory, subscribed only to what replaces or rewrites
//!   a file. macOS: FSEvents (notify's backend), one stream for the directory with file-level
//!   events and no added latency; kqueue was not taken because it needs an open descriptor for
//!   every file in the watched directory. FSEvents may coalesce events: the watch only needs one
//!   event per change to mark the cache changed, and a re-read finds what changed. Windows:
//!   `ReadDirectoryChangesW` (notify's backend). Everywhere, a fresh cached token costs no system
//!   call: the watch thread bumps a counter that `auth()` reads.

mod atomic;
pub(crate) mod lock;
mod presence;
pub(crate) mod watch;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BoxFuture, ChangeFeed, ChangeOptions, Store, Transaction, sys};
use crate::document::{AuthDocument, DocumentError, MAX_DOCUMENT_BYTES};
use crate::error::{Error, Location, Result};

pub use atomic::Visibility;
use lock::read_holder_note;
pub use presence::{AGENT_LOCK_FILE, AGENT_NOTE_FILE, ActiveAgent, AgentPresence};

/// Writes `bytes` to `path` durably and atomically, the way `auth.json` is written: a temporary
/// file in the same directory (created exclusively, with `visibility`'s permissions from the
/// start), fsync, rename over `path`, fsync the directory. A failure leaves `path` as it was and
/// names the step that failed. For files beside the credentials that must never be seen half
/// written (a service definition, a store URL); it takes no lock: the caller serialises writers.
pub fn write_file_durably(path: &Path, bytes: &[u8], visibility: Visibility) -> Result<()> {
    atomic::write_atomically_as(path, bytes, visibility)
}

/// Writes `bytes` to `path` atomically but not durably: [`write_file_durably`] without its two
/// fsyncs. Readers see the old file or the new one, whole; after a power loss the old one may be
/// what survives. For records that are only a hint (the rotation record), written inside a
/// transaction where every fsync would lengthen it.
pub fn write_file_atomically(path: &Path, bytes: &[u8], visibility: Visibility) -> Result<()> {
    atomic::write_atomically_not_durably(path, bytes, visibility)
}

/// Removes `path` durably (the directory is fsynced); returns whether it existed.
pub fn remove_file_durably(path: &Path) -> Result<bool> {
    atomic::remove_durably(path)
}

/// The credentials file in a Codex home.
pub const AUTH_FILE: &str = "auth.json";
/// The transaction lock, shared with Codex.
pub const TRANSACTION_LOCK_FILE: &str = "auth.lock";
/// The write lock, shared with Codex.
pub const WRITE_LOCK_FILE: &str = "auth.json.lock";

/// How the store waits and reads. Every setter states its default.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    lock_deadline: Duration,
    parse_retry: Duration,
    unlocked: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            lock_deadline: Duration::from_secs(60),
            parse_retry: Duration::from_secs(1),
            unlocked: false,
        }
    }
}

impl StoreOptions {
    /// How long to wait for `auth.lock` before giving up with a lock timeout. Default: 60 s.
    pub fn lock_deadline(mut self, deadline: Duration) -> Self {
        self.lock_deadline = deadline;
        self
    }

    /// How long an `auth.json` that is cut short (empty, or ending before its JSON does) is
    /// re-read before it counts as invalid: a program that ignores the lock, such as Codex up
    /// to 0.145, may be rewriting it in place. A file that is complete but invalid is reported
    /// at once. Default: 1 s.
    pub fn parse_retry(mut self, retry: Duration) -> Self {
        self.parse_retry = retry;
        self
    }

    /// The lock deadline in force.
    #[cfg_attr(not(feature = "keyring"), allow(dead_code))]
    pub(crate) fn lock_deadline_value(&self) -> Duration {
        self.lock_deadline
    }

    /// Runs transactions without the cross-process locks, for filesystems that cannot lock.
    /// Concurrent processes can then spend one refresh token twice. Default: false (locked).
    pub fn unlocked(mut self, unlocked: bool) -> Self {
        self.unlocked = unlocked;
        self
    }
}

/// `auth.json` in one Codex home, with its locks. A cheap `Clone` handle.
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Paths>,
}

#[derive(Debug)]
struct Paths {
    home: PathBuf,
    auth_path: PathBuf,
    options: StoreOptions,
}

impl FileStore {
    /// A store for the Codex home `home` (which need not exist until the first write).
    pub fn new(home: impl Into<PathBuf>, options: StoreOptions) -> Self {
        let home = home.into();
        Self {
            inner: Arc::new(Paths {
                auth_path: home.join(AUTH_FILE),
                home,
                options,
            }),
        }
    }

    /// The Codex home directory.
    pub fn home(&self) -> &Path {
        &self.inner.home
    }

    /// The path of `auth.json`.
    pub fn auth_path(&self) -> &Path {
        &self.inner.auth_path
    }

    /// The path of `auth.lock`.
    pub fn transaction_lock_path(&self) -> PathBuf {
        self.inner.home.join(TRANSACTION_LOCK_FILE)
    }

    /// The options in force.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Reads `auth.json` without locking (the atomic rename guarantees a whole file). `None` when
    /// there is no file. A file that is cut short is re-read for a while (see
    /// [`StoreOptions::parse_retry`]) before it is reported; the waits between the re-reads are
    /// the runtime's timers, so that no worker thread sleeps.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidFile`](crate::ErrorKind::InvalidFile) when it stays invalid;
    /// [`ErrorKind::Unreadable`](crate::ErrorKind::Unreadable) when it cannot be read (for
    /// example, when `auth.json` is a directory).
    pub async fn read(&self) -> Result<Option<AuthDocument>> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            // One open, read and parse of at most 1 MiB: microseconds, done in place.
            match self.read_once() {
                Err(ReadError::Partial(error))
                    if started.elapsed() < self.inner.options.parse_retry =>
                {
                    tracing::debug!(path = %self.auth_path().display(), %error, "auth.json is cut short; re-reading");
                    // 1 to 10 ms, varied so that the re-reads do not fall into step with a
                    // rewriting loop.
                    attempt = attempt.wrapping_add(1);
                    let spread = (attempt.wrapping_mul(7) ^ std::process::id()) % 10;
                    tokio::time::sleep(Duration::from_millis(1 + u64::from(spread))).await;
                }
                Err(ReadError::Partial(error) | ReadError::Invalid(error)) => {
                    return Err(invalid(self.auth_path(), &error));
                }
                Err(ReadError::Other(error)) => return Err(error),
                Ok(document) => return Ok(document),
            }
        }
    }

    fn read_once(&self) -> Result<Option<AuthDocument>, ReadError> {
        let path = self.auth_path();
        let unreadable = |source| ReadError::Other(Error::unreadable(path, source));
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        match AuthDocument::parse(&bytes) {
            Ok(document) => Ok(Some(document)),
            Err(error) if error.may_be_partial() => Err(ReadError::Partial(error)),
            Err(error) => Err(ReadError::Invalid(error)),
        }
    }

    /// Starts a transaction: waits (bounded by the lock deadline) for `auth.lock`.
    ///
    /// # Errors
    /// [`ErrorKind::LockTimeout`](crate::ErrorKind::LockTimeout) naming the holder;
    /// [`ErrorKind::LockUnsupported`](crate::ErrorKind::LockUnsupported) on a filesystem that
    /// cannot lock (see [`StoreOptions::unlocked`]); [`ErrorKind::Io`](crate::ErrorKind::Io)
    /// when the home directory is missing or read-only.
    pub async fn begin(&self) -> Result<FileTransaction> {
        let lock = if self.inner.options.unlocked {
            None
        } else {
            Some(
                lock::acquire_transaction_lock(
                    &self.transaction_lock_path(),
                    self.inner.options.lock_deadline,
                )
                .await?,
            )
        };
        if let Some(lock) = &lock {
            tracing::debug!(path = %self.transaction_lock_path().display(), waited = ?lock.waited(), "transaction lock acquired");
            // Holding the lock, any temporary file of ours is a crashed writer's. Removed by the
            // first transaction of each process and by every write once it is durable (see
            // `Transaction::write`): not at every acquisition, where the directory scan would
            // delay every hand-off, and not before the write, whose time after a refresh is the
            // window in which a crash loses the rotated token.
            atomic::remove_stale_temp_files_once(self.auth_path());
        }
        Ok(FileTransaction {
            store: self.clone(),
            lock,
        })
    }

    /// Creates the home directory (0700) when it is missing.
    ///
    /// # Errors
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when it cannot be created.
    pub fn ensure_home(&self) -> Result<()> {
        if self.inner.home.is_dir() {
            return Ok(());
        }
        sys::create_private_dir(&self.inner.home)
            .map_err(|e| Error::io("create the directory", &self.inner.home, e))
    }

    /// Whether `auth.json` can be read by the group or others (a warning for `status`).
    pub fn is_readable_by_others(&self) -> bool {
        fs::metadata(self.auth_path()).is_ok_and(|m| sys::is_readable_by_others(&m))
    }

    /// What the current holder of `auth.lock` wrote about itself, if anything.
    pub fn lock_holder(&self) -> Option<String> {
        read_holder_note(&self.transaction_lock_path())
    }
}

impl Store for FileStore {
    fn location(&self) -> Location {
        Location::File(self.auth_path().to_owned())
    }

    fn read(&self) -> BoxFuture<'_, Result<Option<AuthDocument>>> {
        Box::pin(FileStore::read(self))
    }

    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>>> {
        Box::pin(async move {
            let transaction = FileStore::begin(self).await?;
            Ok(Box::new(transaction) as Box<dyn Transaction>)
        })
    }

    fn changes(&self, options: ChangeOptions) -> Box<dyn ChangeFeed> {
        Box::new(watch::FileChanges::start(self.auth_path(), options))
    }

    fn prepare_login(&self) -> Result<()> {
        self.ensure_home()
    }

    fn local_file(&self) -> Option<&FileStore> {
        Some(self)
    }
}

/// One cross-process transaction over `auth.json`. Dropping it releases `auth.lock`.
#[derive(Debug)]
pub struct FileTransaction {
    store: FileStore,
    lock: Option<lock::TransactionLock>,
}

impl FileTransaction {
    /// Re-reads `auth.json` inside the lock (see [`FileStore::read`]).
    ///
    /// # Errors
    /// As [`FileStore::read`].
    pub async fn read(&self) -> Result<Option<AuthDocument>> {
        self.store.read().await
    }

    /// Writes `document` durably and atomically, under `auth.json.lock`.
    ///
    /// # Errors
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) naming the step that failed; `auth.json` is then
    /// as it was.
    pub async fn write(&mut self, document: &AuthDocument) -> Result<()> {
        let target = atomic::resolve_target(self.store.auth_path())?;
        let bytes = document.to_json();
        self.with_write_lock(|| atomic::write_atomically(&target, &bytes))
            .await?;
        tracing::debug!(path = %target.display(), "auth.json written atomically");
        self.remove_stale_temp_files(&target);
        Ok(())
    }

    /// Removes `auth.json` (the target of a symlink, keeping the link). Returns whether there was
    /// a file to remove.
    ///
    /// # Errors
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when it cannot be removed.
    pub async fn remove(&mut self) -> Result<bool> {
        let target = atomic::resolve_target(self.store.auth_path())?;
        let removed = self
            .with_write_lock(|| atomic::remove_durably(&target))
            .await?;
        self.remove_stale_temp_files(&target);
        Ok(removed)
    }

    /// How long this transaction waited for `auth.lock`.
    pub fn lock_wait(&self) -> Duration {
        self.lock.as_ref().map_or(Duration::ZERO, |l| l.waited())
    }

    /// The store this transaction runs on.
    pub fn store(&self) -> &FileStore {
        &self.store
    }

    async fn with_write_lock<T>(&self, write: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.lock.is_none() {
            return write();
        }
        let path = self.store.inner.home.join(WRITE_LOCK_FILE);
        lock::with_write_lock(&path, self.store.inner.options.lock_deadline, write).await
    }

    /// Runs `write` under `auth.json.lock`, inside this transaction's `auth.lock`: for a store
    /// that keeps the document elsewhere (the OS keyring) but takes Codex's two locks in this
    /// home around its writes, as Codex does in every store.
    #[cfg_attr(not(feature = "keyring"), allow(dead_code))]
    pub(crate) async fn with_write_lock_async<T, F>(&self, write: impl FnOnce() -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        if self.lock.is_none() {
            return write().await;
        }
        let path = self.store.inner.home.join(WRITE_LOCK_FILE);
        lock::with_write_lock_async(&path, self.store.inner.options.lock_deadline, write).await
    }

    /// Removes what a crashed writer left, after a durable write or removal (only when locked:
    /// unlocked, another writer's temporary file may be in use).
    fn remove_stale_temp_files(&self, target: &Path) {
        if self.lock.is_some() {
            atomic::remove_stale_temp_files(target);
        }
    }
}

impl Transaction for FileTransaction {
    fn read(&mut self) -> BoxFuture<'_, Result<Option<AuthDocument>>> {
        Box::pin(FileTransaction::read(self))
    }

    fn write<'a>(&'a mut self, document: &'a AuthDocument) -> BoxFuture<'a, Result<()>> {
        Box::pin(FileTransaction::write(self, document))
    }

    fn remove(&mut self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(FileTransaction::remove(self))
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        // Every write was durable when it returned; dropping releases `auth.lock`.
        drop(self);
        Box::pin(async { Ok(()) })
    }

    fn lock_wait(&self) -> Duration {
        FileTransaction::lock_wait(self)
    }
}

/// How one read failed: cut short (worth re-reading), invalid for good, or not readable.
enum ReadError {
    Partial(DocumentError),
    Invalid(DocumentError),
    Other(Error),
}

fn invalid(path: &Path, error: &DocumentError) -> Error {
    Error::invalid_file(path, error.to_string())
}
