//! Token minting: JWT-shaped id and access tokens, opaque refresh tokens,
//! and the two dependency-free helpers they need (randomness and RFC 3339
//! timestamps).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::Identity;

/// Process-wide sequence number; it makes every minted token unique within
/// the process, even across several simulators.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn next_sequence() -> u64 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed) + 1
}

/// The splitmix64 finalizer: a bijective 64-bit mixer.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Random-looking bits mixed from a counter, the process id and the clock.
/// Not cryptographic: it only has to make tokens from different runs differ.
fn random_u64() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let pid = u64::from(std::process::id());
    splitmix64(splitmix64(next_sequence()) ^ nanos.rotate_left(17) ^ (pid << 32))
}

/// A fresh opaque refresh token `rt_<family>_<sequence>_<random hex>`.
pub(crate) fn refresh_token(family: u64) -> String {
    format!("rt_{family}_{}_{:016x}", next_sequence(), random_u64())
}

/// An unsigned JWT (`alg: none`) carrying `claims`, with a random
/// signature part.
pub(crate) fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut signature = [0u8; 16];
    signature[..8].copy_from_slice(&random_u64().to_le_bytes());
    signature[8..].copy_from_slice(&random_u64().to_le_bytes());
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The claims of an id or access token for `identity`, issued at `now` and
/// expiring `lifetime` later (rounded up to whole seconds). Absent identity
/// fields leave their claims out.
pub(crate) fn claims(identity: &Identity, now: SystemTime, lifetime: Duration) -> Value {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let expiry = since_epoch + lifetime;
    let exp = expiry.as_secs() + u64::from(expiry.subsec_nanos() > 0);

    let mut claims = Map::new();
    claims.insert("exp".into(), exp.into());
    claims.insert("iat".into(), since_epoch.as_secs().into());
    claims.insert(
        "jti".into(),
        format!("{:x}-{:016x}", next_sequence(), random_u64()).into(),
    );
    if let Some(email) = &identity.email {
        claims.insert("email".into(), email.as_str().into());
    }
    let mut auth = Map::new();
    let fields = [
        ("chatgpt_account_id", &identity.account_id),
        ("chatgpt_user_id", &identity.user_id),
        ("user_id", &identity.user_id),
        ("chatgpt_plan_type", &identity.plan),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            auth.insert(name.into(), value.as_str().into());
        }
    }
    if !auth.is_empty() {
        claims.insert("https://api.openai.com/auth".into(), Value::Object(auth));
    }
    if let Some(email) = &identity.email {
        claims.insert(
            "https://api.openai.com/profile".into(),
            json!({ "email": email }),
        );
    }
    Value::Object(claims)
}

/// `t` as an RFC 3339 UTC timestamp with whole seconds, e.g.
/// `2026-11-29T14:00:00Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(951_782_400 / 86_400), (2000, 2, 29));
        assert_eq!(civil_from_days(13_574_649_600 / 86_400), (2400, 3, 1));
    }

    #[test]
    fn rfc3339_formats_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_960_800);
        assert_eq!(rfc3339(t), "2026-11-29T14:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn exp_rounds_up() {
        let now = UNIX_EPOCH + Duration::from_millis(10_500);
        let c = claims(&Identity::default(), now, Duration::from_millis(200));
        assert_eq!(c["iat"], 10);
        assert_eq!(c["exp"], 11);
        let c = claims(&Identity::default(), now, Duration::from_millis(500));
        assert_eq!(c["exp"], 11);
    }

    #[test]
    fn refresh_tokens_never_repeat() {
        let a = refresh_token(1);
        let b = refresh_token(1);
        assert_ne!(a, b);
        assert!(a.starts_with("rt_1_"));
    }
}
