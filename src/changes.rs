//! Change notification for long-running processes: one event per change any process makes to
//! `auth.json` (refresh, login, logout, identity switch).
//!
//! Built on the same directory watch the manager uses for its cache; where watching is
//! unavailable it polls the file's metadata. Events describe the change, never carry a token.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::document::{AuthDocument, format_timestamp};
use crate::error::Result;
use crate::policy::documents_verdict;
use crate::store::FileStore;
use crate::store::file::watch::{ChangeSignal, DirectoryWatch, FileStamp};

/// How often the metadata is polled when no directory watch is available.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// New tokens for the same identity.
    Refreshed,
    /// Credentials appeared where there were none.
    LoggedIn,
    /// Credentials were removed.
    LoggedOut,
    /// Another account or user replaced the credentials.
    IdentityChanged,
}

/// One change to `auth.json`, described without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeEvent {
    /// What changed.
    pub event: ChangeKind,
    /// The account id afterwards, when known.
    pub account_id: Option<String>,
    /// The user id afterwards, when known.
    pub user_id: Option<String>,
    /// The email afterwards, when known.
    pub email: Option<String>,
    /// The access token's expiry afterwards (RFC 3339), when known.
    pub expires_at: Option<String>,
}

impl ChangeEvent {
    fn new(event: ChangeKind, after: Option<&AuthDocument>) -> Self {
        let identity = after.map(AuthDocument::identity).unwrap_or_default();
        Self {
            event,
            account_id: identity.account_id,
            user_id: identity.user_id,
            email: after.and_then(|d| d.id_claims().email),
            expires_at: after
                .and_then(AuthDocument::expires_at)
                .map(format_timestamp),
        }
    }
}

/// Classifies the change from `before` to `after`; `None` when no credential changed.
pub fn classify(before: Option<&AuthDocument>, after: Option<&AuthDocument>) -> Option<ChangeKind> {
    let logged_in = |d: &&AuthDocument| d.tokens.is_some() || d.openai_api_key.is_some();
    match (before.filter(logged_in), after.filter(logged_in)) {
        (None, None) => None,
        (None, Some(_)) => Some(ChangeKind::LoggedIn),
        (Some(_), None) => Some(ChangeKind::LoggedOut),
        (Some(a), Some(b)) if a.same_credentials(b) => None,
        (Some(a), Some(b)) if a.tokens.is_none() || b.tokens.is_none() => {
            Some(ChangeKind::IdentityChanged)
        }
        (Some(a), Some(b)) if documents_verdict(a, b).is_compatible() => {
            Some(ChangeKind::Refreshed)
        }
        (Some(_), Some(_)) => Some(ChangeKind::IdentityChanged),
    }
}

/// Yields an event for every change to `auth.json`, made by any process.
#[derive(Debug)]
pub struct ChangeWatcher {
    store: FileStore,
    signal: Arc<ChangeSignal>,
    watch: Option<DirectoryWatch>,
    stamp: Option<FileStamp>,
    last: Option<AuthDocument>,
}

impl ChangeWatcher {
    /// Starts watching the store's `auth.json`; changes from now on are reported.
    ///
    /// # Errors
    /// [`crate::Error::InvalidFile`] or I/O errors reading the current state.
    pub fn new(store: FileStore) -> Result<Self> {
        let signal = Arc::new(ChangeSignal::default());
        let watch = DirectoryWatch::start(store.auth_path(), signal.clone());
        let stamp = FileStamp::of(store.auth_path());
        let last = store.read()?;
        Ok(Self {
            store,
            signal,
            watch,
            stamp,
            last,
        })
    }

    /// Whether a directory watch is in use (else metadata polling).
    pub fn is_watching(&self) -> bool {
        self.watch.is_some()
    }

    /// Waits for the next change. A file that is unreadable or invalid for a moment (being
    /// rewritten in place by a program that ignores the lock) is skipped until it settles.
    pub async fn next(&mut self) -> ChangeEvent {
        loop {
            let notified = self.signal.notify.notified();
            if !self
                .signal
                .dirty
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                if self.watch.is_some() && !self.signal.is_lost() {
                    notified.await;
                } else {
                    tokio::time::sleep(POLL_INTERVAL).await;
                    let stamp = FileStamp::of(self.store.auth_path());
                    if stamp == self.stamp {
                        continue;
                    }
                    self.stamp = stamp;
                }
                self.signal
                    .dirty
                    .store(false, std::sync::atomic::Ordering::Release);
            }
            let current = match self.store.read() {
                Ok(current) => current,
                Err(error) => {
                    tracing::debug!(error = %error.report(), "auth.json unreadable for now; waiting for the next change");
                    continue;
                }
            };
            let change = classify(self.last.as_ref(), current.as_ref());
            let event = change.map(|kind| ChangeEvent::new(kind, current.as_ref()));
            self.last = current;
            if let Some(event) = event {
                return event;
            }
        }
    }
}
