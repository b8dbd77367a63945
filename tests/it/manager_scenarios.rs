//! The refresh transaction, scenario by scenario, against a real local HTTP server (wiremock).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use authstore::authority::AuthorityConfig;
use authstore::document::{Freshness, unsigned_jwt};
use authstore::error::{ErrorKind, NetworkFailure, ReloginReason};
use authstore::store::{StoreConfig, StoreOptions};
use authstore::{AuthManager, ManagerOptions, RefreshOutcome};
use authstore_testkit::home::Home;
use authstore_testkit::*;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const HOUR: i64 = 3600;

/// A temporary Codex home (the testkit's [`Home`]), a wiremock token endpoint, and a clock the
/// test moves by hand.
struct Setup {
    home: Home,
    server: MockServer,
    clock: TestClock,
}

impl Setup {
    async fn new() -> Self {
        Self {
            home: Home::new(),
            server: MockServer::start().await,
            clock: TestClock::default(),
        }
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    fn options(&self) -> ManagerOptions {
        ManagerOptions::default()
            .authority(
                AuthorityConfig::default()
                    .token_url(format!("{}/oauth/token", self.server.uri()))
                    .request_timeout(Duration::from_secs(5)),
            )
            .store(StoreOptions::default().lock_deadline(Duration::from_secs(10)))
            .clock(self.clock.clock())
            .reuse_settle(Duration::from_millis(300))
    }

    fn manager(&self) -> AuthManager {
        AuthManager::new(self.home(), self.options()).unwrap()
    }

    /// The token endpoint answers with fresh tokens of `who`, generation `generation`.
    async fn answer_with_tokens(&self, who: Who, generation: u32) {
        let fresh = document_json(who, generation, self.clock.now(), HOUR, true);
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id_token": fresh["tokens"]["id_token"],
                "access_token": fresh["tokens"]["access_token"],
                "refresh_token": fresh["tokens"]["refresh_token"],
            })))
            .mount(&self.server)
            .await;
    }

    async fn requests(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .len()
    }

    /// Writes `who`'s generation-1 tokens that expire in a minute (stale), and returns the
    /// manager's snapshot of them taken while they were still fresh.
    async fn hold_soon_stale(&self, who: Who) -> (AuthManager, Arc<authstore::AuthSnapshot>) {
        write_auth(
            self.home(),
            &document_json(who, 1, self.clock.now(), 60 + 301, true),
        );
        let manager = self.manager();
        let held = manager.auth().await.expect("fresh at first");
        self.clock.advance(Duration::from_secs(62));
        (manager, held)
    }
}

#[tokio::test]
async fn stale_token_adopts_newer_auth_written_by_another_process_without_calling_the_endpoint() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 99).await;
    let (manager, held) = setup.hold_soon_stale(ALICE).await;
    let newer = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    write_auth(setup.home(), &newer);

    let got = manager.unauthorized(&held).await.unwrap();
    assert_eq!(got.document(), &parse(&newer));
    let got = manager.auth().await.unwrap();
    assert_eq!(got.document(), &parse(&newer));
    assert_eq!(setup.requests().await, 0);
}

#[tokio::test]
async fn stale_token_refreshes_once_and_keeps_unknown_fields() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 2).await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;

    let got = manager.auth().await.unwrap();
    assert_eq!(setup.requests().await, 1);
    let disk = read_auth(setup.home()).unwrap();
    assert!(
        disk["tokens"]["refresh_token"] == "rt-user-alice-2",
        "the rotated refresh token is on disk"
    );
    assert_eq!(disk["x_custom"], json!({"kept": true}));
    assert_eq!(disk["tokens"]["x_token_extra"], "kept");
    assert_eq!(got.document(), &parse(&disk));
    let body: Value = setup.server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    assert_eq!(
        body,
        json!({"client_id": "app_EMoamEEZ73f0CkXaXp7hrann", "grant_type": "refresh_token", "refresh_token": "rt-user-alice-1"})
    );
}

#[tokio::test]
async fn a_different_user_in_the_same_account_is_never_adopted() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 2).await;
    let (manager, held) = setup.hold_soon_stale(ALICE).await;
    let bob = document_json(BOB_SAME_ACCOUNT, 7, setup.clock.now(), HOUR, true);
    write_auth(setup.home(), &bob);

    let error = manager.auth().await.unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ReloginRequired(ReloginReason::IdentityChanged)
    );
    let error = manager.unauthorized(&held).await.unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ReloginRequired(ReloginReason::IdentityChanged)
    );
    assert_eq!(setup.requests().await, 0);
    assert!(
        read_auth(setup.home()).unwrap() == bob,
        "the disk still holds the other user's login"
    );

    manager.reset();
    assert_eq!(manager.auth().await.unwrap().document(), &parse(&bob));
}

#[tokio::test]
async fn legacy_auth_without_account_id_adopts_same_user_auth_that_gained_it() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 99).await;
    let legacy = Who {
        account: None,
        user: ALICE.user,
    };
    let (manager, held) = setup.hold_soon_stale(legacy).await;
    let gained = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    write_auth(setup.home(), &gained);

    let got = manager.unauthorized(&held).await.unwrap();
    assert_eq!(got.account_id(), Some("acct-1"));
    assert_eq!(setup.requests().await, 0);
}

#[tokio::test]
async fn auth_with_account_id_adopts_same_user_auth_that_lost_it() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 99).await;
    let (manager, held) = setup.hold_soon_stale(ALICE).await;
    let legacy = Who {
        account: None,
        user: ALICE.user,
    };
    let lost = document_json(legacy, 2, setup.clock.now(), HOUR, false);
    write_auth(setup.home(), &lost);

    let got = manager.unauthorized(&held).await.unwrap();
    assert_eq!(got.document(), &parse(&lost));
    assert_eq!(setup.requests().await, 0);
}

#[tokio::test]
async fn auth_without_identity_claims_still_refreshes_when_the_disk_is_unchanged() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(NOBODY, 2).await;
    let (manager, _held) = setup.hold_soon_stale(NOBODY).await;

    manager.auth().await.unwrap();
    assert_eq!(setup.requests().await, 1);
    assert!(
        refresh_token_on_disk(setup.home()).as_deref() == Some("rt-anon-2"),
        "not the expected refresh token on disk"
    );
}

/// Writes newer auth to disk (as a process that spent the token first would), then answers
/// `refresh_token_reused`.
struct WriteThenReused {
    home: std::path::PathBuf,
    newer: Value,
}

impl Respond for WriteThenReused {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        write_auth(&self.home, &self.newer);
        reused()
    }
}

fn reused() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "refresh_token_reused"}}))
}

#[tokio::test]
async fn refresh_token_reused_recovers_when_the_disk_moved_on_meanwhile() {
    let setup = Setup::new().await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    let newer = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    Mock::given(method("POST"))
        .respond_with(WriteThenReused {
            home: setup.home().to_owned(),
            newer: newer.clone(),
        })
        .mount(&setup.server)
        .await;

    let got = manager.auth().await.unwrap();
    assert_eq!(got.document(), &parse(&newer));
    assert_eq!(manager.stats().reuse_recovered, 1);
    assert_eq!(setup.requests().await, 1);
}

#[tokio::test]
async fn refresh_token_reused_with_an_unchanged_disk_requires_relogin() {
    let setup = Setup::new().await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    Mock::given(method("POST"))
        .respond_with(reused())
        .mount(&setup.server)
        .await;
    let before = std::fs::read(setup.home().join("auth.json")).unwrap();

    let error = manager.auth().await.unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ReloginRequired(ReloginReason::Reused)
    );
    assert!(
        std::fs::read(setup.home().join("auth.json")).unwrap() == before,
        "the file changed"
    );
    // The dead token is not sent again.
    let error = manager.auth().await.unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ReloginRequired(ReloginReason::Reused)
    );
    assert_eq!(setup.requests().await, 1);
}

#[tokio::test]
async fn reuse_recovery_waits_for_a_process_that_commits_after_the_answer() {
    let setup = Setup::new().await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    Mock::given(method("POST"))
        .respond_with(reused())
        .mount(&setup.server)
        .await;
    // Like Codex: it spent the token outside the lock and commits a moment later.
    let newer = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    let home = setup.home().to_owned();
    let committed = newer.clone();
    let late_writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let temp = home.join("codex.tmp");
        std::fs::write(&temp, serde_json::to_vec_pretty(&committed).unwrap()).unwrap();
        std::fs::rename(temp, home.join("auth.json")).unwrap();
    });

    let got = manager.auth().await.unwrap();
    late_writer.join().unwrap();
    assert_eq!(got.document(), &parse(&newer));
}

#[tokio::test]
async fn unauthorized_recovery_uses_the_original_snapshot_even_when_the_cache_changed() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 3).await;
    write_auth(
        setup.home(),
        &document_json(ALICE, 1, setup.clock.now(), HOUR, true),
    );
    let manager = setup.manager();
    let first = manager.auth().await.unwrap();
    // Another process refreshes; this manager's cache follows.
    let second_json = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    write_auth(setup.home(), &second_json);
    assert!(
        eventually(Duration::from_secs(5), async || {
            manager.auth().await.unwrap().document() == &parse(&second_json)
        })
        .await
    );

    // A request made with the first snapshot's token got 401: the disk already has another
    // access token, so it is adopted without a network call.
    let got = manager.unauthorized(&first).await.unwrap();
    assert_eq!(got.document(), &parse(&second_json));
    assert_eq!(setup.requests().await, 0);

    // The current token got 401 too: now a refresh is due.
    let second = manager.auth().await.unwrap();
    manager.unauthorized(&second).await.unwrap();
    assert_eq!(setup.requests().await, 1);
    assert!(
        refresh_token_on_disk(setup.home()).as_deref() == Some("rt-user-alice-3"),
        "not the expected refresh token on disk"
    );
}

#[tokio::test]
async fn a_missing_refresh_token_in_the_response_keeps_the_old_one() {
    let setup = Setup::new().await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    let fresh = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": fresh["tokens"]["access_token"],
        })))
        .mount(&setup.server)
        .await;

    let got = manager.auth().await.unwrap();
    assert!(
        refresh_token_on_disk(setup.home()).as_deref() == Some("rt-user-alice-1"),
        "not the expected refresh token on disk"
    );
    assert!(
        got.access_token().unwrap().expose() == fresh["tokens"]["access_token"],
        "not the new access token"
    );
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried_with_the_same_token() {
    let setup = Setup::new().await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&setup.server)
        .await;

    for _ in 0..3 {
        let error = manager.auth().await.unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::ReloginRequired(ReloginReason::Rejected)
        );
    }
    assert_eq!(setup.requests().await, 1);

    // A new login on disk is a new state: it is tried.
    setup.server.reset().await;
    setup.answer_with_tokens(ALICE, 5).await;
    write_auth(
        setup.home(),
        &document_json(ALICE, 4, setup.clock.now(), 60, true),
    );
    assert!(
        eventually(Duration::from_secs(5), async || manager
            .auth()
            .await
            .is_ok())
        .await
    );
    assert_eq!(setup.requests().await, 1);
}

#[tokio::test]
async fn transient_failures_leave_the_disk_untouched() {
    let setup = Setup::new().await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&setup.server)
        .await;
    let before = std::fs::read(setup.home().join("auth.json")).unwrap();

    let error = manager.auth().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert!(
        std::fs::read(setup.home().join("auth.json")).unwrap() == before,
        "the file changed"
    );
    // A 500 may come after the authority spent the token: not retried at once, but on the
    // next call.
    assert_eq!(setup.requests().await, 1);
    manager.auth().await.unwrap_err();
    assert_eq!(setup.requests().await, 2);
}

#[tokio::test]
async fn an_unavailable_authority_is_retried_a_bounded_number_of_times() {
    let setup = Setup::new().await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&setup.server)
        .await;
    setup.answer_with_tokens(ALICE, 2).await;

    manager.auth().await.unwrap();
    assert_eq!(setup.requests().await, 3);
    assert!(
        refresh_token_on_disk(setup.home()).as_deref() == Some("rt-user-alice-2"),
        "not the expected refresh token on disk"
    );

    // Always unavailable: three attempts, then a transient error.
    setup.server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&setup.server)
        .await;
    let error = manager.force_refresh().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert_eq!(setup.requests().await, 3);
}

#[tokio::test]
async fn logout_elsewhere_is_never_undone_by_a_refresh() {
    let setup = Setup::new().await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    let fresh = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(300))
                .set_body_json(json!({
                    "id_token": fresh["tokens"]["id_token"],
                    "access_token": fresh["tokens"]["access_token"],
                    "refresh_token": fresh["tokens"]["refresh_token"],
                })),
        )
        .mount(&setup.server)
        .await;

    // A logout that starts while the refresh is on the wire waits for it, then removes the file.
    let refreshing = tokio::spawn({
        let manager = manager.clone();
        async move { manager.auth().await }
    });
    assert!(eventually(Duration::from_secs(5), async || setup.requests().await == 1).await);
    let other = setup.manager();
    assert!(other.logout(false).await.unwrap());
    refreshing.await.unwrap().unwrap();
    assert!(read_auth(setup.home()).is_none());

    // The manager that refreshed now sees the logout, and never writes again.
    let error = manager.force_refresh().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotLoggedIn);
    assert!(read_auth(setup.home()).is_none());
    assert_eq!(setup.requests().await, 1);
}

#[tokio::test]
async fn a_hundred_concurrent_calls_on_a_stale_token_make_one_request() {
    let setup = Setup::new().await;
    let fresh = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    Mock::given(method("POST"))
        .and(body_partial_json(
            json!({"refresh_token": "rt-user-alice-1"}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(100))
                .set_body_json(json!({
                    "id_token": fresh["tokens"]["id_token"],
                    "access_token": fresh["tokens"]["access_token"],
                    "refresh_token": fresh["tokens"]["refresh_token"],
                })),
        )
        .mount(&setup.server)
        .await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.auth().await })
        })
        .collect();
    for task in tasks {
        let got = task.await.unwrap().unwrap();
        assert!(got.document().refresh_token().unwrap().expose() == "rt-user-alice-2");
    }
    assert_eq!(setup.requests().await, 1);
    assert_eq!(manager.stats().transactions, 1);
}

#[tokio::test]
async fn a_long_lived_manager_follows_logout_login_and_refresh_by_others_without_syscalls_meanwhile()
 {
    let setup = Setup::new().await;
    let alice1 = document_json(ALICE, 1, setup.clock.now(), HOUR, true);
    write_auth(setup.home(), &alice1);
    let manager = setup.manager();
    assert!(manager.is_watching());
    manager.auth().await.unwrap();

    // Nothing changes: ten thousand calls, not one read or stat.
    let before = manager.stats();
    for _ in 0..10_000 {
        manager.auth().await.unwrap();
    }
    let after = manager.stats();
    assert_eq!(after.disk_reads, before.disk_reads);
    assert_eq!(after.metadata_checks, 0);

    // Another process refreshes.
    let alice2 = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    let other = setup.manager();
    other.login(parse(&alice2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || {
            manager
                .auth()
                .await
                .is_ok_and(|s| s.document() == &parse(&alice2))
        })
        .await
    );
    // Another process logs out.
    other.logout(false).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || {
            manager
                .auth()
                .await
                .is_err_and(|e| e.kind() == ErrorKind::NotLoggedIn)
        })
        .await
    );
    // Another process logs in.
    let alice3 = document_json(ALICE, 3, setup.clock.now(), HOUR, true);
    other.login(parse(&alice3)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || {
            manager
                .auth()
                .await
                .is_ok_and(|s| s.document() == &parse(&alice3))
        })
        .await
    );
    assert_eq!(setup.requests().await, 0);
}

#[tokio::test]
async fn without_a_watch_each_call_costs_at_most_one_stat() {
    let setup = Setup::new().await;
    let alice1 = document_json(ALICE, 1, setup.clock.now(), HOUR, true);
    write_auth(setup.home(), &alice1);
    let manager = AuthManager::new(setup.home(), setup.options().watch(false)).unwrap();
    assert!(!manager.is_watching());
    manager.auth().await.unwrap();
    let before = manager.stats();
    for _ in 0..100 {
        manager.auth().await.unwrap();
    }
    let after = manager.stats();
    assert_eq!(after.disk_reads, before.disk_reads);
    assert_eq!(after.metadata_checks - before.metadata_checks, 100);

    let alice2 = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    write_auth(setup.home(), &alice2);
    assert_eq!(manager.auth().await.unwrap().document(), &parse(&alice2));
}

#[tokio::test]
async fn refresh_says_fresh_when_no_refresh_was_needed() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 99).await;
    let login = document_json(ALICE, 1, setup.clock.now(), HOUR, true);
    write_auth(setup.home(), &login);
    let manager = setup.manager();

    let (got, outcome) = manager.refresh(false).await.unwrap();
    assert_eq!(outcome, RefreshOutcome::Fresh);
    assert_eq!(got.document(), &parse(&login));
    // Fresh credentials another process wrote are read, not adopted by a transaction.
    let newer = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    write_auth(setup.home(), &newer);
    assert!(
        eventually(Duration::from_secs(5), async || {
            let (got, outcome) = manager.refresh(false).await.unwrap();
            assert_eq!(outcome, RefreshOutcome::Fresh);
            got.document() == &parse(&newer)
        })
        .await
    );
    assert_eq!(setup.requests().await, 0);
    assert_eq!(manager.stats().transactions, 0);
}

#[tokio::test]
async fn refresh_says_refreshed_when_it_spent_the_refresh_token() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 2).await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;

    let (got, outcome) = manager.refresh(false).await.unwrap();
    assert_eq!(outcome, RefreshOutcome::Refreshed);
    assert_eq!(setup.requests().await, 1);
    assert!(
        got.document().refresh_token().unwrap().expose() == "rt-user-alice-2",
        "not the rotated refresh token"
    );
    // Fresh now: nothing more to do.
    let (_, outcome) = manager.refresh(false).await.unwrap();
    assert_eq!(outcome, RefreshOutcome::Fresh);
    assert_eq!(setup.requests().await, 1);
}

#[tokio::test]
async fn a_forced_refresh_of_fresh_credentials_says_refreshed() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 2).await;
    write_auth(
        setup.home(),
        &document_json(ALICE, 1, setup.clock.now(), HOUR, true),
    );
    let manager = setup.manager();

    let (got, outcome) = manager.refresh(true).await.unwrap();
    assert_eq!(outcome, RefreshOutcome::Refreshed);
    assert_eq!(setup.requests().await, 1);
    assert!(
        got.document().refresh_token().unwrap().expose() == "rt-user-alice-2",
        "not the rotated refresh token"
    );
}

#[tokio::test]
async fn refresh_says_adopted_when_another_process_committed_newer_tokens_while_it_waited_for_the_lock()
 {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 99).await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    // Another writer holds the transaction lock, as a process in the middle of its refresh.
    let other = authstore::store::FileStore::new(setup.home(), StoreOptions::default());
    let mut transaction = other.begin().await.unwrap();
    let reads_before = manager.stats().disk_reads;
    let task = tokio::spawn({
        let manager = manager.clone();
        async move { manager.refresh(false).await }
    });
    // The manager re-read the stale file (before the lock: the read is done in place) and now
    // waits for the lock.
    assert!(
        eventually(Duration::from_secs(5), async || {
            manager.stats().disk_reads > reads_before
        })
        .await
    );
    let newer = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    transaction.write(&parse(&newer)).await.unwrap();
    drop(transaction);

    let (got, outcome) = task.await.unwrap().unwrap();
    assert_eq!(outcome, RefreshOutcome::Adopted);
    assert_eq!(got.document(), &parse(&newer));
    assert_eq!(manager.stats().adopted, 1);
    assert_eq!(setup.requests().await, 0);
}

#[tokio::test]
async fn refresh_says_adopted_when_it_recovered_from_reuse_with_the_successor() {
    let setup = Setup::new().await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;
    let newer = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    Mock::given(method("POST"))
        .respond_with(WriteThenReused {
            home: setup.home().to_owned(),
            newer: newer.clone(),
        })
        .mount(&setup.server)
        .await;

    let (got, outcome) = manager.refresh(false).await.unwrap();
    assert_eq!(outcome, RefreshOutcome::Adopted);
    assert_eq!(got.document(), &parse(&newer));
    assert_eq!(manager.stats().reuse_recovered, 1);
    assert_eq!(setup.requests().await, 1);
}

#[tokio::test]
async fn concurrent_refreshes_on_one_manager_each_say_what_they_did() {
    let setup = Setup::new().await;
    let fresh = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(100))
                .set_body_json(json!({
                    "id_token": fresh["tokens"]["id_token"],
                    "access_token": fresh["tokens"]["access_token"],
                    "refresh_token": fresh["tokens"]["refresh_token"],
                })),
        )
        .mount(&setup.server)
        .await;
    let (manager, _held) = setup.hold_soon_stale(ALICE).await;

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.refresh(false).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let (got, outcome) = task.await.unwrap().unwrap();
        assert!(got.document().refresh_token().unwrap().expose() == "rt-user-alice-2");
        outcomes.push(outcome);
    }
    // One task spent the token; the others waited for it and adopted its result. A comparison
    // of the manager's counters before and after would have said "refreshed" for all of them.
    let refreshed = outcomes
        .iter()
        .filter(|o| **o == RefreshOutcome::Refreshed)
        .count();
    let adopted = outcomes
        .iter()
        .filter(|o| **o == RefreshOutcome::Adopted)
        .count();
    assert_eq!((refreshed, adopted), (1, 7), "{outcomes:?}");
    assert_eq!(setup.requests().await, 1);
    assert_eq!(manager.stats().refreshed, 1);
}

#[test]
fn refresh_outcomes_have_the_words_the_front_ends_print() {
    assert_eq!(RefreshOutcome::Refreshed.as_str(), "refreshed");
    assert_eq!(RefreshOutcome::Adopted.to_string(), "adopted");
    assert_eq!(RefreshOutcome::Fresh.as_str(), "fresh");
}

#[tokio::test]
async fn managers_of_one_process_refresh_at_their_own_endpoints() {
    let (first, second) = (Setup::new().await, Setup::new().await);
    first.answer_with_tokens(ALICE, 2).await;
    second.answer_with_tokens(ALICE, 3).await;
    let mut managers = Vec::new();
    for setup in [&first, &second] {
        write_auth(
            setup.home(),
            &document_json(ALICE, 1, std::time::SystemTime::now(), 60, true),
        );
        let config = StoreConfig::new(setup.home())
            .token_url(Some(format!("{}/oauth/token", setup.server.uri())))
            .client_id(Some("app_adopter".into()))
            .request_timeout(Duration::from_secs(5));
        managers.push(config.manager(ManagerOptions::default()).await.unwrap());
    }
    for manager in &managers {
        manager.auth().await.unwrap();
    }
    assert_eq!((first.requests().await, second.requests().await), (1, 1));
    assert!(refresh_token_on_disk(first.home()).as_deref() == Some("rt-user-alice-2"));
    assert!(refresh_token_on_disk(second.home()).as_deref() == Some("rt-user-alice-3"));
    let body: Value = first.server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    assert_eq!(body["client_id"], "app_adopter");

    let bad = StoreConfig::new(first.home()).token_url(Some("ftp://example.com/token".into()));
    let error = bad.manager(ManagerOptions::default()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(
        error.to_string().contains("ftp://example.com/token"),
        "{error}"
    );
}

#[tokio::test]
async fn a_managers_own_freshness_decides_when_it_refreshes() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 2).await;
    // Ten minutes left: fresh for a 60 s window, stale for a 15-minute one.
    write_auth(
        setup.home(),
        &document_json(ALICE, 1, setup.clock.now(), 600, true),
    );
    let narrow = Freshness {
        refresh_window: Duration::from_secs(60),
        ..Freshness::default()
    };
    let manager = AuthManager::new(setup.home(), setup.options().freshness(narrow)).unwrap();
    assert_eq!(
        manager.refresh(false).await.unwrap().1,
        RefreshOutcome::Fresh
    );
    assert_eq!(setup.requests().await, 0);
    let wide = Freshness {
        refresh_window: Duration::from_secs(900),
        ..Freshness::default()
    };
    let manager = AuthManager::new(setup.home(), setup.options().freshness(wide)).unwrap();
    assert_eq!(
        manager.refresh(false).await.unwrap().1,
        RefreshOutcome::Refreshed
    );
    assert_eq!(setup.requests().await, 1);
}

#[tokio::test]
async fn a_token_endpoint_that_does_not_answer_in_time_or_cannot_be_reached_says_which() {
    // Does not answer in time.
    let setup = Setup::new().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&setup.server)
        .await;
    write_auth(
        setup.home(),
        &document_json(ALICE, 1, setup.clock.now(), 60, true),
    );
    let options = setup.options().authority(
        AuthorityConfig::default()
            .token_url(format!("{}/oauth/token", setup.server.uri()))
            .request_timeout(Duration::from_millis(300)),
    );
    let error = AuthManager::new(setup.home(), options)
        .unwrap()
        .auth()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert_eq!(error.network_failure(), Some(NetworkFailure::TimedOut));

    // Cannot be reached: a loopback port nobody listens on (refused at once).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let options = setup.options().authority(
        AuthorityConfig::default().token_url(format!("http://127.0.0.1:{port}/oauth/token")),
    );
    let error = AuthManager::new(setup.home(), options)
        .unwrap()
        .auth()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert_eq!(error.network_failure(), Some(NetworkFailure::Unreachable));

    // An answer, even a failing one, is neither.
    let setup = Setup::new().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&setup.server)
        .await;
    write_auth(
        setup.home(),
        &document_json(ALICE, 1, setup.clock.now(), 60, true),
    );
    let error = setup.manager().auth().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert_eq!(error.network_failure(), None);

    // Nor is a lock that was not acquired in time.
    let other = authstore::store::FileStore::new(setup.home(), StoreOptions::default());
    let _held = other.begin().await.unwrap();
    let options = setup
        .options()
        .store(StoreOptions::default().lock_deadline(Duration::from_millis(100)));
    let error = AuthManager::new(setup.home(), options)
        .unwrap()
        .force_refresh()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::LockTimeout);
    assert_eq!(error.network_failure(), None);
}

/// An access token as ChatGPT's are: its claims name the account and the user.
fn chatgpt_access_token(who: Who, generation: u32, expires_in: i64) -> String {
    let exp = epoch_secs(std::time::SystemTime::now()) as i64 + expires_in;
    let mut auth = serde_json::Map::new();
    if let Some(account) = who.account {
        auth.insert("chatgpt_account_id".into(), json!(account));
    }
    if let Some(user) = who.user {
        auth.insert("chatgpt_user_id".into(), json!(user));
    }
    unsigned_jwt(&json!({"exp": exp, "g": generation, "https://api.openai.com/auth": auth}))
}

/// `who`'s document of generation `generation`, whose access token is `access_token`.
fn document_with_access_token(
    setup: &Setup,
    who: Who,
    generation: u32,
    access_token: &str,
) -> Value {
    let mut document = document_json(who, generation, setup.clock.now(), HOUR, true);
    document["tokens"]["access_token"] = json!(access_token);
    document
}

const CAROL_OTHER_ACCOUNT: Who = Who {
    account: Some("acct-2"),
    user: Some("user-carol"),
};

#[tokio::test]
async fn a_rejected_token_string_adopts_a_newer_token_of_its_identity_without_calling_the_endpoint()
{
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 99).await;
    let rejected = chatgpt_access_token(ALICE, 1, HOUR);
    let newer = document_with_access_token(&setup, ALICE, 2, &chatgpt_access_token(ALICE, 2, HOUR));
    write_auth(setup.home(), &newer);

    // A manager that has never read the store: the identity is the token's.
    let manager = setup.manager();
    let got = manager.unauthorized_token(&rejected, None).await.unwrap();
    assert_eq!(got.document(), &parse(&newer));
    assert_eq!(setup.requests().await, 0);
    assert_eq!(manager.stats().adopted, 1);

    // Once this manager holds the newer token, the same rejection is answered from it, without
    // even a transaction.
    let transactions = manager.stats().transactions;
    let again = manager.unauthorized_token(&rejected, None).await.unwrap();
    assert_eq!(again.document(), &parse(&newer));
    assert_eq!(manager.stats().transactions, transactions);
    assert_eq!(setup.requests().await, 0);
}

#[tokio::test]
async fn a_rejected_token_string_never_adopts_another_users_or_accounts_login() {
    for other in [BOB_SAME_ACCOUNT, CAROL_OTHER_ACCOUNT] {
        let setup = Setup::new().await;
        setup.answer_with_tokens(ALICE, 99).await;
        let login =
            document_with_access_token(&setup, other, 7, &chatgpt_access_token(other, 7, HOUR));
        write_auth(setup.home(), &login);
        let before = std::fs::read(setup.home().join("auth.json")).unwrap();

        // Before this, a manager that had never read Alice's login adopted whatever it found.
        let manager = setup.manager();
        let error = manager
            .unauthorized_token(&chatgpt_access_token(ALICE, 1, HOUR), None)
            .await
            .unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::ReloginRequired(ReloginReason::IdentityChanged),
            "{other:?}"
        );
        // So is an opaque token said to be of Alice's account, against another account's login.
        if other.account != ALICE.account {
            let error = manager
                .unauthorized_token("opaque-token", Some("acct-1"))
                .await
                .unwrap_err();
            assert_eq!(
                error.kind(),
                ErrorKind::ReloginRequired(ReloginReason::IdentityChanged)
            );
        }
        assert_eq!(setup.requests().await, 0);
        assert!(
            std::fs::read(setup.home().join("auth.json")).unwrap() == before,
            "the other login was changed"
        );
    }
}

#[tokio::test]
async fn a_rejected_token_string_still_in_the_store_is_refreshed_once() {
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 2).await;
    let rejected = chatgpt_access_token(ALICE, 1, HOUR);
    write_auth(
        setup.home(),
        &document_with_access_token(&setup, ALICE, 1, &rejected),
    );
    let manager = setup.manager();

    let got = manager.unauthorized_token(&rejected, None).await.unwrap();
    assert_eq!(setup.requests().await, 1);
    assert!(
        got.document().refresh_token().unwrap().expose() == "rt-user-alice-2",
        "not the rotated refresh token"
    );
    assert!(
        refresh_token_on_disk(setup.home()).as_deref() == Some("rt-user-alice-2"),
        "not the rotated refresh token on disk"
    );

    // An opaque token is its own proof of lineage while the store holds it; named with its
    // account, that account is checked against the store's.
    let setup = Setup::new().await;
    setup.answer_with_tokens(ALICE, 2).await;
    write_auth(
        setup.home(),
        &document_with_access_token(&setup, ALICE, 1, "opaque-token"),
    );
    let manager = setup.manager();
    let error = manager
        .unauthorized_token("opaque-token", Some("acct-2"))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ReloginRequired(ReloginReason::IdentityChanged)
    );
    manager.reset();
    let got = manager
        .unauthorized_token("opaque-token", Some("acct-1"))
        .await
        .unwrap();
    assert_eq!(setup.requests().await, 1);
    assert!(got.document().refresh_token().unwrap().expose() == "rt-user-alice-2");
}

#[tokio::test]
async fn a_rejected_token_string_recovers_from_reuse_with_the_successor_of_its_identity() {
    let setup = Setup::new().await;
    let rejected = chatgpt_access_token(ALICE, 1, HOUR);
    write_auth(
        setup.home(),
        &document_with_access_token(&setup, ALICE, 1, &rejected),
    );
    let newer = document_json(ALICE, 2, setup.clock.now(), HOUR, true);
    Mock::given(method("POST"))
        .respond_with(WriteThenReused {
            home: setup.home().to_owned(),
            newer: newer.clone(),
        })
        .mount(&setup.server)
        .await;
    let manager = setup.manager();

    let got = manager.unauthorized_token(&rejected, None).await.unwrap();
    assert_eq!(got.document(), &parse(&newer));
    assert_eq!(manager.stats().reuse_recovered, 1);
    assert_eq!(setup.requests().await, 1);
}

#[tokio::test]
async fn a_rejected_token_string_that_is_not_a_token_or_names_another_account_is_invalid_input() {
    let setup = Setup::new().await;
    write_auth(
        setup.home(),
        &document_json(ALICE, 1, setup.clock.now(), HOUR, true),
    );
    let manager = setup.manager();
    let alices = chatgpt_access_token(ALICE, 1, HOUR);
    for (token, account) in [("", None), ("a b", None), (alices.as_str(), Some("acct-2"))] {
        let error = manager
            .unauthorized_token(token, account)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(!error.to_string().contains(&alices), "{error}");
    }
    assert_eq!(manager.stats().transactions, 0);
}
