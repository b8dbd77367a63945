//! Where this environment's Codex sends its refreshes, and whether a broker of this home answers
//! there: what `status` and `agent status` report.
//!
//! A broker answers `GET /authstore/broker` with who it is (`{"authstore_broker", "home",
//! "pid"}`, `home` being [`home_fingerprint`]); nothing else needs to know. Only a loopback URL
//! is asked, with a short timeout: `status` sends nothing off this machine.

use std::path::Path;
use std::time::Duration;

use authstore::authority::{TOKEN_URL_ENV, is_loopback_url};
use authstore::store::home_fingerprint;
use serde_json::{Value, json};

/// The path a broker answers with who it is.
pub(crate) const IDENTITY_PATH: &str = "/authstore/broker";
/// A broker on loopback answers at once; anything slower is not one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the token URL of this environment reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUrl {
    /// `CODEX_REFRESH_TOKEN_URL_OVERRIDE` is not set: Codex refreshes at its own authority,
    /// without a broker.
    NotSet,
    /// Set to an address off loopback: not asked.
    Elsewhere(String),
    /// A broker of this home answers there.
    ThisHome { url: String, pid: Option<u64> },
    /// A broker of another Codex home answers there: it forwards this home's refreshes
    /// unchanged, so they are not protected.
    OtherHome { url: String, pid: Option<u64> },
    /// Something that is not a broker answers there (a token authority, say).
    NotBroker { url: String, holder: Option<String> },
    /// Nothing answers: every Codex refresh would fail.
    Nothing { url: String },
}

impl TokenUrl {
    /// Asks the URL `CODEX_REFRESH_TOKEN_URL_OVERRIDE` names, for the Codex home `home`.
    pub async fn check(home: &Path) -> Self {
        let Some(url) = std::env::var(TOKEN_URL_ENV).ok().filter(|v| !v.is_empty()) else {
            return TokenUrl::NotSet;
        };
        if !is_loopback_url(&url) {
            return TokenUrl::Elsewhere(url);
        }
        let Ok(parsed) = reqwest::Url::parse(&url) else {
            return TokenUrl::Nothing { url };
        };
        let mut identity = parsed.clone();
        identity.set_path(IDENTITY_PATH);
        identity.set_query(None);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(PROBE_TIMEOUT)
            .build();
        let answer = match client {
            Ok(client) => client.get(identity).send().await,
            Err(_) => return TokenUrl::Nothing { url },
        };
        let holder = || {
            parsed
                .port_or_known_default()
                .and_then(super::holder::describe)
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) if error.is_connect() => return TokenUrl::Nothing { url },
            Err(_) => {
                let holder = holder();
                return TokenUrl::NotBroker { url, holder };
            }
        };
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if body.get("authstore_broker").is_none() {
            let holder = holder();
            return TokenUrl::NotBroker { url, holder };
        }
        let pid = body["pid"].as_u64();
        if body["home"].as_str() == Some(home_fingerprint(home).as_str()) {
            TokenUrl::ThisHome { url, pid }
        } else {
            TokenUrl::OtherHome { url, pid }
        }
    }

    /// A warning to print, when the environment's Codex would be let down.
    pub fn warning(&self) -> Option<String> {
        match self {
            TokenUrl::Nothing { url } => Some(format!(
                "{TOKEN_URL_ENV}={url}, where nothing answers: every Codex refresh would fail; \
                 start the broker (`authstore agent --broker`, or `authstore agent install \
                 --broker`) or unset {TOKEN_URL_ENV}"
            )),
            TokenUrl::OtherHome { url, .. } => Some(format!(
                "{TOKEN_URL_ENV}={url} is another Codex home's broker: it forwards this home's \
                 refreshes unprotected; run a broker for this home"
            )),
            _ => None,
        }
    }

    /// One line for `status`.
    pub fn describe(&self) -> String {
        let pid = |pid: &Option<u64>| pid.map(|pid| format!(", pid {pid}")).unwrap_or_default();
        match self {
            TokenUrl::NotSet => format!("Codex's own ({TOKEN_URL_ENV} not set; no broker)"),
            TokenUrl::Elsewhere(url) => format!("{url} (not on this machine's loopback)"),
            TokenUrl::ThisHome { url, pid: p } => format!("{url} (this home's broker{})", pid(p)),
            TokenUrl::OtherHome { url, pid: p } => {
                format!("{url} (ANOTHER home's broker{})", pid(p))
            }
            TokenUrl::NotBroker { url, holder } => match holder {
                Some(holder) => format!("{url} (not a broker: {holder})"),
                None => format!("{url} (not a broker)"),
            },
            TokenUrl::Nothing { url } => format!("{url} (NOTHING ANSWERS)"),
        }
    }

    /// The `token_url` object of `status --json`.
    pub fn json(&self) -> Value {
        let (url, broker) = match self {
            TokenUrl::NotSet => (None, "none"),
            TokenUrl::Elsewhere(url) => (Some(url), "elsewhere"),
            TokenUrl::ThisHome { url, .. } => (Some(url), "this_home"),
            TokenUrl::OtherHome { url, .. } => (Some(url), "other_home"),
            TokenUrl::NotBroker { url, .. } => (Some(url), "not_a_broker"),
            TokenUrl::Nothing { url } => (Some(url), "nothing_answers"),
        };
        let pid = match self {
            TokenUrl::ThisHome { pid, .. } | TokenUrl::OtherHome { pid, .. } => *pid,
            _ => None,
        };
        let holder = match self {
            TokenUrl::NotBroker { holder, .. } => holder.clone(),
            _ => None,
        };
        json!({"url": url, "reaches": broker, "broker_pid": pid, "holder": holder})
    }
}
