//! Change notification for long-running processes: one event per change any process (or, for a
//! shared store, any machine) makes to the stored credentials (refresh, login, logout, identity
//! switch).
//!
//! Built on the store's [`ChangeFeed`], the same mechanism the manager uses for its cache: a
//! directory watch for `auth.json` (else its metadata, polled), the row's generation for a
//! shared store. Events describe the change, never carry a token.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::document::{AuthDocument, format_timestamp};
use crate::error::{ErrorKind, Result};
use crate::policy::documents_verdict;
use crate::store::{ChangeFeed, ChangeOptions, Mark, Store};

/// How often a store that cannot be watched is asked again.
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

impl ChangeKind {
    /// The event's name, as `watch` (text and `--json`), the agent's `--json` lines and the
    /// Python package's events all spell it: `refreshed`, `logged_in`, `logged_out`,
    /// `identity_changed`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Refreshed => "refreshed",
            ChangeKind::LoggedIn => "logged_in",
            ChangeKind::LoggedOut => "logged_out",
            ChangeKind::IdentityChanged => "identity_changed",
        }
    }
}

impl std::str::FromStr for ChangeKind {
    type Err = String;

    /// Reads a [`name`](ChangeKind::name), and the hyphenated spelling (`logged-in`) that earlier
    /// releases printed in the text lines of `authstore watch`.
    fn from_str(name: &str) -> std::result::Result<Self, String> {
        match name.replace('-', "_").as_str() {
            "refreshed" => Ok(ChangeKind::Refreshed),
            "logged_in" => Ok(ChangeKind::LoggedIn),
            "logged_out" => Ok(ChangeKind::LoggedOut),
            "identity_changed" => Ok(ChangeKind::IdentityChanged),
            _ => Err(format!("{name:?} is not a change event")),
        }
    }
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
    let logged_in = |d: &&AuthDocument| d.has_credentials();
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

/// Yields an event for every change to the stored credentials, made by any process.
#[derive(Debug)]
pub struct ChangeWatcher {
    store: Arc<dyn Store>,
    feed: Box<dyn ChangeFeed>,
    mark: Mark,
    last: Option<AuthDocument>,
}

impl ChangeWatcher {
    /// Starts watching `store`; changes from now on are reported.
    ///
    /// # Errors
    /// Reading the current state failed: the document is invalid or unreadable, or the store
    /// is unavailable.
    pub async fn new(store: impl Store + 'static) -> Result<Self> {
        Self::with_store(Arc::new(store)).await
    }

    /// As [`ChangeWatcher::new`], for a store already shared.
    ///
    /// # Errors
    /// As [`ChangeWatcher::new`].
    pub async fn with_store(store: Arc<dyn Store>) -> Result<Self> {
        let feed = store.changes(ChangeOptions {
            watch: true,
            poll: POLL_INTERVAL,
        });
        let mark = feed.mark();
        let last = store.read().await?;
        Ok(Self {
            store,
            feed,
            mark,
            last,
        })
    }

    /// Whether changes are pushed by a watch (a directory watch, the Secret Service's signals),
    /// else looked for.
    pub fn is_watching(&self) -> bool {
        self.feed.is_watching()
    }

    /// Waits for the next change. A file that is unreadable or invalid for a moment (being
    /// rewritten in place by a program that ignores the lock) is skipped until it settles.
    ///
    /// # Errors
    /// The store is unavailable (a shared store that cannot be reached); the watcher stays
    /// usable, and the next call tries again.
    pub async fn next(&mut self) -> Result<ChangeEvent> {
        loop {
            self.feed.wait(&self.mark).await;
            self.mark = self.feed.mark();
            let current = match self.store.read().await {
                Ok(current) => current,
                Err(error)
                    if matches!(error.kind(), ErrorKind::InvalidFile | ErrorKind::Unreadable) =>
                {
                    tracing::debug!(error = %error.report(), "the stored credentials are unreadable for now; waiting for the next change");
                    continue;
                }
                Err(error) => {
                    // Not seen: the next look reads again.
                    self.mark = Mark::outdated();
                    return Err(error);
                }
            };
            let change = classify(self.last.as_ref(), current.as_ref());
            let event = change.map(|kind| ChangeEvent::new(kind, current.as_ref()));
            self.last = current;
            if let Some(event) = event {
                return Ok(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_per_change_kind_in_text_json_and_both_spellings_read_back() {
        for kind in [
            ChangeKind::Refreshed,
            ChangeKind::LoggedIn,
            ChangeKind::LoggedOut,
            ChangeKind::IdentityChanged,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
            assert_eq!(kind.name().parse::<ChangeKind>(), Ok(kind));
            assert_eq!(
                kind.name().replace('_', "-").parse::<ChangeKind>(),
                Ok(kind)
            );
        }
        assert!("adopted".parse::<ChangeKind>().is_err());
    }
}
