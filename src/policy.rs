//! Pure decisions of the refresh transaction: no I/O, no clock.
//!
//! [`identity_verdict`] is the guarded-adoption rule (whose credentials may be adopted) and
//! [`decide`] is step 3 of the refresh transaction: given the snapshot the caller held, what is on
//! disk inside the lock, why a refresh was asked for and the time, what to do.
//! [`decide_rejected_token`] is the same step for a caller that holds only the access token a
//! request was rejected with ([`RejectedToken`]).

use std::fmt;
use std::time::SystemTime;

use crate::document::{AuthDocument, Freshness, IdClaims, Identity};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Why a refresh was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshReason {
    /// The held tokens are stale.
    Proactive,
    /// A request made with the held access token got HTTP 401.
    Unauthorized,
    /// The caller wants new tokens whatever their age.
    Forced,
    /// A client presented the held refresh token to be rotated (the broker, for a Codex
    /// process): done as soon as the store holds another refresh token of the same identity,
    /// which the client gets instead; the held token is spent only while it is still current.
    Rotation,
}

/// Why two identities are not the same, or that they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same account and user, as far as can be proven.
    Compatible,
    /// Both account ids known and different.
    OtherAccount,
    /// Both user ids known and different.
    OtherUser,
    /// Same account, but only one side names its user.
    UnprovenUser,
    /// The held state has no identity, and the disk is not of its token lineage.
    OtherLineage,
    /// Nothing proves the identities the same.
    Unproven,
}

impl Verdict {
    /// Whether credentials may be adopted.
    pub fn is_compatible(self) -> bool {
        self == Verdict::Compatible
    }
}

/// The guarded-adoption rule: may the holder of `held` adopt `disk`? Rows are tried top to
/// bottom; the first that matches decides. `same_refresh_token` says whether both states carry
/// the same refresh token (the same lineage), used only when `held` has no identity at all.
pub fn identity_verdict(held: &Identity, disk: &Identity, same_refresh_token: bool) -> Verdict {
    let (a_s, a_d) = (held.account_id.as_deref(), disk.account_id.as_deref());
    let (u_s, u_d) = (held.user_id.as_deref(), disk.user_id.as_deref());
    match (a_s, a_d, u_s, u_d) {
        (Some(a), Some(b), _, _) if a != b => Verdict::OtherAccount,
        (_, _, Some(u), Some(v)) if u != v => Verdict::OtherUser,
        (Some(_), Some(_), Some(_), Some(_)) => Verdict::Compatible,
        (Some(_), Some(_), None, None) => Verdict::Compatible,
        (Some(_), Some(_), _, _) => Verdict::UnprovenUser,
        (_, _, Some(_), Some(_)) => Verdict::Compatible,
        (None, _, None, _) if same_refresh_token => Verdict::Compatible,
        (None, _, None, _) => Verdict::OtherLineage,
        _ => Verdict::Unproven,
    }
}

/// [`identity_verdict`] for two documents.
pub fn documents_verdict(held: &AuthDocument, disk: &AuthDocument) -> Verdict {
    let same_lineage = match (held.refresh_token(), disk.refresh_token()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    identity_verdict(&held.identity(), &disk.identity(), same_lineage)
}

/// What the refresh transaction does, decided inside the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The disk holds no tokens: logged out elsewhere. Write nothing.
    LoggedOut,
    /// Another account or user is logged in. Write nothing, spend nothing.
    IdentityChanged(Verdict),
    /// Another process already moved on: use the disk state, no network call.
    Adopt,
    /// Spend the refresh token of the disk state. `adopted` says whether the disk state differs
    /// from the held one (it was adopted first, then refreshed).
    Refresh {
        /// The disk state differs from the held one.
        adopted: bool,
    },
}

/// Step 3 of the refresh transaction. `held` is the snapshot the caller used (for
/// [`RefreshReason::Unauthorized`], the one whose access token got the 401); `disk` is what the
/// file holds now, read inside the lock.
pub fn decide(
    held: &AuthDocument,
    disk: Option<&AuthDocument>,
    reason: RefreshReason,
    now: SystemTime,
    freshness: &Freshness,
) -> Decision {
    let Some(disk) = disk.filter(|d| d.tokens.is_some()) else {
        return Decision::LoggedOut;
    };
    let verdict = documents_verdict(held, disk);
    if !verdict.is_compatible() {
        return Decision::IdentityChanged(verdict);
    }
    if held.same_credentials(disk) {
        return Decision::Refresh { adopted: false };
    }
    let done = match reason {
        RefreshReason::Proactive => !disk.is_stale(now, freshness),
        RefreshReason::Unauthorized => disk.access_token() != held.access_token(),
        RefreshReason::Forced => false,
        RefreshReason::Rotation => disk.refresh_token() != held.refresh_token(),
    };
    if done {
        Decision::Adopt
    } else {
        Decision::Refresh { adopted: true }
    }
}

/// The access token a request was rejected with (HTTP 401), for a caller that holds that token
/// rather than the [`AuthSnapshot`](crate::AuthSnapshot) it came from: a token its program got
/// elsewhere (a constructor argument, a request it made itself).
///
/// Whose token it is comes from its own claims when it is a JWT (ChatGPT access tokens carry
/// `["https://api.openai.com/auth"].chatgpt_account_id` and `.chatgpt_user_id`), or from an
/// account id the caller names. That identity is held to the guarded-adoption rule as a
/// snapshot's is ([`rejected_token_verdict`]), so that another account's or user's login in the
/// store is never adopted. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct RejectedToken {
    access_token: Secret,
    identity: Identity,
}

impl RejectedToken {
    /// The rejected `access_token`, its identity read from its claims; `account_id` names the
    /// account when the claims do not (an opaque token), or must agree with them.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when `access_token` is not a
    /// token string (empty, whitespace or control characters), when `account_id` is empty, or
    /// when it names another account than the token's claims.
    pub fn new(access_token: &str, account_id: Option<&str>) -> Result<Self> {
        if !crate::authority::is_token_string(access_token) {
            return Err(Error::invalid_input(
                "the rejected access token is empty or holds whitespace or control characters",
            ));
        }
        let claims = IdClaims::from_jwt(access_token);
        let account_id = match (claims.account_id, account_id) {
            (_, Some("")) => {
                return Err(Error::invalid_input("account_id is empty"));
            }
            (Some(claimed), Some(given)) if claimed != given => {
                return Err(Error::invalid_input(
                    "account_id names another account than the access token's own claims",
                ));
            }
            (claimed, given) => claimed.or_else(|| given.map(str::to_owned)),
        };
        Ok(Self {
            access_token: Secret::new(access_token),
            identity: Identity {
                account_id,
                user_id: claims.user_id,
            },
        })
    }

    /// The rejected access token.
    pub fn access_token(&self) -> &Secret {
        &self.access_token
    }

    /// Whose token it is, as far as its claims and the caller say.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

impl fmt::Debug for RejectedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectedToken")
            .field("access_token", &self.access_token)
            .field("identity", &self.identity)
            .finish()
    }
}

/// The guarded-adoption rule for a [`RejectedToken`]: may its holder adopt `disk`? The rule of
/// [`identity_verdict`], where the lineage is the access token itself (the holder has no refresh
/// token to compare): a store that holds the very token that was rejected is that token's state,
/// whatever the claims leave unproven, unless both sides name different accounts or users.
pub fn rejected_token_verdict(rejected: &RejectedToken, disk: &AuthDocument) -> Verdict {
    let same_token = disk.access_token() == Some(&rejected.access_token);
    match identity_verdict(&rejected.identity, &disk.identity(), same_token) {
        verdict @ (Verdict::OtherAccount | Verdict::OtherUser) => verdict,
        _ if same_token => Verdict::Compatible,
        verdict => verdict,
    }
}

/// [`decide`] for a caller that holds only the [`RejectedToken`] (the reason is always
/// [`RefreshReason::Unauthorized`]): logged out and another identity as there; a store that
/// holds another access token of a compatible identity is adopted (no network call); one that
/// still holds the rejected token is refreshed.
pub fn decide_rejected_token(rejected: &RejectedToken, disk: Option<&AuthDocument>) -> Decision {
    let Some(disk) = disk.filter(|d| d.tokens.is_some()) else {
        return Decision::LoggedOut;
    };
    let verdict = rejected_token_verdict(rejected, disk);
    if !verdict.is_compatible() {
        return Decision::IdentityChanged(verdict);
    }
    if disk.access_token() == Some(&rejected.access_token) {
        Decision::Refresh { adopted: false }
    } else {
        Decision::Adopt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::unsigned_jwt;
    use rstest::rstest;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    fn id(account: Option<&str>, user: Option<&str>) -> Identity {
        Identity {
            account_id: account.map(str::to_owned),
            user_id: user.map(str::to_owned),
        }
    }

    #[rstest]
    #[case::other_account(
        id(Some("a"), Some("u")),
        id(Some("b"), Some("u")),
        false,
        Verdict::OtherAccount
    )]
    #[case::other_account_even_same_lineage(
        id(Some("a"), None),
        id(Some("b"), None),
        true,
        Verdict::OtherAccount
    )]
    #[case::other_user_same_account(
        id(Some("a"), Some("u")),
        id(Some("a"), Some("v")),
        false,
        Verdict::OtherUser
    )]
    #[case::other_user_no_account(
        id(None, Some("u")),
        id(None, Some("v")),
        true,
        Verdict::OtherUser
    )]
    #[case::same_account_same_user(
        id(Some("a"), Some("u")),
        id(Some("a"), Some("u")),
        false,
        Verdict::Compatible
    )]
    #[case::same_account_users_unknown(
        id(Some("a"), None),
        id(Some("a"), None),
        false,
        Verdict::Compatible
    )]
    #[case::same_account_only_held_user(
        id(Some("a"), Some("u")),
        id(Some("a"), None),
        false,
        Verdict::UnprovenUser
    )]
    #[case::same_account_only_disk_user(
        id(Some("a"), None),
        id(Some("a"), Some("u")),
        true,
        Verdict::UnprovenUser
    )]
    #[case::legacy_gains_account(
        id(None, Some("u")),
        id(Some("a"), Some("u")),
        false,
        Verdict::Compatible
    )]
    #[case::legacy_loses_account(
        id(Some("a"), Some("u")),
        id(None, Some("u")),
        false,
        Verdict::Compatible
    )]
    #[case::no_account_either_side(
        id(None, Some("u")),
        id(None, Some("u")),
        false,
        Verdict::Compatible
    )]
    #[case::no_identity_same_lineage(
        id(None, None),
        id(Some("a"), Some("u")),
        true,
        Verdict::Compatible
    )]
    #[case::no_identity_both_same_lineage(
        id(None, None),
        id(None, None),
        true,
        Verdict::Compatible
    )]
    #[case::no_identity_other_lineage(id(None, None), id(None, None), false, Verdict::OtherLineage)]
    #[case::no_identity_other_lineage_with_disk_identity(
        id(None, None),
        id(Some("a"), Some("u")),
        false,
        Verdict::OtherLineage
    )]
    #[case::held_account_only_disk_nothing(
        id(Some("a"), None),
        id(None, None),
        true,
        Verdict::Unproven
    )]
    #[case::held_user_only_disk_nothing(
        id(None, Some("u")),
        id(None, None),
        true,
        Verdict::Unproven
    )]
    #[case::held_account_disk_user_only(
        id(Some("a"), None),
        id(None, Some("u")),
        false,
        Verdict::Unproven
    )]
    #[case::held_user_disk_account_only(
        id(None, Some("u")),
        id(Some("a"), None),
        false,
        Verdict::Unproven
    )]
    fn identity_table(
        #[case] held: Identity,
        #[case] disk: Identity,
        #[case] same_refresh_token: bool,
        #[case] expected: Verdict,
    ) {
        assert_eq!(identity_verdict(&held, &disk, same_refresh_token), expected);
    }

    const NOW: u64 = 1_800_000_000;

    /// A document for account `acct`/user `user` whose access token expires at `exp` (seconds
    /// since the epoch) and whose token strings end in `generation`.
    fn doc(user: &str, generation: u32, exp: u64) -> AuthDocument {
        let claims = json!({"https://api.openai.com/auth": {"chatgpt_account_id": "acct", "chatgpt_user_id": user}});
        let text = json!({
            "tokens": {
                "id_token": unsigned_jwt(&claims),
                "access_token": unsigned_jwt(&json!({"exp": exp, "g": generation})),
                "refresh_token": format!("rt-{generation}"),
                "account_id": "acct"
            }
        });
        AuthDocument::parse(text.to_string().as_bytes()).unwrap()
    }

    fn run(held: &AuthDocument, disk: Option<&AuthDocument>, reason: RefreshReason) -> Decision {
        let now = UNIX_EPOCH + Duration::from_secs(NOW);
        decide(held, disk, reason, now, &Freshness::default())
    }

    const STALE: u64 = NOW + 60;
    const FRESH: u64 = NOW + 3600;

    #[rstest]
    #[case::absent_disk_is_logged_out(None, RefreshReason::Proactive, Decision::LoggedOut)]
    #[case::forced_on_absent_disk_is_logged_out(None, RefreshReason::Forced, Decision::LoggedOut)]
    #[case::other_user_is_identity_change(
        Some(doc("other", 2, FRESH)),
        RefreshReason::Proactive,
        Decision::IdentityChanged(Verdict::OtherUser)
    )]
    #[case::other_user_even_when_forced(
        Some(doc("other", 1, STALE)),
        RefreshReason::Forced,
        Decision::IdentityChanged(Verdict::OtherUser)
    )]
    #[case::unchanged_disk_refreshes(Some(doc("u", 1, STALE)), RefreshReason::Proactive, Decision::Refresh { adopted: false })]
    #[case::unchanged_disk_unauthorized_refreshes(Some(doc("u", 1, STALE)), RefreshReason::Unauthorized, Decision::Refresh { adopted: false })]
    #[case::unchanged_disk_forced_refreshes(Some(doc("u", 1, STALE)), RefreshReason::Forced, Decision::Refresh { adopted: false })]
    #[case::newer_fresh_disk_is_adopted(
        Some(doc("u", 2, FRESH)),
        RefreshReason::Proactive,
        Decision::Adopt
    )]
    #[case::newer_but_stale_disk_is_adopted_then_refreshed(Some(doc("u", 2, STALE)), RefreshReason::Proactive, Decision::Refresh { adopted: true })]
    #[case::unauthorized_adopts_another_access_token(
        Some(doc("u", 2, STALE)),
        RefreshReason::Unauthorized,
        Decision::Adopt
    )]
    #[case::forced_refreshes_from_newer_disk(Some(doc("u", 2, FRESH)), RefreshReason::Forced, Decision::Refresh { adopted: true })]
    #[case::rotation_of_the_current_token_refreshes(Some(doc("u", 1, STALE)), RefreshReason::Rotation, Decision::Refresh { adopted: false })]
    #[case::rotation_adopts_a_successor_even_stale(
        Some(doc("u", 2, STALE)),
        RefreshReason::Rotation,
        Decision::Adopt
    )]
    #[case::rotation_never_adopts_another_user(
        Some(doc("other", 2, FRESH)),
        RefreshReason::Rotation,
        Decision::IdentityChanged(Verdict::OtherUser)
    )]
    fn decision_table(
        #[case] disk: Option<AuthDocument>,
        #[case] reason: RefreshReason,
        #[case] expected: Decision,
    ) {
        let held = doc("u", 1, STALE);
        assert_eq!(run(&held, disk.as_ref(), reason), expected);
    }

    #[test]
    fn disk_without_tokens_is_logged_out() {
        let api_key_only = AuthDocument::parse(br#"{"OPENAI_API_KEY":"sk-x"}"#).unwrap();
        let held = doc("u", 1, STALE);
        assert_eq!(
            run(&held, Some(&api_key_only), RefreshReason::Forced),
            Decision::LoggedOut
        );
    }

    #[test]
    fn unauthorized_with_same_access_token_but_new_refresh_token_refreshes_from_disk() {
        let held = doc("u", 1, STALE);
        let mut disk = held.clone();
        if let Some(tokens) = disk.tokens.as_mut() {
            tokens.refresh_token = crate::secret::Secret::new("rt-moved");
        }
        assert_eq!(
            run(&held, Some(&disk), RefreshReason::Unauthorized),
            Decision::Refresh { adopted: true }
        );
    }

    #[test]
    fn rotation_with_the_same_refresh_token_but_another_access_token_refreshes() {
        let held = doc("u", 1, STALE);
        let mut disk = held.clone();
        if let Some(tokens) = disk.tokens.as_mut() {
            tokens.access_token = crate::secret::Secret::new("at-rewritten");
        }
        assert_eq!(
            run(&held, Some(&disk), RefreshReason::Rotation),
            Decision::Refresh { adopted: true }
        );
    }

    /// An access token of `who` (account, user), generation `generation`, as ChatGPT's carry
    /// their identity.
    fn access_token(account: Option<&str>, user: Option<&str>, generation: u32) -> String {
        let mut auth = serde_json::Map::new();
        if let Some(account) = account {
            auth.insert("chatgpt_account_id".into(), json!(account));
        }
        if let Some(user) = user {
            auth.insert("chatgpt_user_id".into(), json!(user));
        }
        unsigned_jwt(&json!({"exp": FRESH, "g": generation, "https://api.openai.com/auth": auth}))
    }

    /// `doc(user, generation, exp)` of account `acct`, with the access token `token`.
    fn doc_with_token(user: &str, generation: u32, token: &str) -> AuthDocument {
        let mut document = doc(user, generation, FRESH);
        if let Some(tokens) = document.tokens.as_mut() {
            tokens.access_token = crate::secret::Secret::new(token);
        }
        document
    }

    #[test]
    fn a_rejected_token_names_its_identity_from_its_claims_or_the_caller() {
        let token = access_token(Some("acct"), Some("u"), 1);
        let rejected = RejectedToken::new(&token, None).unwrap();
        assert_eq!(rejected.identity(), &id(Some("acct"), Some("u")));
        assert_eq!(
            RejectedToken::new(&token, Some("acct")).unwrap().identity(),
            &id(Some("acct"), Some("u"))
        );
        assert_eq!(
            RejectedToken::new("opaque-token", Some("acct"))
                .unwrap()
                .identity(),
            &id(Some("acct"), None)
        );
        assert_eq!(
            RejectedToken::new("opaque-token", None).unwrap().identity(),
            &id(None, None)
        );
        let user_only = access_token(None, Some("u"), 1);
        assert_eq!(
            RejectedToken::new(&user_only, Some("acct"))
                .unwrap()
                .identity(),
            &id(Some("acct"), Some("u"))
        );
        for (token, account) in [
            (token.as_str(), Some("other")),
            ("", None),
            ("two words", None),
            ("opaque", Some("")),
        ] {
            let error = RejectedToken::new(token, account).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidInput);
        }
        let shown = format!("{rejected:?}");
        assert!(
            !shown.contains(&token) && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[rstest]
    #[case::disk_holds_the_rejected_token(
        (Some("acct"), Some("u")), None, "u", true, Decision::Refresh { adopted: false }
    )]
    #[case::newer_token_of_the_same_user_is_adopted(
        (Some("acct"), Some("u")), None, "u", false, Decision::Adopt
    )]
    #[case::another_user_of_the_account_is_refused(
        (Some("acct"), Some("u")), None, "other", false,
        Decision::IdentityChanged(Verdict::OtherUser)
    )]
    #[case::another_account_is_refused(
        (Some("acct-2"), Some("u")), None, "u", false,
        Decision::IdentityChanged(Verdict::OtherAccount)
    )]
    #[case::opaque_token_on_disk_is_its_own_lineage(
        (None, None), None, "u", true, Decision::Refresh { adopted: false }
    )]
    #[case::opaque_token_not_on_disk_proves_nothing(
        (None, None), None, "u", false, Decision::IdentityChanged(Verdict::OtherLineage)
    )]
    #[case::opaque_token_with_its_account_cannot_prove_the_user(
        (None, None), Some("acct"), "u", false, Decision::IdentityChanged(Verdict::UnprovenUser)
    )]
    #[case::opaque_token_with_its_account_still_on_disk(
        (None, None), Some("acct"), "u", true, Decision::Refresh { adopted: false }
    )]
    #[case::opaque_token_with_another_account_on_disk(
        (None, None), Some("acct-2"), "u", true, Decision::IdentityChanged(Verdict::OtherAccount)
    )]
    fn rejected_token_decisions(
        #[case] claims: (Option<&str>, Option<&str>),
        #[case] account: Option<&str>,
        #[case] disk_user: &str,
        #[case] disk_holds_it: bool,
        #[case] expected: Decision,
    ) {
        let token = match claims {
            (None, None) => "opaque-access-token".to_owned(),
            (a, u) => access_token(a, u, 1),
        };
        let rejected = RejectedToken::new(&token, account).unwrap();
        let disk = if disk_holds_it {
            doc_with_token(disk_user, 1, &token)
        } else {
            doc(disk_user, 2, FRESH)
        };
        assert_eq!(decide_rejected_token(&rejected, Some(&disk)), expected);
    }

    #[test]
    fn a_rejected_token_with_nothing_on_disk_is_logged_out() {
        let rejected = RejectedToken::new(&access_token(Some("acct"), Some("u"), 1), None).unwrap();
        assert_eq!(decide_rejected_token(&rejected, None), Decision::LoggedOut);
        let api_key_only = AuthDocument::parse(br#"{"OPENAI_API_KEY":"sk-x"}"#).unwrap();
        assert_eq!(
            decide_rejected_token(&rejected, Some(&api_key_only)),
            Decision::LoggedOut
        );
    }
}
