//! The `auth.json` model, compatible with the file Codex reads and writes.
//!
//! Every field this version does not know, at the top level or inside `tokens`, is kept and
//! written back unchanged: Codex drops unknown fields, authstore must not. For the same reason
//! nothing of authstore's own is ever stored in the document.

mod claims;
mod freshness;

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use claims::{IdClaims, access_token_expiry, jwt_payload, unsigned_jwt};
pub use freshness::Freshness;

use crate::secret::Secret;

/// Files larger than this are refused as invalid: no credentials file is this big, and a reader
/// must not be made to load an arbitrary amount of memory.
pub const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// The contents of `auth.json`. `Debug` shows the known fields (tokens redacted) and only the
/// names of unknown ones: an unknown field may hold a secret too.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthDocument {
    /// `"chatgpt"`, `"apikey"`, or anything else, kept as-is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    /// Always written, `null` when absent, as Codex does.
    #[serde(rename = "OPENAI_API_KEY", default)]
    pub openai_api_key: Option<Secret>,
    /// The OAuth tokens; absent when logged in with an API key only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// When the tokens were last refreshed: RFC 3339, UTC, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<String>,
    /// Top-level fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `tokens` object. `Debug` as [`AuthDocument`]'s: tokens redacted, unknown fields by name.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    /// A JWT describing the user (claims read, never verified).
    pub id_token: Secret,
    /// A JWT sent to resource servers; its `exp` decides staleness.
    pub access_token: Secret,
    /// Spent on refresh; rotating authorities accept each one once.
    pub refresh_token: Secret,
    /// The workspace account, always written (`null` when unknown).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Fields of `tokens` this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for AuthDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthDocument")
            .field("auth_mode", &self.auth_mode)
            .field("openai_api_key", &self.openai_api_key)
            .field("tokens", &self.tokens)
            .field("last_refresh", &self.last_refresh)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("id_token", &self.id_token)
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("account_id", &self.account_id)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Who a document belongs to, as far as it says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `tokens.account_id`, falling back to the id token's account claim.
    pub account_id: Option<String>,
    /// The id token's user claim.
    pub user_id: Option<String>,
}

/// Why bytes are not a valid `auth.json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Over [`MAX_DOCUMENT_BYTES`].
    #[error("larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    /// Not UTF-8.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// Not a JSON object of the expected shape; the text says where.
    #[error("{0}")]
    Shape(String),
    /// Cut short: empty, or ending before the JSON (or a UTF-8 character) does. What a reader
    /// sees while a program that ignores the lock rewrites the file in place.
    #[error("{0}")]
    Incomplete(String),
}

impl DocumentError {
    /// Whether waiting may help: the file may be in the middle of an in-place rewrite.
    pub fn may_be_partial(&self) -> bool {
        matches!(self, DocumentError::Incomplete(_))
    }
}

impl AuthDocument {
    /// Parses and validates `auth.json` bytes.
    ///
    /// # Errors
    /// [`DocumentError`] when the bytes are too large, not UTF-8, not JSON, not an object, or
    /// have a known field of the wrong type (including a `last_refresh` that is not RFC 3339).
    pub fn parse(bytes: &[u8]) -> Result<Self, DocumentError> {
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(DocumentError::Incomplete("the file is empty".into()));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| match e.error_len() {
            None => DocumentError::Incomplete("ends inside a UTF-8 character".into()),
            Some(_) => DocumentError::NotUtf8,
        })?;
        let mut value: Value = serde_json::from_str(text).map_err(|e| shape_error(&e))?;
        if !value.is_object() {
            return Err(DocumentError::Shape(format!(
                "expected a JSON object, found {}",
                json_kind(&value)
            )));
        }
        // `tokens.id_token` in Codex's parsed form (a claims object) is read as its string form,
        // which is what the next write stores.
        if let Some(id_token) = value
            .get_mut("tokens")
            .and_then(|tokens| tokens.get_mut("id_token"))
            && let Value::Object(object) = id_token
        {
            let token = claims::id_token_from_claims_object(object).ok_or_else(|| {
                DocumentError::Shape(
                    "tokens.id_token is an object, but not Codex's claims object".into(),
                )
            })?;
            *id_token = Value::String(token);
        }
        let document: AuthDocument = serde_json::from_value(value).map_err(|e| shape_error(&e))?;
        if let Some(stamp) = &document.last_refresh
            && DateTime::parse_from_rfc3339(stamp).is_err()
        {
            return Err(DocumentError::Shape(
                "last_refresh is not an RFC 3339 timestamp".into(),
            ));
        }
        Ok(document)
    }

    /// The document as Codex writes it: pretty JSON, two-space indentation, no trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and JSON values into a Vec cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The document as Codex keeps it in the OS keyring: compact JSON, unknown fields kept.
    pub fn to_compact_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The owner of these tokens, as far as the document says.
    pub fn identity(&self) -> Identity {
        let Some(tokens) = &self.tokens else {
            return Identity::default();
        };
        let claims = IdClaims::from_jwt(tokens.id_token.expose());
        Identity {
            account_id: tokens
                .account_id
                .clone()
                .filter(|a| !a.is_empty())
                .or(claims.account_id),
            user_id: claims.user_id,
        }
    }

    /// The id token's claims (all unknown without tokens).
    pub fn id_claims(&self) -> IdClaims {
        self.tokens
            .as_ref()
            .map(|t| IdClaims::from_jwt(t.id_token.expose()))
            .unwrap_or_default()
    }

    /// The access token's `exp`, when readable.
    pub fn expires_at(&self) -> Option<SystemTime> {
        access_token_expiry(self.tokens.as_ref()?.access_token.expose())
    }

    /// `last_refresh`, parsed.
    pub fn last_refresh_time(&self) -> Option<SystemTime> {
        let stamp = DateTime::parse_from_rfc3339(self.last_refresh.as_deref()?).ok()?;
        Some(stamp.with_timezone(&Utc).into())
    }

    /// Whether the tokens need a refresh at `now` (see [`Freshness`]). A document without
    /// tokens (API key only) is never stale: there is nothing to refresh.
    pub fn is_stale(&self, now: SystemTime, freshness: &Freshness) -> bool {
        self.tokens.is_some()
            && freshness.is_stale(self.expires_at(), self.last_refresh_time(), now)
    }

    /// Whether both documents hold the same credentials (tokens and API key); fields that are
    /// not credentials do not count.
    pub fn same_credentials(&self, other: &AuthDocument) -> bool {
        self.tokens == other.tokens && self.openai_api_key == other.openai_api_key
    }

    /// The refresh token, if any.
    pub fn refresh_token(&self) -> Option<&Secret> {
        self.tokens.as_ref().map(|t| &t.refresh_token)
    }

    /// The access token, if any.
    pub fn access_token(&self) -> Option<&Secret> {
        self.tokens.as_ref().map(|t| &t.access_token)
    }

    /// Whether the document holds credentials: ChatGPT tokens or an API key. One without
    /// either is a logged-out `auth.json` (Codex writes `{}` or `null`s on logout), which every
    /// reader treats as "not logged in".
    pub fn has_credentials(&self) -> bool {
        self.tokens.is_some() || self.openai_api_key.is_some()
    }
}

/// Formats `now` the way `last_refresh` is written: RFC 3339, UTC, with `Z`, to the
/// microsecond (`2026-12-04T15:00:00.123456Z`). The one RFC 3339 formatter of the workspace,
/// with [`format_timestamp_seconds`].
pub fn format_timestamp(now: SystemTime) -> String {
    DateTime::<Utc>::from(now).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// RFC 3339 in UTC to the second (`2026-12-04T15:00:00Z`): what Go's `time.RFC3339` and Java's
/// `Instant.parse` both read, for credential helpers' expiry fields (`exp` is whole seconds).
pub fn format_timestamp_seconds(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn shape_error(error: &serde_json::Error) -> DocumentError {
    // serde_json's messages name the field and position but never echo string values, so they
    // cannot leak a token.
    if error.is_eof() {
        DocumentError::Incomplete(error.to_string())
    } else {
        DocumentError::Shape(error.to_string())
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_shows_no_token_and_only_the_names_of_unknown_fields() {
        let document = AuthDocument::parse(
            json!({
                "OPENAI_API_KEY": "sk-secret-key",
                "tokens": {"id_token": "id-secret", "access_token": "at-secret",
                    "refresh_token": "rt-secret", "x_inner": "inner-secret"},
                "x_outer": {"nested": "outer-secret"}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let debug = format!("{document:?}");
        for secret in [
            "sk-secret",
            "id-secret",
            "at-secret",
            "rt-secret",
            "inner-secret",
            "outer-secret",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(
            debug.contains("x_inner") && debug.contains("x_outer"),
            "{debug}"
        );
    }

    fn sample() -> Value {
        json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": unsigned_jwt(&json!({"https://api.openai.com/auth": {"chatgpt_account_id": "acct-1", "chatgpt_user_id": "user-1"}})),
                "access_token": unsigned_jwt(&json!({"exp": 2_000_000_000u64})),
                "refresh_token": "rt-1",
                "account_id": "acct-1",
                "x_inner": [1, 2]
            },
            "last_refresh": "2026-11-29T14:00:00.123456Z",
            "x_top": {"kept": true}
        })
    }

    #[test]
    fn round_trip_keeps_unknown_fields_and_codex_layout() {
        let text = serde_json::to_string_pretty(&sample()).unwrap();
        let document = AuthDocument::parse(text.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(document.to_json()).unwrap(), text);
        assert_eq!(
            document.identity(),
            Identity {
                account_id: Some("acct-1".into()),
                user_id: Some("user-1".into())
            }
        );
    }

    #[test]
    fn api_key_is_always_written_and_account_id_too() {
        let document = AuthDocument::parse(
            br#"{"tokens":{"id_token":"a","access_token":"b","refresh_token":"c"}}"#,
        )
        .unwrap();
        let written: Value = serde_json::from_slice(&document.to_json()).unwrap();
        assert_eq!(written["OPENAI_API_KEY"], Value::Null);
        assert_eq!(written["tokens"]["account_id"], Value::Null);
    }

    #[test]
    fn invalid_shapes_are_refused_with_a_reason() {
        let cases: &[&[u8]] = &[
            b"",
            b"{",
            b"null",
            b"[]",
            b"\"x\"",
            b"\xff\xfe",
            br#"{"tokens": 5}"#,
            br#"{"tokens": {"id_token": "a", "access_token": "b"}}"#,
            br#"{"OPENAI_API_KEY": 7}"#,
            br#"{"last_refresh": "yesterday"}"#,
        ];
        for bytes in cases {
            assert!(AuthDocument::parse(bytes).is_err(), "{bytes:?}");
        }
        let nested = "[".repeat(10_000);
        assert!(AuthDocument::parse(nested.as_bytes()).is_err());
        let big = vec![b' '; MAX_DOCUMENT_BYTES as usize + 1];
        assert_eq!(AuthDocument::parse(&big), Err(DocumentError::TooLarge));
    }

    #[test]
    fn shape_errors_do_not_echo_token_values() {
        let error = AuthDocument::parse(
            br#"{"tokens":{"id_token":"secret-id","access_token":"secret-at","refresh_token":5}}"#,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(!message.contains("secret-"), "{message}");
    }
}
