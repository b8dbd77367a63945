//! The token state machine: login families, refresh-token rotation, reuse
//! detection, family revocation. Synchronous and transport-free; the HTTP
//! layer and the [`Simulator`](super::Simulator) handle drive it under a
//! mutex.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::tokens;

/// Who a login belongs to: the identity claims of its id and access tokens.
///
/// Every field is optional and a `None` field leaves its claim out, so
/// [`Identity::default()`] mints tokens without any identity claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The `chatgpt_account_id` claim, and `tokens.account_id` in auth.json.
    pub account_id: Option<String>,
    /// The `chatgpt_user_id` and `user_id` claims.
    pub user_id: Option<String>,
    /// The top-level `email` claim and the `https://api.openai.com/profile`
    /// claim's `email`.
    pub email: Option<String>,
    /// The `chatgpt_plan_type` claim.
    pub plan: Option<String>,
}

impl Identity {
    /// A complete identity: the given account and user, email
    /// `<user>@example.com` and plan `plus`.
    pub fn new(account: impl Into<String>, user: impl Into<String>) -> Self {
        let user = user.into();
        Self {
            account_id: Some(account.into()),
            email: Some(format!("{user}@example.com")),
            user_id: Some(user),
            plan: Some("plus".into()),
        }
    }

    /// This identity with another email.
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// This identity with another plan type.
    pub fn with_plan(mut self, plan: impl Into<String>) -> Self {
        self.plan = Some(plan.into());
        self
    }
}

/// Tokens issued by a login or a refresh. `Debug` never shows the token
/// strings.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    /// The JWT-shaped id token.
    pub id_token: String,
    /// The JWT-shaped access token.
    pub access_token: String,
    /// The refresh token now valid for the family (unchanged by a refresh
    /// when rotation is off).
    pub refresh_token: String,
    /// The identity's account id, if any.
    pub account_id: Option<String>,
    /// The login family these tokens belong to.
    pub family: u64,
}

impl IssuedTokens {
    /// A Codex-shaped `auth.json` document holding these tokens, with
    /// `last_refresh` set to now.
    pub fn to_auth_json(&self) -> Value {
        json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": self.id_token,
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "account_id": self.account_id,
            },
            "last_refresh": tokens::rfc3339(SystemTime::now()),
        })
    }
}

impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("family", &self.family)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

/// Why the authority refused a refresh token. Sent as a 401 whose body is
/// `{"error":{"code":<code>,"message":<message>}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshError {
    /// The token was already spent (`refresh_token_reused`).
    Reused,
    /// The token outlived the configured refresh-token lifetime
    /// (`refresh_token_expired`).
    Expired,
    /// The token's family was revoked (`refresh_token_invalidated`).
    Invalidated,
    /// The authority never issued this token (`invalid_grant`).
    Unknown,
}

impl RefreshError {
    /// The wire error code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Reused => "refresh_token_reused",
            Self::Expired => "refresh_token_expired",
            Self::Invalidated => "refresh_token_invalidated",
            Self::Unknown => "invalid_grant",
        }
    }

    /// The human-readable wire message.
    pub fn message(self) -> &'static str {
        match self {
            Self::Reused => {
                "Your refresh token has already been used to generate a new access token. Please try signing in again."
            }
            Self::Expired => "Your refresh token has expired. Please try signing in again.",
            Self::Invalidated => {
                "Your refresh token has been invalidated. Please try signing in again."
            }
            Self::Unknown => "The refresh token is invalid.",
        }
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for RefreshError {}

/// The outcome of an accepted refresh.
pub(crate) struct Refreshed {
    pub tokens: IssuedTokens,
    /// A new refresh token was issued (it goes into the response).
    pub rotated: bool,
    /// A spent token within the reuse interval: `tokens` repeats the
    /// successor issued the first time.
    pub replayed: bool,
}

/// Refresh policy, from the simulator configuration.
pub(crate) struct Policy {
    pub rotate_refresh_tokens: bool,
    pub family_revocation: bool,
    pub reuse_interval: Duration,
    pub refresh_token_lifetime: Option<Duration>,
    pub access_token_lifetime: Duration,
}

struct Family {
    identity: Identity,
    current: String,
    revoked: bool,
}

struct TokenRecord {
    family: u64,
    issued: Instant,
    /// When the token was spent and what it was exchanged for.
    spent: Option<(Instant, IssuedTokens)>,
}

/// All families and every refresh token ever issued.
pub(crate) struct Authority {
    pub policy: Policy,
    /// Family `n` is at index `n - 1`.
    families: Vec<Family>,
    tokens: HashMap<String, TokenRecord>,
    families_revoked: u64,
}

impl Authority {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            families: Vec::new(),
            tokens: HashMap::new(),
            families_revoked: 0,
        }
    }

    /// Starts a new family for `identity`.
    pub fn issue_login(&mut self, identity: &Identity) -> IssuedTokens {
        let family = self.families.len() as u64 + 1;
        let refresh_token = self.new_refresh_token(family);
        self.families.push(Family {
            identity: identity.clone(),
            current: refresh_token.clone(),
            revoked: false,
        });
        tracing::debug!(family, "login issued");
        self.mint(identity, family, refresh_token)
    }

    /// Exchanges `presented` for new tokens, enforcing rotation, reuse
    /// detection, the reuse interval and expiry.
    pub fn refresh(&mut self, presented: &str) -> Result<Refreshed, RefreshError> {
        let now = Instant::now();
        let record = self.tokens.get(presented).ok_or(RefreshError::Unknown)?;
        let family_id = record.family;
        let family = family_index(family_id)
            .and_then(|i| self.families.get(i))
            .ok_or(RefreshError::Unknown)?;
        if family.revoked {
            return Err(RefreshError::Invalidated);
        }
        if let Some((spent_at, successor)) = &record.spent {
            if now.duration_since(*spent_at) < self.policy.reuse_interval {
                tracing::debug!(family = family_id, "spent token within reuse interval");
                return Ok(Refreshed {
                    tokens: successor.clone(),
                    rotated: true,
                    replayed: true,
                });
            }
            let revoke = self.policy.family_revocation;
            tracing::info!(family = family_id, revoke, "refresh token reuse detected");
            if revoke {
                self.revoke_family(family_id);
            }
            return Err(RefreshError::Reused);
        }
        if let Some(lifetime) = self.policy.refresh_token_lifetime
            && now.duration_since(record.issued) >= lifetime
        {
            return Err(RefreshError::Expired);
        }

        let identity = family.identity.clone();
        let rotate = self.policy.rotate_refresh_tokens;
        let refresh_token = if rotate {
            self.new_refresh_token(family_id)
        } else {
            presented.to_owned()
        };
        let tokens = self.mint(&identity, family_id, refresh_token);
        if rotate {
            if let Some(record) = self.tokens.get_mut(presented) {
                record.spent = Some((now, tokens.clone()));
            }
            if let Some(family) = self.family_mut(family_id) {
                family.current = tokens.refresh_token.clone();
            }
            tracing::debug!(family = family_id, "refresh token rotated");
        }
        Ok(Refreshed {
            tokens,
            rotated: rotate,
            replayed: false,
        })
    }

    /// Revokes `family`; returns whether it was active until now.
    pub fn revoke_family(&mut self, family: u64) -> bool {
        match self.family_mut(family) {
            Some(f) if !f.revoked => {
                f.revoked = true;
                self.families_revoked += 1;
                tracing::info!(family, "family revoked");
                true
            }
            _ => false,
        }
    }

    /// The family that issued `refresh_token`, spent or not.
    pub fn family_of(&self, refresh_token: &str) -> Option<u64> {
        self.tokens.get(refresh_token).map(|r| r.family)
    }

    /// The family's latest refresh token (even if the family is revoked).
    pub fn current_refresh_token(&self, family: u64) -> Option<String> {
        let index = family_index(family)?;
        self.families.get(index).map(|f| f.current.clone())
    }

    /// Whether `family` exists and is revoked.
    pub fn is_revoked(&self, family: u64) -> bool {
        family_index(family)
            .and_then(|i| self.families.get(i))
            .is_some_and(|f| f.revoked)
    }

    pub fn families_issued(&self) -> u64 {
        self.families.len() as u64
    }

    pub fn families_revoked(&self) -> u64 {
        self.families_revoked
    }

    fn family_mut(&mut self, family: u64) -> Option<&mut Family> {
        self.families.get_mut(family_index(family)?)
    }

    fn new_refresh_token(&mut self, family: u64) -> String {
        let token = tokens::refresh_token(family);
        let record = TokenRecord {
            family,
            issued: Instant::now(),
            spent: None,
        };
        self.tokens.insert(token.clone(), record);
        token
    }

    fn mint(&self, identity: &Identity, family: u64, refresh_token: String) -> IssuedTokens {
        let now = SystemTime::now();
        let lifetime = self.policy.access_token_lifetime;
        IssuedTokens {
            id_token: tokens::jwt(&tokens::claims(identity, now, lifetime)),
            access_token: tokens::jwt(&tokens::claims(identity, now, lifetime)),
            refresh_token,
            account_id: identity.account_id.clone(),
            family,
        }
    }
}

fn family_index(family: u64) -> Option<usize> {
    usize::try_from(family.checked_sub(1)?).ok()
}
