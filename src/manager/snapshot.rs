//! [`AuthSnapshot`]: credentials as read at one moment, with what their tokens say parsed once.

use std::time::SystemTime;

use super::RequestHeaders;
use crate::document::{AuthDocument, Freshness, IdClaims, Identity};
use crate::secret::Secret;

/// Credentials as read at one moment: the document and what its tokens say. Immutable; the
/// manager hands out `Arc`s of it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSnapshot {
    pub(super) document: AuthDocument,
    identity: Identity,
    expires_at: Option<SystemTime>,
    /// Parsed once here, so that the staleness check on the hot path parses nothing.
    last_refresh: Option<SystemTime>,
}

impl AuthSnapshot {
    pub(super) fn new(document: AuthDocument) -> Self {
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

    pub(super) fn is_stale(&self, now: SystemTime, freshness: &Freshness) -> bool {
        self.document.tokens.is_some()
            && freshness.is_stale(self.expires_at, self.last_refresh, now)
    }
}
