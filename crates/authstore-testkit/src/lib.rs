//! The fixtures every test target and benchmark of the workspace shares: fake JWTs and
//! Codex-shaped documents, a clock tests move by hand, one set of bounded waits, the real binary
//! against the embedded token authority, an agent process read event by event, and a throwaway
//! PostgreSQL cluster. No real credentials anywhere.
//!
//! A crate of its own (not published) rather than a `tests/common` file each test target
//! includes: it is compiled once, and the library's tests, the command line's tests and the
//! benchmarks all use the same fixtures.
//!
//! One fixture world: the specialised fixtures of the test targets (the Codex interop suite's
//! `Lab`, the PostgreSQL machines, the manager scenarios' `Setup`, the service tests' `Sandbox`)
//! are built from these parts instead of copies of them.
//!
//! - this crate's root: fake JWTs and Codex-shaped documents ([`document_json`]), reading and
//!   writing `auth.json` in any home ([`read_auth`], [`write_auth`], [`token_on_disk`]), a
//!   clock tests move by hand ([`TestClock`]), and [`eventually`], the one bounded poll;
//! - [`home`]: [`home::Home`], a temporary Codex home and its `auth.json`;
//! - [`binary`]: [`binary::Env`], a [`home::Home`] beside a running
//!   [`Simulator`](authstore_simulator::Simulator), and the `authstore` binary's command line and
//!   environment in it (on its home or any other: [`binary::Env::command_in`]); the output
//!   readers and assertions every multi-process test uses;
//! - [`agent_process`] (Unix): an `authstore agent --json` process, event by event;
//! - [`process`]: every wait on another process is bounded by [`process::BOUND`], and fails the
//!   test past it;
//! - [`postgres`] (Unix): a throwaway PostgreSQL cluster on loopback.

#[cfg(unix)]
pub mod agent_process;
pub mod binary;
pub mod files;
pub mod home;
#[cfg(unix)]
pub mod postgres;
pub mod process;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authstore::clock::Clock;
use authstore::document::{AuthDocument, unsigned_jwt};
use serde_json::{Value, json};

/// Who a fixture document belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Who {
    pub account: Option<&'static str>,
    pub user: Option<&'static str>,
}

pub const ALICE: Who = Who {
    account: Some("acct-1"),
    user: Some("user-alice"),
};
pub const BOB_SAME_ACCOUNT: Who = Who {
    account: Some("acct-1"),
    user: Some("user-bob"),
};
pub const NOBODY: Who = Who {
    account: None,
    user: None,
};

/// The simulator's identity of [`ALICE`]: the account and user every multi-process test logs in.
pub fn alice() -> authstore_simulator::Identity {
    authstore_simulator::Identity::new("acct-1", "user-alice")
}

pub fn epoch_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A Codex-shaped document for `who`, whose tokens carry `generation` and whose access token
/// expires `expires_in` seconds after `now` (negative: already expired). `account_in_tokens`
/// says whether `tokens.account_id` is written (legacy files lack it).
pub fn document_json(
    who: Who,
    generation: u32,
    now: SystemTime,
    expires_in: i64,
    account_in_tokens: bool,
) -> Value {
    let exp = epoch_secs(now) as i64 + expires_in;
    let mut auth = serde_json::Map::new();
    if let Some(account) = who.account {
        auth.insert("chatgpt_account_id".into(), json!(account));
    }
    if let Some(user) = who.user {
        auth.insert("chatgpt_user_id".into(), json!(user));
    }
    let mut id_claims = json!({"email": "someone@example.com", "g": generation});
    if !auth.is_empty() {
        id_claims["https://api.openai.com/auth"] = Value::Object(auth);
    }
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": unsigned_jwt(&id_claims),
            "access_token": unsigned_jwt(&json!({"exp": exp, "g": generation, "user": who.user})),
            "refresh_token": format!("rt-{}-{generation}", who.user.unwrap_or("anon")),
            "account_id": if account_in_tokens { json!(who.account) } else { Value::Null },
            "x_token_extra": "kept"
        },
        "last_refresh": "2026-11-29T14:00:00Z",
        "x_custom": {"kept": true}
    })
}

pub fn document(who: Who, generation: u32, now: SystemTime, expires_in: i64) -> AuthDocument {
    parse(&document_json(who, generation, now, expires_in, true))
}

pub fn parse(value: &Value) -> AuthDocument {
    AuthDocument::parse(value.to_string().as_bytes()).expect("fixture parses")
}

pub fn write_auth(home: &Path, value: &Value) {
    std::fs::write(
        home.join("auth.json"),
        serde_json::to_vec_pretty(value).unwrap(),
    )
    .unwrap();
}

pub fn read_auth(home: &Path) -> Option<Value> {
    let bytes = std::fs::read(home.join("auth.json")).ok()?;
    Some(serde_json::from_slice(&bytes).expect("auth.json parses"))
}

/// `tokens.NAME` of the `auth.json` in `home`, if there is one and it holds that token.
pub fn token_on_disk(home: &Path, name: &str) -> Option<String> {
    read_auth(home)?["tokens"][name].as_str().map(str::to_owned)
}

pub fn refresh_token_on_disk(home: &Path) -> Option<String> {
    token_on_disk(home, "refresh_token")
}

/// `tokens.NAME` of `document`, which must be a string. (A failure names the field, never a
/// token.)
pub fn token(document: &Value, name: &str) -> String {
    document["tokens"][name]
        .as_str()
        .unwrap_or_else(|| panic!("tokens.{name} is a string"))
        .to_owned()
}

/// `document` with the unknown fields authstore must keep: `x_custom` at the top and
/// `tokens.x_token_extra`.
pub fn with_unknown_fields(mut document: Value) -> Value {
    document["x_custom"] = json!({"kept": true});
    document["tokens"]["x_token_extra"] = json!("kept");
    document
}

/// A clock that tests move forward by hand: tokens go stale without sleeping.
#[derive(Clone, Default)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    pub fn clock(&self) -> Clock {
        let offset = self.0.clone();
        Clock::from_fn(move || {
            let seconds = offset.load(Ordering::SeqCst);
            if seconds >= 0 {
                SystemTime::now() + Duration::from_secs(seconds as u64)
            } else {
                SystemTime::now() - Duration::from_secs(seconds.unsigned_abs())
            }
        })
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
    }

    pub fn now(&self) -> SystemTime {
        self.clock().now()
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
