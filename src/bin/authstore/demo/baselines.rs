//! **Baselines for comparison, not part of the library.** Two ways of sharing `auth.json` that
//! authstore replaces, reproduced faithfully enough to show their failure on the same workload:
//!
//! - [`Strategy::Naive`](super::Strategy::Naive): the session keeps the document it read at
//!   startup in memory and, when it is stale, spends *its own cached* refresh token and writes the
//!   result over `auth.json` (atomically, without a lock). It never re-reads the file, so it never
//!   learns that another process already rotated the token. This is how Codex behaved before
//!   March 2026.
//! - [`Strategy::Reread`](super::Strategy::Reread): when its cached document is stale, the session
//!   first re-reads `auth.json` and adopts it when it holds different credentials of a compatible
//!   identity (the guarded-adoption rule of [`authstore::policy`]), skipping the refresh when the
//!   adopted tokens are fresh; otherwise it refreshes, still without a lock. This is Codex today
//!   and the approach of the closed Codex PR 15127: it narrows the window between "read stale"
//!   and "write new" but cannot close it, because nothing stops two processes from reading the
//!   same stale file and spending the same token.
//!
//! Both talk to the token endpoint with the library's [`TokenClient`] (the wire format is not
//! what is being compared) and write with the same durable sequence authstore uses (temp file,
//! fsync, rename, fsync the directory), minus the locks. Nothing here is exported by the
//! library; nothing should be copied from here.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use authstore::authority::{RefreshFailure, TokenClient};
use authstore::document::{AuthDocument, Freshness};
use authstore::error::Error;
use authstore::policy::documents_verdict;
use authstore::store::{FileStore, StoreOptions};

use super::worker::Failure;

/// Which of the two baselines a [`Baseline`] session follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Refresh from the cached copy, never re-read.
    Naive,
    /// Re-read and adopt compatible newer credentials before refreshing; no lock.
    Reread,
}

/// A long-lived session (an editor window, a CLI session) following one baseline strategy.
pub(crate) struct Baseline {
    kind: Kind,
    /// Used for plain reads only: [`FileStore::read`] takes no lock.
    store: FileStore,
    client: TokenClient,
    freshness: Freshness,
    held: Option<Arc<Held>>,
    /// Successful refreshes this session made.
    pub(crate) refreshed: u64,
    /// Newer credentials adopted from disk (only [`Kind::Reread`]).
    pub(crate) adopted: u64,
}

impl Baseline {
    pub(crate) fn new(
        kind: Kind,
        home: PathBuf,
        client: TokenClient,
        freshness: Freshness,
    ) -> Self {
        Self {
            kind,
            store: FileStore::new(home, StoreOptions::default().unlocked(true)),
            client,
            freshness,
            held: None,
            refreshed: 0,
            adopted: 0,
        }
    }

    /// What a session does at startup: read `auth.json` into memory.
    pub(crate) async fn load(&mut self) -> Result<(), Error> {
        match self.store.read().await? {
            Some(document) => {
                self.held = Some(Arc::new(Held::new(document)));
                Ok(())
            }
            None => Err(Error::not_logged_in(self.store.auth_path())),
        }
    }

    /// Credentials for one request: the cached document when fresh, else (after a re-read, for
    /// [`Kind::Reread`]) a refresh written over `auth.json`.
    pub(crate) async fn credentials(&mut self) -> Result<Arc<Held>, Failure> {
        let now = SystemTime::now();
        let Some(held) = self.held.clone() else {
            return Err(Failure::Other("not logged in".into()));
        };
        if !held.is_stale(now, &self.freshness) {
            return Ok(held);
        }
        let base = match self.kind {
            Kind::Naive => held,
            Kind::Reread => match self.store.read().await {
                Ok(Some(disk))
                    if !disk.same_credentials(&held.document)
                        && documents_verdict(&held.document, &disk).is_compatible() =>
                {
                    self.adopted += 1;
                    let disk = Arc::new(Held::new(disk));
                    self.held = Some(disk.clone());
                    if !disk.is_stale(now, &self.freshness) {
                        return Ok(disk);
                    }
                    disk
                }
                Ok(_) => held,
                Err(error) => return Err(Failure::Other(error.to_string())),
            },
        };
        self.refresh(&base, now).await
    }

    /// Obtains new tokens now from the held state (for [`Kind::Reread`], after adopting a newer
    /// one from disk).
    pub(crate) async fn force(&mut self) -> Result<Arc<Held>, Failure> {
        let now = SystemTime::now();
        let Some(mut base) = self.held.clone() else {
            return Err(Failure::Other("not logged in".into()));
        };
        if self.kind == Kind::Reread
            && let Ok(Some(disk)) = self.store.read().await
            && !disk.same_credentials(&base.document)
            && documents_verdict(&base.document, &disk).is_compatible()
        {
            self.adopted += 1;
            base = Arc::new(Held::new(disk));
        }
        self.refresh(&base, now).await
    }

    /// Installs credentials from a new login, as a login command would: written over
    /// `auth.json` and held.
    pub(crate) fn install(&mut self, document: AuthDocument) -> Result<(), String> {
        write_unlocked(self.store.auth_path(), &document.to_json())
            .map_err(|e| format!("could not write {}: {e}", self.store.auth_path().display()))?;
        self.held = Some(Arc::new(Held::new(document)));
        Ok(())
    }

    async fn refresh(&mut self, base: &Held, now: SystemTime) -> Result<Arc<Held>, Failure> {
        let Some(refresh_token) = base.document.refresh_token() else {
            return Err(Failure::Other("the document holds no refresh token".into()));
        };
        match self.client.refresh(refresh_token).await {
            Ok(response) => {
                let refreshed = Arc::new(Held::new(response.merge_into(&base.document, now)));
                // No lock: whatever another process wrote meanwhile is overwritten.
                write_unlocked(self.store.auth_path(), &refreshed.document.to_json()).map_err(
                    |e| {
                        Failure::Other(format!(
                            "could not write {}: {e}",
                            self.store.auth_path().display()
                        ))
                    },
                )?;
                self.refreshed += 1;
                self.held = Some(refreshed.clone());
                Ok(refreshed)
            }
            Err(RefreshFailure::Permanent { reason, .. }) => Err(Failure::Permanent(reason)),
            Err(RefreshFailure::Transient { reason, .. }) => Err(Failure::Transient(reason)),
        }
    }
}

/// A document held in memory, with its times parsed once (as a real session would keep them).
pub(crate) struct Held {
    pub(crate) document: AuthDocument,
    pub(crate) expires_at: Option<SystemTime>,
    last_refresh: Option<SystemTime>,
}

impl Held {
    fn new(document: AuthDocument) -> Self {
        Self {
            expires_at: document.expires_at(),
            last_refresh: document.last_refresh_time(),
            document,
        }
    }

    /// The rule of [`AuthDocument::is_stale`], on the parsed times.
    pub(crate) fn is_stale(&self, now: SystemTime, freshness: &Freshness) -> bool {
        self.document.tokens.is_some()
            && freshness.is_stale(self.expires_at, self.last_refresh, now)
    }
}

/// The durable atomic write without any lock: temp file (0600) in the same directory, write,
/// fsync, rename over `path`, fsync the directory.
pub(crate) fn write_unlocked(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // A name authstore's own writer does not treat as its leftover.
    let mut temp = tempfile::Builder::new()
        .prefix(".auth.json.baseline.")
        .suffix(".partial")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}
