//! The token endpoint, spoken as Codex speaks it: the JSON refresh request, the response, the
//! permanent/transient classification of failures, and best-effort revocation.
//!
//! The client knows nothing about files; the manager decides what to do with what it returns.
//!
//! An answer is untrusted input. At most [`MAX_ANSWER_BYTES`] of it are read. A `2xx` answer
//! that is a JSON object is read field by field ([`classify`]): each token is kept only when it
//! is a usable token string (non-empty, no whitespace, no control character), and a malformed
//! field is treated as absent with one warning naming the field, never its value. So a rotated
//! refresh token is never lost because something else in the answer is wrong, and no empty or
//! malformed token is ever stored or handed out. Whether the answer is usable (it carries an
//! access token) is [`TokenResponse::is_usable`]; the manager stores the well-formed parts of
//! an unusable one and reports a transient failure.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::document::{AuthDocument, IdClaims, format_timestamp};
use crate::error::{NetworkFailure, ReloginReason};
use crate::secret::Secret;

/// Codex's OAuth client id.
pub const DEFAULT_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// Codex's token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://auth.openai.com/oauth/token";
/// Overrides the token endpoint URL (full URL), as in Codex.
pub const TOKEN_URL_ENV: &str = "CODEX_REFRESH_TOKEN_URL_OVERRIDE";
/// Overrides the client id, as in Codex.
pub const CLIENT_ID_ENV: &str = "CODEX_APP_SERVER_LOGIN_CLIENT_ID";

/// The most of an answer that is read: a token response is a few kilobytes. A longer answer is a
/// transient failure, and nothing beyond this is held in memory.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Sent with every request a refresh transaction makes, which holds its home's `auth.lock`: a
/// broker in front of the same home (SPEC §9) must then pass the request to its upstream rather
/// than run the transaction again, which would wait for the very lock the sender holds.
pub const IN_TRANSACTION_HEADER: &str = "authstore-in-transaction";

/// Error codes that mean the refresh token is dead: never retried with the same token.
const PERMANENT_CODES: [&str; 4] = [
    "refresh_token_expired",
    "refresh_token_reused",
    "refresh_token_invalidated",
    "invalid_grant",
];

/// Where and how to reach the authority. Every setter states its default.
#[derive(Debug, Clone)]
pub struct AuthorityConfig {
    token_url: String,
    client_id: String,
    request_timeout: Duration,
}

impl Default for AuthorityConfig {
    fn default() -> Self {
        Self {
            token_url: DEFAULT_TOKEN_URL.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            request_timeout: Duration::from_secs(20),
        }
    }
}

impl AuthorityConfig {
    /// The defaults, with `CODEX_REFRESH_TOKEN_URL_OVERRIDE` and
    /// `CODEX_APP_SERVER_LOGIN_CLIENT_ID` applied when set and non-empty.
    pub fn from_env() -> Self {
        let mut config = Self::default();
        if let Some(url) = std::env::var(TOKEN_URL_ENV).ok().filter(|v| !v.is_empty()) {
            config.token_url = url;
        }
        if let Some(id) = std::env::var(CLIENT_ID_ENV).ok().filter(|v| !v.is_empty()) {
            config.client_id = id;
        }
        config
    }

    /// The token endpoint. Default: `https://auth.openai.com/oauth/token`.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = url.into();
        self
    }

    /// The OAuth client id. Default: Codex's.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// The timeout of one token request; keep it shorter than the lock deadline. Default: 20 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The configured timeout.
    pub fn timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The configured token endpoint.
    pub fn url(&self) -> &str {
        &self.token_url
    }

    /// The revocation endpoint: the token endpoint with its last path segment replaced by
    /// `revoke`.
    pub fn revoke_url(&self) -> String {
        match self.token_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/revoke"),
            None => self.token_url.clone(),
        }
    }
}

/// New tokens from a `2xx` answer, each read on its own. A missing or malformed field keeps its
/// old value.
#[derive(Debug, Clone, Default)]
pub struct TokenResponse {
    /// A new id token.
    pub id_token: Option<Secret>,
    /// A new access token.
    pub access_token: Option<Secret>,
    /// A new refresh token; absent means the old one stays valid (RFC 6749 §6).
    pub refresh_token: Option<Secret>,
    /// The token fields the answer held but that were not usable token strings, treated as
    /// absent: their names, never their values.
    pub malformed: Vec<&'static str>,
}

impl TokenResponse {
    /// Whether the refresh succeeded: the answer carries a usable access token (RFC 6749 §5.1
    /// requires one). An answer without one is a failure even when it rotated the refresh
    /// token, which must still be stored ([`TokenResponse::merge_into`] keeps it).
    pub fn is_usable(&self) -> bool {
        self.access_token.is_some()
    }

    /// Whether storing this answer changes anything: a new token of any kind.
    pub fn has_tokens(&self) -> bool {
        self.id_token.is_some() || self.access_token.is_some() || self.refresh_token.is_some()
    }

    /// Merges these new tokens into `base` (the state read inside the lock): new tokens, the
    /// old refresh token when none came back, `last_refresh = now`, a missing `account_id` filled
    /// from the new id token, and everything else (unknown fields included) unchanged. Without
    /// a new access token `last_refresh` stays as it was: the old access token was not
    /// refreshed, and must not look fresh to the 8-day rule.
    pub fn merge_into(self, base: &AuthDocument, now: SystemTime) -> AuthDocument {
        let refreshed = self.is_usable();
        let mut document = base.clone();
        if let Some(tokens) = document.tokens.as_mut() {
            if let Some(id_token) = self.id_token {
                tokens.id_token = id_token;
            }
            if let Some(access_token) = self.access_token {
                tokens.access_token = access_token;
            }
            if let Some(refresh_token) = self.refresh_token {
                tokens.refresh_token = refresh_token;
            }
            if tokens.account_id.is_none() {
                tokens.account_id = IdClaims::from_jwt(tokens.id_token.expose()).account_id;
            }
        }
        if refreshed {
            document.last_refresh = Some(format_timestamp(now));
        }
        document
    }
}

/// Why a refresh failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshFailure {
    /// The refresh token is dead; the user must log in again.
    #[error("the authority rejected the refresh token (HTTP {status}, {code})")]
    Permanent {
        /// What the authority said, mapped.
        reason: ReloginReason,
        /// The HTTP status.
        status: u16,
        /// The error code, or `none`.
        code: String,
    },
    /// Retry later.
    #[error("{reason}")]
    Transient {
        /// What went wrong (never a token).
        reason: String,
        /// Whether the request certainly did not spend the token (no connection was made, or
        /// the authority answered that it is unavailable), so that retrying it now is safe. A
        /// timeout or a reset after sending is not: the authority may have rotated the token.
        retry_safe: bool,
        /// The HTTP client's error, for a network failure.
        #[source]
        source: Option<Arc<reqwest::Error>>,
    },
}

impl RefreshFailure {
    /// For a transient failure of the request itself: whether the endpoint did not answer in
    /// time or could not be reached, as the HTTP client says (`None` for an answer, even an
    /// error one, and for a failure that is neither).
    pub fn network_failure(&self) -> Option<NetworkFailure> {
        match self {
            RefreshFailure::Transient {
                source: Some(error),
                ..
            } => network_failure(error),
            _ => None,
        }
    }

    fn transient(reason: String, retry_safe: bool) -> Self {
        RefreshFailure::Transient {
            reason,
            retry_safe,
            source: None,
        }
    }

    fn network(error: reqwest::Error, retry_safe: bool) -> Self {
        RefreshFailure::Transient {
            reason: describe_network_error(&error),
            retry_safe,
            source: Some(Arc::new(error)),
        }
    }
}

/// Talks to the token endpoint. Cheap to clone: clones share one HTTP client.
#[derive(Debug, Clone)]
pub struct TokenClient {
    /// Built on the first request: loading the system's root certificates costs several
    /// milliseconds, which a command that finds a fresh token should not pay.
    http: Arc<OnceLock<Result<reqwest::Client, String>>>,
    config: AuthorityConfig,
    in_transaction: bool,
}

impl TokenClient {
    /// A client for `config`. The HTTP client itself is built on the first request.
    pub fn new(config: AuthorityConfig) -> Self {
        Self {
            http: Arc::default(),
            config,
            in_transaction: false,
        }
    }

    /// Marks every request as made inside a refresh transaction ([`IN_TRANSACTION_HEADER`]).
    /// Default: not marked.
    pub fn in_transaction(mut self) -> Self {
        self.in_transaction = true;
        self
    }

    fn post(&self, http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        let request = http.post(url);
        if self.in_transaction {
            request.header(IN_TRANSACTION_HEADER, "1")
        } else {
            request
        }
    }

    fn http(&self) -> Result<&reqwest::Client, String> {
        self.http
            .get_or_init(|| {
                // reqwest is built without a default crypto provider (ring builds in half the
                // time of aws-lc-rs); installing it twice is harmless.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut builder = reqwest::Client::builder();
                if is_loopback_url(&self.config.token_url) {
                    // A local authority (tests, the embedded one) is never reached through a proxy.
                    builder = builder.no_proxy();
                }
                builder
                    .timeout(self.config.request_timeout)
                    .connect_timeout(self.config.request_timeout)
                    .user_agent(concat!("authstore/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The configuration.
    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    /// Spends `refresh_token` for new tokens.
    ///
    /// # Errors
    /// [`RefreshFailure::Permanent`] for HTTP 401 or a dead-token error code;
    /// [`RefreshFailure::Transient`] for network errors, timeouts, other statuses and an
    /// unparseable success body.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenResponse, RefreshFailure> {
        let body = json!({
            "client_id": self.config.client_id,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose(),
        });
        let http = self
            .http()
            .map_err(|reason| RefreshFailure::transient(reason, true))?;
        let response = self
            .post(http, &self.config.token_url)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let retry_safe = e.is_connect();
                RefreshFailure::network(e, retry_safe)
            })?;
        let status = response.status().as_u16();
        let bytes = read_bounded(response).await?;
        classify(status, &bytes)
    }

    /// Revokes `refresh_token`, best effort: failures are reported for logging only.
    ///
    /// # Errors
    /// A description of what failed (never the token).
    pub async fn revoke(&self, refresh_token: &Secret) -> Result<(), String> {
        let body = json!({
            "token": refresh_token.expose(),
            "token_type_hint": "refresh_token",
            "client_id": self.config.client_id,
        });
        let response = self
            .post(self.http()?, &self.config.revoke_url())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let mut message = describe_network_error(&e);
                let mut cause: Option<&dyn std::error::Error> = Some(&e);
                while let Some(error) = cause {
                    message.push_str(&format!(": {error}"));
                    cause = error.source();
                }
                message
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("revocation answered HTTP {}", response.status()))
        }
    }
}

/// The answer's body, at most [`MAX_ANSWER_BYTES`] of it: a longer one is a transient failure,
/// read no further (the authority may have rotated the token: not retry-safe).
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, RefreshFailure> {
    let status = response.status().as_u16();
    let too_long = || {
        RefreshFailure::transient(
            format!(
                "the token endpoint answered HTTP {status} with more than {} KiB",
                MAX_ANSWER_BYTES / 1024
            ),
            false,
        )
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RefreshFailure::network(e, false))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether `value` can be a token: a non-empty string without whitespace or control characters
/// (RFC 6750's token characters are a subset; a looser authority is still accepted).
pub fn is_token_string(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Reads the token field `name` of a `2xx` answer: `None` when absent or `null`; a malformed
/// value (not a usable token string) is recorded in `malformed` and treated as absent.
fn token_field(
    answer: &serde_json::Map<String, Value>,
    name: &'static str,
    malformed: &mut Vec<&'static str>,
) -> Option<Secret> {
    match answer.get(name)? {
        Value::Null => None,
        Value::String(token) if is_token_string(token) => Some(Secret::new(token.clone())),
        _ => {
            tracing::warn!(
                field = name,
                "the token endpoint answered a malformed {name}; it is treated as absent"
            );
            malformed.push(name);
            None
        }
    }
}

/// Checks that `url` can be a token endpoint: an absolute `http` or `https` URL with a host.
/// Nothing is connected to.
///
/// # Errors
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput), naming the URL and why.
pub fn check_token_url(url: &str) -> crate::Result<()> {
    let why = match reqwest::Url::parse(url) {
        Err(error) => error.to_string(),
        Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => {
            format!("the scheme is {:?}, not http or https", parsed.scheme())
        }
        Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => "it names no host".into(),
        Ok(_) => return Ok(()),
    };
    Err(crate::Error::invalid_input(format!(
        "token_url={url:?} is not an http(s) URL: {why}"
    )))
}

/// Whether `url` names this machine (`localhost` or a loopback address).
pub fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    })
}

/// Classifies a token endpoint answer (SPEC §3). A `2xx` answer that is a JSON object is read
/// field by field into a [`TokenResponse`], whether or not it is usable; any other `2xx` body is
/// a transient failure.
pub fn classify(status: u16, body: &[u8]) -> Result<TokenResponse, RefreshFailure> {
    if (200..300).contains(&status) {
        let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
            return Err(RefreshFailure::transient(
                format!(
                    "the token endpoint answered HTTP {status} with a body that is not a token response"
                ),
                false,
            ));
        };
        let mut malformed = Vec::new();
        return Ok(TokenResponse {
            id_token: token_field(&answer, "id_token", &mut malformed),
            access_token: token_field(&answer, "access_token", &mut malformed),
            refresh_token: token_field(&answer, "refresh_token", &mut malformed),
            malformed,
        });
    }
    let code = error_code(body);
    let permanent_code = code
        .as_deref()
        .filter(|c| PERMANENT_CODES.contains(c))
        .is_some();
    if status == 401 || permanent_code {
        let reason = match code.as_deref() {
            Some("refresh_token_expired") => ReloginReason::Expired,
            Some("refresh_token_reused") => ReloginReason::Reused,
            Some("refresh_token_invalidated") => ReloginReason::Revoked,
            _ => ReloginReason::Rejected,
        };
        return Err(RefreshFailure::Permanent {
            reason,
            status,
            code: code.unwrap_or_else(|| "none".into()),
        });
    }
    // Gateways and rate limiters answer these before the token reaches the authority.
    let retry_safe = matches!(status, 429 | 502 | 503 | 504);
    let reason = match code {
        Some(code) => format!("the token endpoint answered HTTP {status} ({code})"),
        None => format!("the token endpoint answered HTTP {status}"),
    };
    Err(RefreshFailure::transient(reason, retry_safe))
}

/// `error.code` when `error` is an object, else `error` when it is a string, else `code`;
/// lower-cased. Only short, plain codes are kept, so that a body echoing a token cannot leak it.
fn error_code(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let code = match value.get("error") {
        Some(Value::Object(error)) => error.get("code")?.as_str(),
        Some(Value::String(code)) => Some(code.as_str()),
        _ => value.get("code")?.as_str(),
    }?;
    let plain = code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    plain.then(|| code.to_ascii_lowercase())
}

/// How `error` failed on the network: a timeout (connecting or waiting for the answer) before
/// anything else, then a failure to connect (refused, no route, no such name, TLS).
pub(crate) fn network_failure(error: &reqwest::Error) -> Option<NetworkFailure> {
    if error.is_timeout() {
        Some(NetworkFailure::TimedOut)
    } else if error.is_connect() {
        Some(NetworkFailure::Unreachable)
    } else {
        None
    }
}

/// What a failed request did, in words; the causes follow in the error's `source()` chain
/// (reqwest's messages name the URL, ours, never a token).
fn describe_network_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    format!("the token request {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::unauthorized_without_code(401, r#"{}"#, Some(ReloginReason::Rejected))]
    #[case::reused_object(
        400,
        r#"{"error":{"code":"refresh_token_reused"}}"#,
        Some(ReloginReason::Reused)
    )]
    #[case::expired_string(
        400,
        r#"{"error":"refresh_token_expired"}"#,
        Some(ReloginReason::Expired)
    )]
    #[case::invalidated_top_level_code(
        403,
        r#"{"code":"REFRESH_TOKEN_INVALIDATED"}"#,
        Some(ReloginReason::Revoked)
    )]
    #[case::invalid_grant(400, r#"{"error":"invalid_grant"}"#, Some(ReloginReason::Rejected))]
    #[case::server_error(500, r#"{"error":"server_error"}"#, None)]
    #[case::bad_request_other_code(400, r#"{"error":"invalid_request"}"#, None)]
    #[case::bad_gateway_html(502, "<html>", None)]
    #[case::too_many_requests(429, "", None)]
    fn failures_are_classified(
        #[case] status: u16,
        #[case] body: &str,
        #[case] permanent: Option<ReloginReason>,
    ) {
        match (classify(status, body.as_bytes()), permanent) {
            (Err(RefreshFailure::Permanent { reason, .. }), Some(expected)) => {
                assert_eq!(reason, expected)
            }
            (Err(RefreshFailure::Transient { .. }), None) => {}
            (other, _) => panic!("unexpected classification: {other:?}"),
        }
    }

    #[test]
    fn unparseable_success_is_transient_and_missing_fields_are_kept_out() {
        assert!(matches!(
            classify(200, b"<html>not json"),
            Err(RefreshFailure::Transient {
                retry_safe: false,
                ..
            })
        ));
        let response = classify(200, br#"{"access_token":"a"}"#).unwrap();
        assert!(response.refresh_token.is_none() && response.id_token.is_none());
    }

    /// Each token field of a `2xx` answer on its own: a usable token string is kept, anything
    /// else is absent, and the malformed ones are named.
    #[rstest]
    #[case::missing(None, false, false)]
    #[case::null(Some(json!(null)), false, false)]
    #[case::empty(Some(json!("")), false, true)]
    #[case::blank(Some(json!("  ")), false, true)]
    #[case::inner_space(Some(json!("ab cd")), false, true)]
    #[case::control(Some(json!("ab\u{0}cd")), false, true)]
    #[case::newline(Some(json!("abcd\n")), false, true)]
    #[case::number(Some(json!(7)), false, true)]
    #[case::boolean(Some(json!(true)), false, true)]
    #[case::array(Some(json!(["t"])), false, true)]
    #[case::object(Some(json!({"t": "u"})), false, true)]
    #[case::token(Some(json!("tok.en-_~+/=")), true, false)]
    #[case::oversized(Some(json!("x".repeat(512 * 1024))), true, false)]
    fn each_token_field_is_read_on_its_own(
        #[case] value: Option<Value>,
        #[case] kept: bool,
        #[case] named: bool,
    ) {
        for field in ["id_token", "access_token", "refresh_token"] {
            // The other two fields are well-formed, so that each case tests one field.
            let mut answer = json!({"id_token": "id", "access_token": "at", "refresh_token": "rt"});
            match &value {
                Some(value) => answer[field] = value.clone(),
                None => {
                    answer.as_object_mut().unwrap().remove(field);
                }
            }
            let response = classify(200, answer.to_string().as_bytes()).unwrap();
            let slot = match field {
                "id_token" => &response.id_token,
                "access_token" => &response.access_token,
                _ => &response.refresh_token,
            };
            assert_eq!(slot.is_some(), kept, "{field}");
            assert_eq!(
                response.malformed == [field],
                named,
                "{field}: {:?}",
                response.malformed
            );
            assert_eq!(
                response.is_usable(),
                field != "access_token" || kept,
                "{field}"
            );
            if let Some(token) = slot {
                assert_eq!(Some(token.expose()), value.as_ref().and_then(Value::as_str));
            }
        }
    }

    #[test]
    fn an_unusable_answer_keeps_its_rotation_and_does_not_look_refreshed() {
        let base = AuthDocument::parse(
            br#"{"tokens": {"id_token": "id-0", "access_token": "at-0", "refresh_token": "rt-0"},
                "last_refresh": "2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let response = classify(200, br#"{"access_token": "", "refresh_token": "rt-1"}"#).unwrap();
        assert!(!response.is_usable() && response.has_tokens());
        let merged = response.merge_into(&base, SystemTime::now());
        let tokens = merged.tokens.as_ref().unwrap();
        assert_eq!(tokens.refresh_token.expose(), "rt-1");
        assert_eq!(tokens.access_token.expose(), "at-0");
        assert_eq!(merged.last_refresh.as_deref(), Some("2026-01-01T00:00:00Z"));
        // A usable one does.
        let response = classify(200, br#"{"access_token": "at-1"}"#).unwrap();
        let merged = response.merge_into(&base, SystemTime::now());
        assert_ne!(merged.last_refresh.as_deref(), Some("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn token_urls_are_http_or_https_with_a_host() {
        for good in [
            "http://127.0.0.1:9/oauth/token",
            "https://auth.example.com/oauth/token",
            "http://[::1]:8080/t",
        ] {
            assert!(check_token_url(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "auth.example.com/oauth/token",
            "ftp://auth.example.com/oauth/token",
            "file:///etc/passwd",
            "http://",
            "unix:/run/authority.sock",
        ] {
            let error = check_token_url(bad).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidInput, "{bad}");
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn revoke_url_sits_next_to_the_token_url() {
        let config = AuthorityConfig::default().token_url("http://127.0.0.1:9/oauth/token");
        assert_eq!(config.revoke_url(), "http://127.0.0.1:9/oauth/revoke");
    }
}
