//! Claims read from the id and access tokens, without verifying signatures.
//!
//! The authority signs its tokens and resource servers verify them; this crate only needs to know
//! whose tokens they are and when they expire. A token that is not a well-formed JWT simply has
//! no claims.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

const AUTH_CLAIM: &str = "https://api.openai.com/auth";
const PROFILE_CLAIM: &str = "https://api.openai.com/profile";

/// base64url, with or without padding: issuers differ, and a reader should not care.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The payload of a JWT as a JSON object, or `None` when the token is not a well-formed JWT.
pub fn jwt_payload(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = BASE64URL.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// What the id token says about its owner. Every field is optional: absent claims are unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdClaims {
    /// `["https://api.openai.com/auth"].chatgpt_account_id`.
    pub account_id: Option<String>,
    /// `["https://api.openai.com/auth"].chatgpt_user_id`, falling back to `.user_id`.
    pub user_id: Option<String>,
    /// Top-level `email`, falling back to `["https://api.openai.com/profile"].email`.
    pub email: Option<String>,
    /// `["https://api.openai.com/auth"].chatgpt_plan_type`.
    pub plan: Option<String>,
}

impl IdClaims {
    /// Reads the claims of an id token; a malformed token gives all-unknown claims.
    pub fn from_jwt(token: &str) -> Self {
        let Some(payload) = jwt_payload(token) else {
            return Self::default();
        };
        let auth = payload.get(AUTH_CLAIM);
        let auth_str = |key: &str| string_at(auth, key);
        Self {
            account_id: auth_str("chatgpt_account_id"),
            user_id: auth_str("chatgpt_user_id").or_else(|| auth_str("user_id")),
            email: payload
                .get("email")
                .and_then(non_empty_str)
                .or_else(|| string_at(payload.get(PROFILE_CLAIM), "email")),
            plan: auth_str("chatgpt_plan_type"),
        }
    }
}

/// The access token's expiry (`exp`, seconds since the epoch), when it can be read.
pub fn access_token_expiry(token: &str) -> Option<SystemTime> {
    let exp = jwt_payload(token)?.get("exp")?.as_f64()?;
    if !exp.is_finite() || exp < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs_f64(exp.min(1e12)))
}

fn string_at(object: Option<&Value>, key: &str) -> Option<String> {
    object?.get(key).and_then(non_empty_str)
}

fn non_empty_str(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Builds an unsigned JWT (`alg: none`) from claims. For test fixtures and the embedded
/// authority: no real token is ever needed to exercise this crate.
pub fn unsigned_jwt(claims: &Value) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = engine.encode(claims.to_string());
    format!("{header}.{payload}.unsigned")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_account_user_email_plan_and_expiry() {
        let token = unsigned_jwt(&json!({
            "exp": 2_000_000_000u64,
            "https://api.openai.com/auth": {
                "chatgpt_account_id": "acct-1", "chatgpt_user_id": "user-1", "chatgpt_plan_type": "plus"
            },
            "https://api.openai.com/profile": { "email": "a@example.com" }
        }));
        let claims = IdClaims::from_jwt(&token);
        assert_eq!(claims.account_id.as_deref(), Some("acct-1"));
        assert_eq!(claims.user_id.as_deref(), Some("user-1"));
        assert_eq!(claims.email.as_deref(), Some("a@example.com"));
        assert_eq!(claims.plan.as_deref(), Some("plus"));
        assert_eq!(
            access_token_expiry(&token),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
    }

    #[test]
    fn user_id_falls_back_and_top_level_email_wins() {
        let token = unsigned_jwt(&json!({
            "email": "top@example.com",
            "https://api.openai.com/auth": { "user_id": "legacy-user" },
            "https://api.openai.com/profile": { "email": "profile@example.com" }
        }));
        let claims = IdClaims::from_jwt(&token);
        assert_eq!(claims.user_id.as_deref(), Some("legacy-user"));
        assert_eq!(claims.email.as_deref(), Some("top@example.com"));
        assert_eq!(claims.account_id, None);
    }

    #[test]
    fn malformed_tokens_have_unknown_claims() {
        for token in ["", "opaque", "a.b", "a.!!!.c", "a.b.c.d", "e30.W10.x"] {
            assert_eq!(IdClaims::from_jwt(token), IdClaims::default(), "{token:?}");
            assert_eq!(access_token_expiry(token), None);
        }
    }
}
