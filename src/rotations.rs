//! The rotation record: which refresh tokens of a Codex home stopped being current, whose they
//! were and when, so that a token endpoint in front of the home (the broker, SPEC §9) can answer
//! a client that presents one of them moments later with the tokens that replaced it, instead of
//! spending it again at the authority (which would be a reuse, and revoke the family).
//!
//! # Protocol
//!
//! * `authstore-rotations.json` in the home holds at most [`MAX_ENTRIES`] entries
//!   `{"token", "identity", "at"}`: the SHA-256 of a refresh token, the SHA-256 of the account
//!   and user id it belonged to, and when it stopped being current (milliseconds since the Unix
//!   epoch). Never a token, never an id in the clear; 0600; entries older than [`KEEP_FOR`] are
//!   dropped on every write.
//! * Every authstore transaction records the refresh token it is about to spend, with the lock
//!   held and before the request is sent (so the entry exists before its successor is visible
//!   to anyone), and every manager records a rotation it sees in the store between two of its
//!   reads (another process, Codex itself, moved the home on). A token that was recorded but
//!   not rotated (the request failed) is still the store's current one, which is what a reader
//!   checks first.
//! * Writers serialise on `authstore-rotations.lock` (taken after `auth.lock` when both are
//!   held, never the other way round); the record is replaced atomically (not durably: it is
//!   only a hint), so readers take no lock. Recording is best effort: a home where the record cannot be written still refreshes,
//!   and a presented token missing from the record is forwarded to the authority, which is what
//!   happens without a broker.
//! * [`RotationRecord::rotated_away`] is the reuse rule: the presented token is in the record,
//!   no longer than the reuse interval ago, under exactly the identity (account and user) of the
//!   credentials the store holds now, and the store no longer holds it. A login of another
//!   account or user never matches, so the rule never hands one identity's tokens to another.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::document::{AuthDocument, Identity};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::file::{Visibility, lock, write_file_atomically};

/// The record, in the Codex home.
pub const ROTATIONS_FILE: &str = "authstore-rotations.json";
/// The lock its writers take, beside it.
pub const ROTATIONS_LOCK_FILE: &str = "authstore-rotations.lock";
/// How many rotations are kept: far more than happen within any reuse interval.
pub const MAX_ENTRIES: usize = 64;
/// How long a rotation is kept: longer than the longest reuse interval a broker accepts.
pub const KEEP_FOR: Duration = Duration::from_secs(3600);
/// How long a writer waits for another writer of the record.
const LOCK_DEADLINE: Duration = Duration::from_secs(5);

/// The rotation record of one Codex home.
#[derive(Debug, Clone)]
pub struct RotationRecord {
    path: PathBuf,
    lock_path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    version: u32,
    rotations: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    token: String,
    identity: String,
    at: u64,
}

impl RotationRecord {
    /// The record of the Codex home `home`.
    pub fn in_home(home: &Path) -> Self {
        Self {
            path: home.join(ROTATIONS_FILE),
            lock_path: home.join(ROTATIONS_LOCK_FILE),
        }
    }

    /// The record's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that `token`, of `identity`, stopped being current at `at` (or is about to).
    /// An identity with neither an account nor a user id is not recorded: nothing could later
    /// prove a presented token of it to be of the same login.
    ///
    /// # Errors
    /// The record's lock could not be taken in time, or the record could not be written.
    pub async fn record(&self, token: &Secret, identity: &Identity, at: SystemTime) -> Result<()> {
        let Some(identity) = identity_digest(identity) else {
            return Ok(());
        };
        let entry = Entry {
            token: token_digest(token),
            identity,
            at: millis(at),
        };
        let _lock = lock::acquire_transaction_lock(&self.lock_path, LOCK_DEADLINE).await?;
        let mut contents = self.read();
        let now = millis(SystemTime::now());
        let keep_after = now.saturating_sub(KEEP_FOR.as_millis() as u64);
        contents
            .rotations
            .retain(|kept| kept.at >= keep_after && kept.token != entry.token);
        contents.rotations.push(entry);
        let excess = contents.rotations.len().saturating_sub(MAX_ENTRIES);
        contents.rotations.drain(..excess);
        contents.version = 1;
        let bytes = serde_json::to_vec(&contents)
            .map_err(|e| Error::invalid_input(format!("cannot encode the rotation record: {e}")))?;
        // Not fsynced: it is written inside a transaction, and a record lost to a power cut
        // only means that a token presented right then is forwarded, as without a broker.
        write_file_atomically(&self.path, &bytes, Visibility::Private)
    }

    /// Whether `presented` was rotated away from the login `current` holds no longer than
    /// `within` before `now`: recorded under exactly `current`'s account and user, and no longer
    /// `current`'s refresh token. A record that cannot be read counts as empty.
    pub fn rotated_away(
        &self,
        presented: &Secret,
        current: &AuthDocument,
        now: SystemTime,
        within: Duration,
    ) -> bool {
        if within.is_zero() || current.refresh_token() == Some(presented) {
            return false;
        }
        let Some(identity) = identity_digest(&current.identity()) else {
            return false;
        };
        let token = token_digest(presented);
        let now = millis(now);
        let within = within.as_millis() as u64;
        self.read().rotations.iter().any(|entry| {
            entry.token == token
                && entry.identity == identity
                && now.saturating_sub(entry.at) <= within
        })
    }

    /// The record as stored; missing, unreadable or not ours: empty.
    fn read(&self) -> Contents {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::debug!(path = %self.path.display(), %error, "ignoring an unreadable rotation record");
                Contents::default()
            }),
            Err(_) => Contents::default(),
        }
    }
}

/// Whether `after` is a rotation of `before`: both hold tokens of the same account and user
/// (exactly, as [`RotationRecord::rotated_away`] will compare them) and different refresh
/// tokens. Then `before`'s refresh token is the one to record.
pub fn rotation_between<'a>(before: &'a AuthDocument, after: &AuthDocument) -> Option<&'a Secret> {
    let (old, new) = (before.refresh_token()?, after.refresh_token()?);
    let identity = identity_digest(&before.identity())?;
    (old != new && identity_digest(&after.identity()).as_deref() == Some(identity.as_str()))
        .then_some(old)
}

pub(crate) fn token_digest(token: &Secret) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes()).as_ref())
}

/// The account and user, exactly: two identities match when both ids are equal (absent ones
/// included), the strictest rows of the guarded-adoption rule.
pub(crate) fn identity_digest(identity: &Identity) -> Option<String> {
    if identity.account_id.is_none() && identity.user_id.is_none() {
        return None;
    }
    let pair = serde_json::json!([identity.account_id, identity.user_id]).to_string();
    Some(hex(ring::digest::digest(
        &ring::digest::SHA256,
        pair.as_bytes(),
    )
    .as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(account: Option<&str>, user: Option<&str>, refresh_token: &str) -> AuthDocument {
        serde_json::from_value(serde_json::json!({
            "tokens": {
                "id_token": fake_id_token(user),
                "access_token": "at",
                "refresh_token": refresh_token,
                "account_id": account,
            }
        }))
        .unwrap()
    }

    fn fake_id_token(user: Option<&str>) -> String {
        use base64::Engine;
        let claims = match user {
            Some(user) => {
                serde_json::json!({"https://api.openai.com/auth": {"chatgpt_user_id": user}})
            }
            None => serde_json::json!({}),
        };
        let encode = |value: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
        format!(
            "{}.{}.sig",
            encode(b"{\"alg\":\"none\"}"),
            encode(claims.to_string().as_bytes())
        )
    }

    #[tokio::test]
    async fn a_recorded_token_is_rotated_away_within_the_interval_for_the_same_login_only() {
        let home = tempfile::tempdir().unwrap();
        let record = RotationRecord::in_home(home.path());
        let old = login(Some("acct"), Some("user"), "rt-old");
        let at = SystemTime::now();
        record
            .record(old.refresh_token().unwrap(), &old.identity(), at)
            .await
            .unwrap();
        let presented = Secret::new("rt-old".to_owned());
        let interval = Duration::from_secs(60);
        let current = login(Some("acct"), Some("user"), "rt-new");
        assert!(record.rotated_away(&presented, &current, at + Duration::from_secs(59), interval));
        assert!(!record.rotated_away(&presented, &current, at + Duration::from_secs(61), interval));
        assert!(!record.rotated_away(&presented, &current, at, Duration::ZERO));
        // Another user of the same account, another account, a login that names no user: never.
        for other in [
            login(Some("acct"), Some("someone-else"), "rt-new"),
            login(Some("other"), Some("user"), "rt-new"),
            login(Some("acct"), None, "rt-new"),
        ] {
            assert!(!record.rotated_away(&presented, &other, at, interval));
        }
        // Still the store's current token: not rotated away, whatever the record says.
        assert!(!record.rotated_away(&presented, &old, at, interval));
        // A token never recorded.
        let unknown = Secret::new("rt-unknown".to_owned());
        assert!(!record.rotated_away(&unknown, &current, at, interval));
    }

    #[tokio::test]
    async fn the_record_holds_digests_only_is_private_and_bounded() {
        let home = tempfile::tempdir().unwrap();
        let record = RotationRecord::in_home(home.path());
        let identity = login(Some("acct-visible"), Some("user-visible"), "x").identity();
        for n in 0..(MAX_ENTRIES + 10) {
            let token = Secret::new(format!("fake-refresh-token-{n}"));
            record
                .record(&token, &identity, SystemTime::now())
                .await
                .unwrap();
        }
        let text = std::fs::read_to_string(record.path()).unwrap();
        assert!(
            !text.contains("fake-refresh-token"),
            "a token in the record"
        );
        assert!(
            !text.contains("visible"),
            "an id in the clear in the record"
        );
        let contents: Contents = serde_json::from_str(&text).unwrap();
        assert_eq!(contents.rotations.len(), MAX_ENTRIES);
        // The newest are kept.
        let newest = Secret::new(format!("fake-refresh-token-{}", MAX_ENTRIES + 9));
        assert_eq!(
            contents.rotations.last().unwrap().token,
            token_digest(&newest)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(record.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn old_entries_are_dropped_and_an_unreadable_record_counts_as_empty() {
        let home = tempfile::tempdir().unwrap();
        let record = RotationRecord::in_home(home.path());
        let identity = login(Some("acct"), None, "x").identity();
        let long_ago = SystemTime::now() - KEEP_FOR - Duration::from_secs(1);
        let old = Secret::new("rt-long-ago".to_owned());
        record.record(&old, &identity, long_ago).await.unwrap();
        record
            .record(
                &Secret::new("rt-now".to_owned()),
                &identity,
                SystemTime::now(),
            )
            .await
            .unwrap();
        let text = std::fs::read_to_string(record.path()).unwrap();
        assert!(!text.contains(&token_digest(&old)));
        std::fs::write(record.path(), b"{not json").unwrap();
        let current = login(Some("acct"), None, "rt-newer");
        let presented = Secret::new("rt-now".to_owned());
        assert!(!record.rotated_away(&presented, &current, SystemTime::now(), KEEP_FOR));
        // And the next write starts it afresh.
        record
            .record(&presented, &identity, SystemTime::now())
            .await
            .unwrap();
        assert!(record.rotated_away(&presented, &current, SystemTime::now(), KEEP_FOR));
    }

    #[test]
    fn a_rotation_is_a_new_refresh_token_of_exactly_the_same_login() {
        let before = login(Some("acct"), Some("user"), "rt-1");
        let token = rotation_between(&before, &login(Some("acct"), Some("user"), "rt-2"));
        assert_eq!(token.map(Secret::expose), Some("rt-1"));
        assert!(rotation_between(&before, &before).is_none());
        assert!(rotation_between(&before, &login(Some("acct"), Some("other"), "rt-2")).is_none());
        assert!(rotation_between(&before, &login(None, None, "rt-2")).is_none());
        let anonymous = login(None, None, "rt-1");
        assert!(rotation_between(&anonymous, &login(None, None, "rt-2")).is_none());
    }
}
