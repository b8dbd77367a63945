//! # authstore
//!
//! Many local processes (Codex CLI sessions, editor extensions, app servers) share one OAuth
//! credentials file, `$CODEX_HOME/auth.json`. The token authority rotates refresh tokens: each
//! one is accepted once, and a second use is rejected (`refresh_token_reused`), sometimes with
//! the whole token family revoked. When two processes refresh at once, one of them forces the
//! user to log in again. authstore makes every change to `auth.json` one cross-process
//! transaction, so that this never happens.
//!
//! ```no_run
//! # async fn example() -> authstore::error::Result<()> {
//! use authstore::{AuthManager, ManagerOptions};
//!
//! let home = authstore::store::resolve_codex_home(None)?;
//! let manager = AuthManager::new(home, ManagerOptions::default())?;
//! let credentials = manager.auth().await?; // fresh, refreshed at most once across processes
//! let _bearer = credentials.access_token(); // a `Secret`: `Debug` prints `[redacted]`
//! // After a request made with `credentials` got HTTP 401:
//! let _recovered = manager.unauthorized(&credentials).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## What is guaranteed
//!
//! Between processes that use authstore (the library or the `authstore` binary) on one Codex
//! home, on a local filesystem:
//!
//! * **No rotated token is spent twice.** A refresh happens only inside the transaction lock,
//!   after re-reading the file; a process that finds newer credentials of the same identity
//!   adopts them instead of spending its stale refresh token.
//! * **No newer token is lost.** Writes happen inside the same lock, merged into what the file
//!   holds at that moment; unknown fields, at the top level and inside `tokens`, are kept.
//! * **No torn file.** Every write is atomic (temp file, fsync, rename, fsync the directory);
//!   a reader sees the old file or the new one, whole, and a crash leaves one of the two.
//! * **No other user's credentials are adopted.** The guarded-adoption rule
//!   ([`policy::identity_verdict`]) adopts only what is provably the same account and user.
//! * **A logout stands.** A refresh that finds the file gone writes nothing.
//! * **One refresh per process.** Inside a process, tasks that find the token stale share one
//!   transaction (single-flight); a fresh cached token costs no system call at all.
//!
//! Codex itself calls the token endpoint *before* taking its lock, so on its own two Codex
//! processes can spend one token between themselves. authstore excludes Codex's commit (it takes
//! the same locks) and recovers when Codex spent a token first; to stop Codex racing itself,
//! point Codex at a token endpoint that runs every refresh through the transaction: the command
//! line's broker, built on [`AuthManager::rotate`] (the presented refresh token is current,
//! rotated away moments ago, or not this home's) and the [`rotations`] record. Not promised: a
//! process killed after the authority rotated the token and before the rename loses that
//! rotation: no client can close that window.
//!
//! ## Architecture
//!
//! Data flows one way. Callers (the `authstore` command line in `crates/authstore-cli`, editors, other
//! programs) use an [`AuthManager`]: a cached snapshot, the in-process single-flight, `auth()`,
//! refresh and 401 recovery. The manager asks [`policy`] (pure functions of the held and the
//! stored document and an injected `now`; no I/O, no clock) what to do, and the [`store`] and
//! the [`authority`] client do it. The store knows nothing about OAuth; the authority client
//! knows nothing about files. [`document`] is the `auth.json` model (unknown fields kept, JWT
//! claims, staleness), [`error`] the one error type, [`secret`] the redacted token type,
//! [`changes`] the change events for long-running readers, [`rotations`] the record of the refresh
//! tokens a home rotated away (for a token endpoint in front of it), [`sandboxes`] the
//! access-only homes a host home feeds (their secrets stand in for its refresh token).
//!
//! [`store`] is one interface ([`store::Store`], [`store::Transaction`], [`store::ChangeFeed`])
//! with its backends as sibling modules: [`store::file`](mod@store::file) (`auth.json` under
//! Codex's locks), the PostgreSQL store (feature `postgres`), the keyring store (feature
//! `keyring`: Codex's OS keyring item, under the same locks; which of the home's stores is used
//! is chosen as Codex chooses, [`store::credentials`]) and [`store::mirror`] (a shared
//! store copied into the local `auth.json`). A new backend is one new sibling module; the manager never asks which
//! one it runs on. The embedded token authority for tests and the demo is the
//! `authstore-simulator` crate, re-exported as `authstore::simulator` (feature `simulator`); the
//! command line (the `authstore-cli` crate, with the demo and its deliberately unsafe baselines)
//! is a crate of its own that uses this library the way any program would.
//!
//! ## Locking protocol
//!
//! `auth.lock` (the transaction lock) is held across the whole transaction: re-read, decide,
//! network refresh, write. `auth.json.lock` (the write lock) is taken inside it, only around the
//! file write. Both are the files Codex itself locks, so authstore and Codex exclude each other;
//! both are created 0600 and never deleted or renamed. The locks are the operating system's
//! advisory locks, through std's `File::lock`/`try_lock` (flock on Unix, `LockFileEx` on
//! Windows); the kernel releases the lock of a process that dies. Waiting is bounded by a
//! deadline that ends in an [`ErrorKind::LockTimeout`] error naming the holder. See
//! [`store::file`].
//!
//! ## The refresh transaction
//!
//! Take the lock, re-read the file, then decide ([`policy::decide`], a pure function): logged
//! out elsewhere → write nothing; another identity → write nothing, spend nothing; newer
//! credentials of the same identity → adopt them (no network call when they are fresh); else
//! refresh once, merge, write atomically. On `refresh_token_reused`, re-read once more and adopt
//! a successor another process committed; otherwise the user must log in again. A refresh token
//! the authority rejected for good is never sent again.
//!
//! ## Durability
//!
//! See [`store::file`]: a failed write leaves `auth.json` as it was and names the step that failed;
//! temporary files a crashed writer left are removed by the next writer holding the lock; a
//! symlinked `auth.json` stays a symlink and its target is replaced.
//!
//! ## Security
//!
//! Tokens are [`secret::Secret`]s: no `Display`, a redacted `Debug`. No error, log event or
//! panic message contains one. Files, temp files and lock files are created 0600, a created
//! home directory 0700; a looser `auth.json` comes back 0600 on the next write. JWT claims are
//! read, never verified: this crate is not a resource server.
#![warn(missing_docs)]

pub mod authority;
pub mod changes;
pub mod clock;
pub mod document;
pub mod error;
mod failpoint;
pub mod manager;
pub mod policy;
pub mod rotations;
pub mod sandboxes;
pub mod secret;
/// The embedded local token authority (feature `simulator`): the `authstore-simulator` crate,
/// re-exported. It imports nothing from this library, so it is a crate of its own, and programs
/// that only share a login do not compile it.
#[cfg(feature = "simulator")]
#[doc(inline)]
pub use authstore_simulator as simulator;
pub mod store;

pub use error::{Error, ErrorKind, Result};
pub use manager::{
    AuthEvent, AuthManager, AuthSnapshot, ManagerOptions, RefreshOutcome, RequestHeaders, Rotation,
};
