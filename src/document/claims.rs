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

/// The string form of an id token that a file holds in Codex's parsed form, a claims object
/// (`{"email", "chatgpt_plan_type", "chatgpt_user_id", "chatgpt_account_id", "raw_jwt"}`, as
/// some Codex builds and tools have written `tokens.id_token`): its `raw_jwt` when present, else
/// an unsigned JWT carrying the same claims where a JWT carries them, so that the identity (and
/// with it guarded adoption) reads the same. `None` when the object is not such a claims
/// object: a known field of another type than a string (or `null`), or none of them at all.
pub(crate) fn id_token_from_claims_object(
    object: &serde_json::Map<String, Value>,
) -> Option<String> {
    const FIELDS: [&str; 5] = [
        "email",
        "chatgpt_plan_type",
        "chatgpt_user_id",
        "chatgpt_account_id",
        "raw_jwt",
    ];
    let field = |name: &str| -> Result<Option<&str>, ()> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(()),
        }
    };
    let mut present = false;
    for name in FIELDS {
        present |= field(name).ok()?.is_some();
    }
    if !present {
        return None;
    }
    if let Some(raw) = field("raw_jwt").ok()? {
        return crate::authority::is_token_string(raw).then(|| raw.to_owned());
    }
    let mut auth = serde_json::Map::new();
    for name in ["chatgpt_account_id", "chatgpt_user_id", "chatgpt_plan_type"] {
        if let Some(value) = field(name).ok()? {
            auth.insert(name.to_owned(), Value::from(value));
        }
    }
    let mut claims = serde_json::Map::new();
    if let Some(email) = field("email").ok()? {
        claims.insert("email".to_owned(), Value::from(email));
    }
    claims.insert(AUTH_CLAIM.to_owned(), Value::Object(auth));
    Some(unsigned_jwt(&Value::Object(claims)))
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
    fn a_claims_object_id_token_reads_as_the_same_identity() {
        let object = json!({
            "email": "a@example.com", "chatgpt_plan_type": "plus",
            "chatgpt_user_id": "user-1", "chatgpt_account_id": "acct-1"
        });
        let token = id_token_from_claims_object(object.as_object().unwrap()).unwrap();
        let claims = IdClaims::from_jwt(&token);
        assert_eq!(claims.account_id.as_deref(), Some("acct-1"));
        assert_eq!(claims.user_id.as_deref(), Some("user-1"));
        assert_eq!(claims.email.as_deref(), Some("a@example.com"));
        assert_eq!(claims.plan.as_deref(), Some("plus"));
        // With its raw JWT, the raw JWT itself.
        let raw = unsigned_jwt(&json!({"email": "raw@example.com"}));
        let object = json!({"email": "a@example.com", "raw_jwt": raw});
        assert_eq!(
            id_token_from_claims_object(object.as_object().unwrap()),
            Some(raw)
        );
        // Other shapes are not claims objects.
        for other in [
            json!({}),
            json!({"unrelated": "x"}),
            json!({"email": 7}),
            json!({"chatgpt_user_id": "u", "raw_jwt": ""}),
            json!({"chatgpt_user_id": "u", "raw_jwt": ["x"]}),
        ] {
            assert_eq!(
                id_token_from_claims_object(other.as_object().unwrap()),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn malformed_tokens_have_unknown_claims() {
        for token in ["", "opaque", "a.b", "a.!!!.c", "a.b.c.d", "e30.W10.x"] {
            assert_eq!(IdClaims::from_jwt(token), IdClaims::default(), "{token:?}");
            assert_eq!(access_token_expiry(token), None);
        }
    }
}
