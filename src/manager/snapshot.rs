//! [`AuthSnapshot`]: credentials as read at one moment, with what their tokens say parsed once.
//!
//! The manager builds one for every state it reads or writes; [`AuthSnapshot::new`] lets any
//! program do the same with a document of its own (the demo's unsafe baselines hold one), so
//! that nobody re-implements the parsed times or the staleness check on them.

use std::time::SystemTime;

use super::RequestHeaders;
use crate::document::{AuthDocument, Freshness, IdClaims, Identity};
use crate::secret::Secret;

/// Credentials as read at one moment: the document and what its tokens say. Immutable; the
/// manager hands out `Arc`s of it.
///
/// `Debug` shows the document with every token and key as `[redacted]` (they are
/// [`Secret`]s); there is no `Display`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSnapshot {
    pub(super) document: AuthDocument,
    identity: Identity,
    expires_at: Option<SystemTime>,
    /// Parsed once here, so that the staleness check on the hot path parses nothing.
    last_refresh: Option<SystemTime>,
}

impl AuthSnapshot {
    /// A snapshot of `document` as it is: its identity, the access token's expiry and
    /// `last_refresh` are read once, here, so that [`AuthSnapshot::is_stale`] parses nothing.
    /// Nothing is validated or stored; a token that is not a well-formed JWT simply has no
    /// readable claims.
    pub fn new(document: AuthDocument) -> Self {
        Self {
            identity: document.identity(),
            expires_at: document.expires_at(),
            last_refresh: document.last_refresh_time(),
            document,
        }
    }

    /// The whole document.
    pub fn document(&self) -> &AuthDocument {
        &self.document
    }

    /// The access token to send with requests; `None` for API-key-only auth.
    pub fn access_token(&self) -> Option<&Secret> {
        self.document.access_token()
    }

    /// The API key, for API-key auth.
    pub fn api_key(&self) -> Option<&Secret> {
        self.document.openai_api_key.as_ref()
    }

    /// Account and user id.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The account id, when known.
    pub fn account_id(&self) -> Option<&str> {
        self.identity.account_id.as_deref()
    }

    /// When the access token expires, when readable.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// When the tokens were last refreshed (`last_refresh`, parsed), when present.
    pub fn last_refresh(&self) -> Option<SystemTime> {
        self.last_refresh
    }

    /// The headers to send with a request made with these credentials (`Authorization: Bearer`,
    /// and `ChatGPT-Account-Id` when the account is known); `None` for API-key-only auth.
    pub fn request_headers(&self) -> Option<RequestHeaders> {
        let token = self.access_token()?;
        Some(RequestHeaders::new(token, self.account_id()))
    }

    /// The id token's claims (email, plan, ...).
    pub fn claims(&self) -> IdClaims {
        self.document.id_claims()
    }

    /// Whether the tokens need a refresh at `now` under `freshness`: what
    /// [`AuthDocument::is_stale`] says, on the times parsed once. Credentials without tokens
    /// (API key only) are never stale.
    pub fn is_stale(&self, now: SystemTime, freshness: &Freshness) -> bool {
        self.document.tokens.is_some()
            && freshness.is_stale(self.expires_at, self.last_refresh, now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::json;

    use super::*;
    use crate::document::unsigned_jwt;

    fn document(exp: u64) -> AuthDocument {
        let auth = json!({"chatgpt_account_id": "acct-1", "chatgpt_user_id": "user-1"});
        let text = json!({
            "OPENAI_API_KEY": "sk-very-secret",
            "tokens": {
                "id_token": unsigned_jwt(&json!({"https://api.openai.com/auth": auth})),
                "access_token": unsigned_jwt(&json!({"exp": exp, "secret": "at-very-secret"})),
                "refresh_token": "rt-very-secret",
                "account_id": null
            },
            "last_refresh": "2026-01-01T00:00:00Z"
        });
        AuthDocument::parse(text.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_snapshot_built_from_a_document_has_its_parsed_times() {
        let snapshot = AuthSnapshot::new(document(2_000_000_000));
        assert_eq!(
            snapshot.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(
            snapshot.last_refresh(),
            snapshot.document().last_refresh_time()
        );
        assert!(snapshot.last_refresh().is_some());
        assert_eq!(snapshot.account_id(), Some("acct-1"));
        let freshness = Freshness::default();
        let before = UNIX_EPOCH + Duration::from_secs(2_000_000_000 - 3600);
        let within = UNIX_EPOCH + Duration::from_secs(2_000_000_000 - 60);
        for now in [before, within] {
            assert_eq!(
                snapshot.is_stale(now, &freshness),
                snapshot.document().is_stale(now, &freshness)
            );
        }
        assert!(!snapshot.is_stale(before, &freshness));
        assert!(snapshot.is_stale(within, &freshness));
    }

    #[test]
    fn debug_never_shows_a_token_or_key() {
        let snapshot = AuthSnapshot::new(document(2_000_000_000));
        let shown = format!("{snapshot:?}");
        let tokens = snapshot.document().tokens.as_ref().unwrap();
        for secret in [
            "sk-very-secret",
            "rt-very-secret",
            tokens.access_token.expose(),
            tokens.id_token.expose(),
        ] {
            assert!(!shown.contains(secret), "a secret in {shown}");
        }
        assert!(shown.contains("[redacted]"));
        assert!(shown.contains("acct-1"));
    }
}
