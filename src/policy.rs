//! Pure decisions of the refresh transaction: no I/O, no clock.
//!
//! [`identity_verdict`] is the guarded-adoption rule (whose credentials may be adopted) and
//! [`decide`] is step 3 of the refresh transaction: given the snapshot the caller held, what is on
//! disk inside the lock, why a refresh was asked for and the time, what to do.

use std::time::SystemTime;

use crate::document::{AuthDocument, Freshness, Identity};

/// Why a refresh was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshReason {
    /// The held tokens are stale.
    Proactive,
    /// A request made with the held access token got HTTP 401.
    Unauthorized,
    /// The caller wants new tokens whatever their age.
    Forced,
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
    };
    if done {
        Decision::Adopt
    } else {
        Decision::Refresh { adopted: true }
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
}
