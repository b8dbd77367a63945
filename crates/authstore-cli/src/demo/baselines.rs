//! **Baselines for comparison, not part of the library.** Two ways of sharing `auth.json` that
//! authstore replaces, reproduced faithfully enough to show their failure on the same workload:
//!
//! - [`Strategy::Naive`](super::Strategy::Naive): the session keeps the document it read at
//!   startup in memory and, when it is stale, spends *its own cached* refresh token and writes the
//!   result over `auth.json` (atomically, without a lock). It never re-reads the file, so it never
//!   learns that another process already rotated the token. This is how Codex behaved before
//!   March 2026.
//! - [`Strategy::Reread`](super::Strategy::Reread): when its cached document is stale, the session
//!   first re-reads `auth.json` and decides with the library's own [`policy::decide`] (the
//!   guarded-adoption rule included): it adopts different credentials of a compatible identity,
//!   and skips the refresh when the adopted tokens are fresh; otherwise it refreshes, still
//!   without a lock. This is Codex today and the approach of the closed Codex PR 15127: it
//!   narrows the window between "read stale" and "write new" but cannot close it, because nothing
//!   stops two processes from reading the same stale file and spending the same token.
//!
//! Both are built from the library's pieces, so that the only difference from `coordinated` is
//! the missing coordination: an **unlocked** [`FileStore`] (its plain read, and its durable
//! atomic write minus the locks), [`policy::decide`], the library's [`TokenClient`],
//! [`TokenResponse::merge_into`](authstore::authority::TokenResponse::merge_into) and an
//! [`AuthSnapshot`] for the state a session holds. What they
//! leave out is the point: no transaction lock around read, refresh and write, and (for
//! `naive`) no re-read at all. When the re-read finds the file logged out or another identity,
//! `reread` goes on with its own copy as Codex did, writing over it: unsafe on purpose.
//! Nothing here is exported by the library; nothing should be copied from here.

use std::path::PathBuf;
use std::time::SystemTime;

use authstore::AuthSnapshot;
use authstore::authority::{RefreshFailure, TokenClient};
use authstore::document::{AuthDocument, Freshness};
use authstore::policy::{self, Decision, RefreshReason};
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
    file: UnlockedFile,
    client: TokenClient,
    freshness: Freshness,
    /// The document the session holds, as a library snapshot: its times parsed once, as a real
    /// session keeps them, so that a request for fresh credentials parses nothing, like
    /// `coordinated`'s cached snapshot. Parsing the JWT on every request would make the
    /// baselines' latencies incomparable, not their behaviour different.
    held: Option<AuthSnapshot>,
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
            file: UnlockedFile::new(home),
            client,
            freshness,
            held: None,
            refreshed: 0,
            adopted: 0,
        }
    }

    /// What a session does at startup: read `auth.json` into memory.
    pub(crate) async fn load(&mut self) -> Result<(), String> {
        match self.file.read().await.map_err(|e| e.to_string())? {
            Some(document) => {
                self.held = Some(AuthSnapshot::new(document));
                Ok(())
            }
            None => Err(format!(
                "not logged in: no auth.json in {}",
                self.file.home.display()
            )),
        }
    }

    /// Credentials for one request: the cached document when fresh, else (after a re-read, for
    /// [`Kind::Reread`]) a refresh written over `auth.json`. Returns when they expire.
    pub(crate) async fn credentials(&mut self) -> Result<Option<SystemTime>, Failure> {
        self.obtain(RefreshReason::Proactive).await
    }

    /// Obtains new tokens now from the held state (for [`Kind::Reread`], after adopting a newer
    /// one from disk). Returns when they expire.
    pub(crate) async fn force(&mut self) -> Result<Option<SystemTime>, Failure> {
        self.obtain(RefreshReason::Forced).await
    }

    /// Installs credentials from a new login, as a login command would: written over
    /// `auth.json` (no lock) and held.
    pub(crate) async fn install(&mut self, document: AuthDocument) -> Result<(), String> {
        self.file
            .write(&document)
            .await
            .map_err(|e| e.to_string())?;
        self.held = Some(AuthSnapshot::new(document));
        Ok(())
    }

    async fn obtain(&mut self, reason: RefreshReason) -> Result<Option<SystemTime>, Failure> {
        let now = SystemTime::now();
        let Some(held) = &self.held else {
            return Err(Failure::Other("not logged in".into()));
        };
        if reason == RefreshReason::Proactive && !held.is_stale(now, &self.freshness) {
            return Ok(held.expires_at());
        }
        if self.kind == Kind::Reread {
            // The re-read, without the lock that would make it mean anything.
            let disk = self
                .file
                .read()
                .await
                .map_err(|error| Failure::Other(error.to_string()))?;
            let decision =
                policy::decide(held.document(), disk.as_ref(), reason, now, &self.freshness);
            match (decision, disk) {
                (Decision::Adopt, Some(disk)) => {
                    self.adopted += 1;
                    let adopted = AuthSnapshot::new(disk);
                    let expires_at = adopted.expires_at();
                    self.held = Some(adopted);
                    return Ok(expires_at);
                }
                (Decision::Refresh { adopted: true }, Some(disk)) => {
                    self.adopted += 1;
                    self.held = Some(AuthSnapshot::new(disk));
                }
                // The same credentials; or logged out, or another identity, which the session
                // ignores: it refreshes its own copy and writes it over the file.
                _ => {}
            }
        }
        self.refresh(now).await
    }

    /// Spends the held refresh token and writes the result over `auth.json`, without a lock.
    async fn refresh(&mut self, now: SystemTime) -> Result<Option<SystemTime>, Failure> {
        let Some(held) = &self.held else {
            return Err(Failure::Other("not logged in".into()));
        };
        let Some(refresh_token) = held.document().refresh_token() else {
            return Err(Failure::Other("the document holds no refresh token".into()));
        };
        match self.client.refresh(refresh_token).await {
            Ok(response) => {
                let refreshed = AuthSnapshot::new(response.merge_into(held.document(), now));
                // No lock: whatever another process wrote meanwhile is overwritten.
                self.file
                    .write(refreshed.document())
                    .await
                    .map_err(|error| Failure::Other(error.to_string()))?;
                self.refreshed += 1;
                let expires_at = refreshed.expires_at();
                self.held = Some(refreshed);
                Ok(expires_at)
            }
            Err(RefreshFailure::Permanent { reason, .. }) => Err(Failure::Permanent(reason)),
            Err(RefreshFailure::Transient { reason, .. }) => Err(Failure::Transient(reason)),
        }
    }
}

/// `auth.json` through an **unlocked** [`FileStore`]: the baselines' only calls into the store,
/// kept here together (`FileStore::new`, `StoreOptions::unlocked`, `FileStore::read`,
/// `FileStore::begin`, `Transaction::write`). Unlocked, `begin` takes no lock, so `write` is the
/// library's durable atomic write (temp file, fsync, rename, fsync the directory) and nothing
/// more: a reader never sees a torn file, and concurrent writers overwrite each other.
struct UnlockedFile {
    home: PathBuf,
    store: FileStore,
}

impl UnlockedFile {
    fn new(home: PathBuf) -> Self {
        Self {
            store: FileStore::new(home.clone(), StoreOptions::default().unlocked(true)),
            home,
        }
    }

    /// A plain read: `None` when there is no file.
    async fn read(&self) -> authstore::Result<Option<AuthDocument>> {
        self.store.read().await
    }

    /// Writes `document` over `auth.json`, atomically, without any lock.
    async fn write(&self, document: &AuthDocument) -> authstore::Result<()> {
        let mut transaction = self.store.begin().await?;
        transaction.write(document).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use authstore::authority::AuthorityConfig;
    use authstore::error::ReloginReason;
    use authstore::simulator::{Identity, Simulator, SimulatorConfig};

    use super::*;

    /// Two sessions of `kind` that read one stale login at startup, on a fresh authority.
    async fn two_sessions(kind: Kind) -> (Simulator, tempfile::TempDir, Baseline, Baseline) {
        let simulator = Simulator::start(SimulatorConfig {
            family_revocation: true,
            ..SimulatorConfig::default()
        })
        .await
        .expect("the token authority starts");
        simulator.set_access_token_lifetime(Duration::from_secs(60));
        let login = simulator.auth_json(&Identity::new("acct-test", "user-test"));
        simulator.set_access_token_lifetime(Duration::from_secs(3600));
        let home = tempfile::tempdir().expect("a temporary home");
        std::fs::write(home.path().join("auth.json"), login.to_string()).expect("login written");
        let client = TokenClient::new(AuthorityConfig::default().token_url(simulator.token_url()));
        // 60 s left is stale for a 5-minute window; refreshed tokens live an hour.
        let freshness = Freshness::default();
        let mut sessions =
            [0, 1].map(|_| Baseline::new(kind, home.path().to_owned(), client.clone(), freshness));
        for session in &mut sessions {
            session.load().await.expect("the login is read");
        }
        let [first, second] = sessions;
        (simulator, home, first, second)
    }

    #[tokio::test]
    async fn naive_spends_its_own_copy_after_another_session_rotated_it() {
        let (simulator, _home, mut first, mut second) = two_sessions(Kind::Naive).await;
        first
            .credentials()
            .await
            .expect("the first session refreshes");
        let outcome = second.credentials().await;
        assert!(matches!(
            outcome,
            Err(Failure::Permanent(ReloginReason::Reused))
        ));
        assert_eq!(simulator.refresh_calls(), 2);
        assert_eq!(simulator.reuse_rejections(), 1);
        assert_eq!((first.refreshed, first.adopted), (1, 0));
        assert_eq!((second.refreshed, second.adopted), (0, 0));
        simulator.shutdown().await;
    }

    #[tokio::test]
    async fn reread_adopts_what_another_session_wrote_when_it_rereads_in_time() {
        let (simulator, _home, mut first, mut second) = two_sessions(Kind::Reread).await;
        let refreshed = first
            .credentials()
            .await
            .expect("the first session refreshes");
        let adopted = second.credentials().await.expect("the second one adopts");
        assert_eq!(adopted, refreshed, "the same new tokens");
        assert_eq!(simulator.refresh_calls(), 1);
        assert_eq!((first.refreshed, first.adopted), (1, 0));
        assert_eq!((second.refreshed, second.adopted), (0, 1));
        // Fresh now: neither asks again.
        first.credentials().await.expect("fresh");
        second.credentials().await.expect("fresh");
        assert_eq!(simulator.refresh_calls(), 1);
        simulator.shutdown().await;
    }

    #[tokio::test]
    async fn reread_refreshes_its_own_copy_over_a_logout_it_finds() {
        let (simulator, home, mut session, _) = two_sessions(Kind::Reread).await;
        std::fs::remove_file(home.path().join("auth.json")).expect("logged out elsewhere");
        session.credentials().await.expect("it refreshes anyway");
        assert_eq!(simulator.refresh_calls(), 1);
        assert!(
            home.path().join("auth.json").exists(),
            "the logout is undone"
        );
        simulator.shutdown().await;
    }
}
