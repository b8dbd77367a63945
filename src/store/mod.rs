//! Where credentials are kept: one interface, [`Store`], and its backends as sibling modules.
//!
//! # The interface
//!
//! A store holds one credentials document (a Codex `auth.json`) and changes it only inside a
//! [`Transaction`]: [`Store::begin`] takes the store's lock (bounded by its deadline), the caller
//! [reads](Transaction::read) what is locked, decides, [writes](Transaction::write) or
//! [removes](Transaction::remove) it, and [commits](Transaction::commit). Dropping a
//! transaction without committing releases the lock (and rolls back where the store has
//! rollback). A long-lived reader learns that the stored credentials changed, made by any
//! process or machine, from the store's [`ChangeFeed`]. The store knows nothing about OAuth:
//! what to write is the caller's decision ([`crate::policy`]).
//!
//! # The backends
//!
//! - [`file`](mod@file): `auth.json` in a Codex home under the two advisory locks Codex itself
//!   takes; changes are seen through a directory watch, else one metadata check per look.
//! - `postgres` (feature `postgres`): one row of a PostgreSQL table, locked per transaction;
//!   changes are seen from the row's generation, asked for at most once per poll interval.
//! - `keyring` (feature `keyring`): the OS keyring item Codex keeps its login in
//!   (`cli_auth_credentials_store = "keyring"` or `"auto"`), under the same two locks in the
//!   home as the file store; changes are seen from the Secret Service's signals on Linux, by
//!   polling the item on macOS and Windows.
//! - [`mirror`]: a shared store (PostgreSQL) kept copied into the local `auth.json` after every
//!   change, for local programs (Codex among them) that read only the file.
//!
//! Which store a program uses is one [`StoreConfig`]: the Codex home, an optional shared store
//! ([`StoreUrl`], one grammar for every front-end), the waits; without a shared store, the
//! home's own store is chosen as Codex chooses it ([`credentials`]: `config.toml`'s
//! `cli_auth_credentials_store`, or an override).
//!
//! A new backend is one new sibling module implementing [`Store`],
//! [`Transaction`] and a [`ChangeFeed`]; [`crate::AuthManager`] never asks which one it runs on.
//!
//! # Why trait objects
//!
//! The manager holds an `Arc<dyn Store>` rather than being generic over its store, so that
//! `AuthManager` stays one concrete type (for the command-line tool, for bindings to other
//! languages, for users who pick the store at run time), and the futures are boxed
//! ([`BoxFuture`]). A store is only asked on the slow path (a re-read, a transaction): a fresh
//! cached token never reaches it, and an allocation per transaction is noise next to a lock and
//! an fsync.

mod config;
pub mod credentials;
pub mod file;
#[cfg(feature = "keyring")]
pub mod keyring;
pub mod mirror;
#[cfg(feature = "postgres")]
pub mod postgres;
mod sys;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::document::AuthDocument;
use crate::error::{Error, Location, Result};

pub use config::{StoreConfig, StoreUrl};
pub use credentials::{ChoiceSource, CredentialsChoice, CredentialsStore};
pub use file::{
    AGENT_LOCK_FILE, AGENT_NOTE_FILE, AUTH_FILE, ActiveAgent, AgentPresence, FileStore,
    FileTransaction, StoreOptions, TRANSACTION_LOCK_FILE, WRITE_LOCK_FILE,
};
pub use mirror::Mirrored;

/// A boxed future that can be sent between threads: what the store traits return, so that
/// stores can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where one credentials document is kept. See the [module documentation](self).
pub trait Store: fmt::Debug + Send + Sync {
    /// Where the credentials are, for messages: a file, or a store shown without its password.
    fn location(&self) -> Location;

    /// Reads the document without locking; `None` when logged out. A reader sees a whole
    /// document, never a torn one.
    ///
    /// # Errors
    /// The document is invalid ([`crate::ErrorKind::InvalidFile`]) or unreadable, or the store
    /// is unavailable.
    fn read(&self) -> BoxFuture<'_, Result<Option<AuthDocument>>>;

    /// Starts a transaction: takes the store's lock, waiting at most its deadline.
    ///
    /// # Errors
    /// [`crate::ErrorKind::LockTimeout`] naming the holder when known; the store is
    /// unavailable, or its lock cannot be taken.
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>>>;

    /// How a long-lived reader learns of changes: a directory watch, metadata checks, a poll.
    fn changes(&self, options: ChangeOptions) -> Box<dyn ChangeFeed>;

    /// Makes a first login possible (the file store creates a missing home directory, 0700).
    ///
    /// # Errors
    /// When that fails.
    fn prepare_login(&self) -> Result<()> {
        Ok(())
    }

    /// The local `auth.json` this store is, or mirrors into; `None` when there is none.
    fn local_file(&self) -> Option<&FileStore>;
}

/// One transaction on a [`Store`], holding its lock. Dropping it without
/// [`commit`](Transaction::commit) releases the lock and rolls back what can be rolled back
/// (the file store's writes are durable as they happen).
pub trait Transaction: fmt::Debug + Send {
    /// The document as locked (or as this transaction wrote it); `None` when logged out.
    ///
    /// # Errors
    /// As [`Store::read`].
    fn read(&mut self) -> BoxFuture<'_, Result<Option<AuthDocument>>>;

    /// Replaces the document.
    ///
    /// # Errors
    /// The write failed; the stored document is then as it was.
    fn write<'a>(&'a mut self, document: &'a AuthDocument) -> BoxFuture<'a, Result<()>>;

    /// Removes the document (a logout); returns whether there was one.
    ///
    /// # Errors
    /// The removal failed; the stored document is then as it was.
    fn remove(&mut self) -> BoxFuture<'_, Result<bool>>;

    /// Makes what was written durable and releases the lock.
    ///
    /// # Errors
    /// The commit failed. After a refresh that is the window in which the rotated token can be
    /// lost, and the error says whether anything was stored.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<()>>;

    /// How long taking the lock took.
    fn lock_wait(&self) -> Duration;

    /// How long this transaction may sit without a statement before the store ends it and
    /// releases its lock (PostgreSQL's idle timeout); `None` when it may be held indefinitely
    /// (the file store: the lock lasts as long as the process holds it). A caller that spends
    /// a refresh token inside the transaction must be done, retries included, within it.
    fn idle_limit(&self) -> Option<Duration> {
        None
    }
}

/// How a [`ChangeFeed`] is set up.
#[derive(Debug, Clone, Copy)]
pub struct ChangeOptions {
    /// Whether to watch (where the store can be watched) rather than check on every look.
    pub watch: bool,
    /// For stores that cannot be watched: how long a look stays valid before the store is asked
    /// again.
    pub poll: Duration,
}

impl Default for ChangeOptions {
    fn default() -> Self {
        Self {
            watch: true,
            poll: Duration::from_secs(1),
        }
    }
}

/// How a long-lived reader learns that the stored credentials may have changed, made by any
/// process or machine.
///
/// Take a [`Mark`] just before reading; later, [`changed_since`](ChangeFeed::changed_since)
/// says whether what was read may be outdated. It is called on every `auth()` and must not ask
/// the store when it can avoid it: with a directory watch it reads an atomic counter (no system
/// call), without one it checks the file's metadata (one `stat`), for a shared store it looks at
/// the clock (the store is asked again once per poll interval).
pub trait ChangeFeed: fmt::Debug + Send + Sync {
    /// A mark of the moment, taken just before a read (or just after a write, inside the lock).
    fn mark(&self) -> Mark;

    /// Whether the stored credentials may have changed since `mark` was taken. May say yes
    /// when nothing changed (then the caller re-reads); never says no after a change.
    fn changed_since(&self, mark: &Mark) -> bool;

    /// Resolves when [`changed_since`](ChangeFeed::changed_since) may have become true: woken
    /// by the watch, or after the poll interval. Callers bound it with a timeout of their own.
    fn wait<'a>(&'a self, mark: &'a Mark) -> BoxFuture<'a, ()>;

    /// Whether changes are pushed to this feed (a watch) rather than looked for.
    fn is_watching(&self) -> bool;

    /// How many times the store had to be asked ([`changed_since`](ChangeFeed::changed_since)
    /// made a system call): 0 with a watch.
    fn checks(&self) -> u64 {
        0
    }
}

/// A moment in a [`ChangeFeed`], as its backend counts it. Opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark(pub(crate) MarkKind);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MarkKind {
    /// The number of changes a watch had seen.
    Count(u64),
    /// The file's metadata.
    Stamp(Option<file::watch::FileStamp>),
    /// When the store was last asked.
    #[cfg_attr(not(any(feature = "postgres", feature = "keyring")), allow(dead_code))]
    At(Instant),
    /// Marks of two feeds watched together (the keyring item and `auth.json`, for `auto`).
    #[cfg_attr(not(all(target_os = "linux", feature = "keyring")), allow(dead_code))]
    Both(Box<Mark>, Box<Mark>),
    /// Nothing seen yet: always changed.
    Outdated,
}

impl Mark {
    /// A mark that every feed takes as "changed": for a reader that must look again.
    pub(crate) fn outdated() -> Self {
        Mark(MarkKind::Outdated)
    }
}

/// A feed for a store that cannot be watched: what was read stays valid for `poll`, then the
/// store is asked again (a shared store answers cheaply from its row's generation).
#[derive(Debug)]
#[cfg_attr(not(any(feature = "postgres", feature = "keyring")), allow(dead_code))]
pub(crate) struct PollFeed {
    pub(crate) poll: Duration,
}

impl ChangeFeed for PollFeed {
    fn mark(&self) -> Mark {
        Mark(MarkKind::At(Instant::now()))
    }

    fn changed_since(&self, mark: &Mark) -> bool {
        match mark.0 {
            MarkKind::At(at) => at.elapsed() >= self.poll,
            _ => true,
        }
    }

    fn wait<'a>(&'a self, mark: &'a Mark) -> BoxFuture<'a, ()> {
        let until = match mark.0 {
            MarkKind::At(at) => at + self.poll,
            _ => Instant::now(),
        };
        Box::pin(tokio::time::sleep_until(until.into()))
    }

    fn is_watching(&self) -> bool {
        false
    }
}

/// A short name for the Codex home `home` that does not show its path: the first 16 hex digits
/// of the SHA-256 of its canonical path (of the path as given when it cannot be canonicalized),
/// as Codex names its keyring entries. A broker tells its home by it.
pub fn home_fingerprint(home: &Path) -> String {
    let canonical = home.canonicalize().unwrap_or_else(|_| home.to_owned());
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        canonical.to_string_lossy().as_bytes(),
    );
    digest.as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The Codex home: `explicit` when given, else `CODEX_HOME` when set and non-empty (it must name
/// an existing directory), else `~/.codex`.
///
/// # Errors
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when `CODEX_HOME` names something that is not a directory, or when
/// there is no home directory to default to.
pub fn resolve_codex_home(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    match std::env::var_os("CODEX_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_dir() {
                Ok(dir)
            } else {
                Err(Error::invalid_input(format!(
                    "CODEX_HOME={} is not an existing directory; create it or unset CODEX_HOME",
                    dir.display()
                )))
            }
        }
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| PathBuf::from(home).join(".codex"))
            .ok_or_else(|| {
                Error::invalid_input(
                    "neither CODEX_HOME nor HOME is set; set CODEX_HOME to the Codex home",
                )
            }),
    }
}

/// The Codex home `path` names: a home directory, or the `auth.json` in one (the path adopters
/// usually hold). A path whose last component is `auth.json` and that is not a directory means
/// its parent; an existing directory, or a path that does not exist (a home yet to be made), is
/// the home itself. Nothing is created.
///
/// # Errors
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput), saying why, when `path` names an
/// existing file that is not called `auth.json`, or a path that does not exist but is named like
/// a JSON file (`*.json`): Codex's lock files (`auth.lock`, `auth.json.lock`) are named for the
/// home, not for the file, so credentials kept under another name could not be shared with Codex
/// safely.
pub fn codex_home_from_path(path: &Path) -> Result<PathBuf> {
    let named_auth_json = path.file_name().is_some_and(|name| name == AUTH_FILE);
    let metadata = std::fs::metadata(path).ok();
    if metadata.as_ref().is_some_and(std::fs::Metadata::is_dir) {
        return Ok(path.to_owned());
    }
    if named_auth_json {
        return Ok(match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        });
    }
    let json_named = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    if metadata.is_some() || json_named {
        return Err(Error::invalid_input(format!(
            "{} is not a Codex home or its {AUTH_FILE}: credentials are shared with Codex only as \
             {AUTH_FILE} in a Codex home, whose lock files ({TRANSACTION_LOCK_FILE}, \
             {WRITE_LOCK_FILE}) are named for it; pass the home directory or its {AUTH_FILE}",
            path.display()
        )));
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod home_tests {
    use super::*;

    #[test]
    fn a_home_or_its_auth_json_names_the_home_and_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        assert_eq!(codex_home_from_path(home).unwrap(), home);
        // auth.json, existing or not yet.
        assert_eq!(codex_home_from_path(&home.join(AUTH_FILE)).unwrap(), home);
        std::fs::write(home.join(AUTH_FILE), b"{}").unwrap();
        assert_eq!(codex_home_from_path(&home.join(AUTH_FILE)).unwrap(), home);
        assert_eq!(
            codex_home_from_path(Path::new(AUTH_FILE)).unwrap(),
            Path::new(".")
        );
        // A home yet to be made.
        let later = home.join("later");
        assert_eq!(codex_home_from_path(&later).unwrap(), later);
        // Another file, existing or named like one.
        std::fs::write(home.join("credentials.json"), b"{}").unwrap();
        std::fs::write(home.join("notes"), b"x").unwrap();
        for other in ["credentials.json", "notes", "missing.JSON"] {
            let error = codex_home_from_path(&home.join(other)).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidInput, "{other}");
            let message = error.to_string();
            assert!(message.contains(other), "{message}");
            assert!(message.contains(TRANSACTION_LOCK_FILE), "{message}");
        }
    }
}
