//! Every answer the token endpoint can give, against a real local HTTP server (wiremock): what
//! the manager returns and what `auth.json` holds afterwards. A well-formed rotated refresh
//! token is always stored, whatever else the answer holds; no empty or malformed token is ever
//! stored or returned; a `2xx` without a usable access token is a transient failure, and the
//! next call refreshes with the stored rotation; an answer over 1 MiB is a transient failure.

use std::time::Duration;

use authstore::authority::AuthorityConfig;
use authstore::error::{ErrorKind, ReloginReason};
use authstore::store::StoreOptions;
use authstore::{AuthManager, ManagerOptions};
use authstore_testkit::home::Home;
use authstore_testkit::*;
use rstest::rstest;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What a case expects of the manager's call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Refreshed: the new access token is returned.
    Refreshed,
    /// A transient failure (exit 5 on the command line).
    Transient,
    /// A re-login is required.
    Relogin(ReloginReason),
}

/// A home whose access token is stale (generation 1: refresh token `rt-user-alice-1`), a token
/// endpoint that answers `status` with `body` once, and the manager.
async fn one_answer(status: u16, body: Vec<u8>) -> (Home, MockServer, AuthManager) {
    let home = Home::new();
    let now = std::time::SystemTime::now();
    home.write_auth(&document_json(ALICE, 1, now, 60, true));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_partial_json(
            json!({"refresh_token": "rt-user-alice-1"}),
        ))
        .respond_with(ResponseTemplate::new(status).set_body_raw(body, "application/json"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let options = ManagerOptions::default()
        .authority(
            AuthorityConfig::default()
                .token_url(format!("{}/oauth/token", server.uri()))
                .request_timeout(Duration::from_secs(10)),
        )
        .store(StoreOptions::default().lock_deadline(Duration::from_secs(10)))
        .watch(false);
    let manager = AuthManager::new(home.path(), options).unwrap();
    (home, server, manager)
}

/// The token fields of `auth.json`.
fn tokens(home: &Home) -> (String, String, String) {
    let disk = home.disk();
    let field = |name: &str| {
        disk["tokens"][name]
            .as_str()
            .unwrap_or_else(|| panic!("tokens.{name} is a string"))
            .to_owned()
    };
    (
        field("id_token"),
        field("access_token"),
        field("refresh_token"),
    )
}

fn is_token(text: &str) -> bool {
    !text.is_empty() && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

const NEW_ACCESS: &str = "at.new.2";
const NEW_REFRESH: &str = "rt-new-2";
const NEW_ID: &str = "id.new.2";

#[rstest]
#[case::complete(json!({"id_token": NEW_ID, "access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH}), Expect::Refreshed, true, true)]
#[case::no_rotation(json!({"access_token": NEW_ACCESS}), Expect::Refreshed, false, false)]
#[case::id_token_object(json!({"id_token": {"email": "x"}, "access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH}), Expect::Refreshed, true, false)]
#[case::id_token_number(json!({"id_token": 7, "access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH}), Expect::Refreshed, true, false)]
#[case::id_token_array(json!({"id_token": [NEW_ID], "access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH}), Expect::Refreshed, true, false)]
#[case::refresh_token_empty(json!({"id_token": NEW_ID, "access_token": NEW_ACCESS, "refresh_token": ""}), Expect::Refreshed, false, true)]
#[case::refresh_token_blank(json!({"access_token": NEW_ACCESS, "refresh_token": "  "}), Expect::Refreshed, false, false)]
#[case::refresh_token_number(json!({"access_token": NEW_ACCESS, "refresh_token": 12}), Expect::Refreshed, false, false)]
#[case::refresh_token_null(json!({"access_token": NEW_ACCESS, "refresh_token": null}), Expect::Refreshed, false, false)]
#[case::access_token_missing(json!({"id_token": NEW_ID, "refresh_token": NEW_REFRESH}), Expect::Transient, true, true)]
#[case::access_token_empty(json!({"access_token": "", "refresh_token": NEW_REFRESH}), Expect::Transient, true, false)]
#[case::access_token_blank(json!({"access_token": " ", "refresh_token": NEW_REFRESH}), Expect::Transient, true, false)]
#[case::access_token_number(json!({"access_token": 5, "refresh_token": NEW_REFRESH}), Expect::Transient, true, false)]
#[case::access_token_with_a_line_break(json!({"access_token": "at\nx", "refresh_token": NEW_REFRESH}), Expect::Transient, true, false)]
#[case::access_token_object(json!({"access_token": {"t": 1}, "refresh_token": NEW_REFRESH}), Expect::Transient, true, false)]
#[case::no_token_at_all(json!({}), Expect::Transient, false, false)]
#[case::only_unknown_fields(json!({"token_type": "Bearer", "expires_in": 3600}), Expect::Transient, false, false)]
#[case::not_an_object(json!([NEW_ACCESS]), Expect::Transient, false, false)]
#[case::a_string(json!(NEW_ACCESS), Expect::Transient, false, false)]
fn answers_2xx(
    #[case] answer: Value,
    #[case] expect: Expect,
    #[case] rotated: bool,
    #[case] new_id: bool,
    #[values(200, 201)] status: u16,
) {
    run_case(
        status,
        answer.to_string().into_bytes(),
        expect,
        rotated,
        new_id,
    );
}

#[rstest]
#[case::bad_request(400, json!({"error": "invalid_request"}), Expect::Transient)]
#[case::unauthorized(401, json!({}), Expect::Relogin(ReloginReason::Rejected))]
#[case::reused(401, json!({"error": {"code": "refresh_token_reused"}}), Expect::Relogin(ReloginReason::Reused))]
#[case::invalid_grant(400, json!({"error": "invalid_grant"}), Expect::Relogin(ReloginReason::Rejected))]
#[case::server_error_with_tokens(500, json!({"access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH}), Expect::Transient)]
#[case::redirect(302, json!({}), Expect::Transient)]
fn answers_other_statuses(#[case] status: u16, #[case] answer: Value, #[case] expect: Expect) {
    run_case(
        status,
        answer.to_string().into_bytes(),
        expect,
        false,
        false,
    );
}

#[rstest]
#[case::non_json(b"<html>502</html>".to_vec())]
#[case::truncated(br#"{"access_token": "at.new"#.to_vec())]
#[case::invalid_utf8(b"{\"access_token\": \"\xff\"}".to_vec())]
#[case::over_a_mebibyte(format!(r#"{{"access_token": "{NEW_ACCESS}", "refresh_token": "{NEW_REFRESH}", "pad": "{}"}}"#, "x".repeat(1024 * 1024 + 1)).into_bytes())]
fn unreadable_2xx_bodies_are_transient(#[case] body: Vec<u8>) {
    run_case(200, body, Expect::Transient, false, false);
}

fn run_case(status: u16, body: Vec<u8>, expect: Expect, rotated: bool, new_id: bool) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (home, server, manager) = one_answer(status, body).await;
        let (old_id, old_access, old_refresh) = tokens(&home);
        let outcome = manager.auth().await;
        match (expect, &outcome) {
            (Expect::Refreshed, Ok(snapshot)) => {
                assert_eq!(snapshot.access_token().unwrap().expose(), NEW_ACCESS);
            }
            (Expect::Transient, Err(error)) => assert_eq!(error.kind(), ErrorKind::Transient),
            (Expect::Relogin(reason), Err(error)) => {
                assert_eq!(error.kind(), ErrorKind::ReloginRequired(reason))
            }
            (expect, outcome) => panic!(
                "expected {expect:?}, got {:?}",
                outcome
                    .as_ref()
                    .map(|_| "credentials")
                    .map_err(|e| e.kind())
            ),
        }
        let (id, access, refresh) = tokens(&home);
        for token in [&id, &access, &refresh] {
            assert!(is_token(token), "a malformed token was stored");
        }
        assert_eq!(
            refresh == NEW_REFRESH,
            rotated,
            "the rotated refresh token is stored"
        );
        if !rotated {
            assert_eq!(refresh, old_refresh);
        }
        assert_eq!(id == NEW_ID, new_id, "a well-formed id token is stored");
        if !new_id {
            assert_eq!(id, old_id);
        }
        let refreshed = expect == Expect::Refreshed;
        assert_eq!(access == NEW_ACCESS, refreshed);
        if !refreshed {
            assert_eq!(
                access, old_access,
                "the old access token stays, not handed out"
            );
        }
        // After an unusable answer that rotated, the next call spends the stored rotation.
        if rotated && expect == Expect::Transient {
            Mock::given(method("POST"))
                .and(path("/oauth/token"))
                .and(body_partial_json(json!({"refresh_token": NEW_REFRESH})))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "access_token": "at.third.3", "refresh_token": "rt-third-3"
                })))
                .mount(&server)
                .await;
            let snapshot = manager.auth().await.expect("the next call refreshes");
            assert_eq!(snapshot.access_token().unwrap().expose(), "at.third.3");
            assert_eq!(tokens(&home).2, "rt-third-3");
        }
    });
}

/// `tokens.id_token` as Codex's parsed claims object: the identity is read from it (a refresh
/// is made for that account and user), and the refresh writes the string form back, every
/// other field kept.
#[tokio::test]
async fn a_claims_object_id_token_is_read_and_the_next_refresh_writes_a_string() {
    for answer_has_id_token in [true, false] {
        let home = Home::new();
        let now = std::time::SystemTime::now();
        let mut document = document_json(ALICE, 1, now, 60, false);
        document["tokens"]["id_token"] = json!({
            "email": "someone@example.com",
            "chatgpt_plan_type": "plus",
            "chatgpt_user_id": "user-alice",
            "chatgpt_account_id": "acct-1",
        });
        home.write_auth(&document);
        let server = MockServer::start().await;
        let fresh = document_json(ALICE, 2, now, 3600, true);
        let mut answer = json!({"access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH});
        if answer_has_id_token {
            answer["id_token"] = fresh["tokens"]["id_token"].clone();
        }
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .mount(&server)
            .await;
        let options = ManagerOptions::default()
            .authority(
                AuthorityConfig::default().token_url(format!("{}/oauth/token", server.uri())),
            )
            .watch(false);
        let manager = AuthManager::new(home.path(), options).unwrap();
        let snapshot = manager.auth().await.expect("refreshed");
        assert_eq!(snapshot.identity().account_id.as_deref(), Some("acct-1"));
        assert_eq!(snapshot.identity().user_id.as_deref(), Some("user-alice"));
        let disk = home.disk();
        let id_token = disk["tokens"]["id_token"].as_str().expect("a string again");
        if answer_has_id_token {
            assert_eq!(id_token, fresh["tokens"]["id_token"]);
        } else {
            let claims = authstore::document::IdClaims::from_jwt(id_token);
            assert_eq!(claims.user_id.as_deref(), Some("user-alice"));
            assert_eq!(claims.plan.as_deref(), Some("plus"));
        }
        assert_eq!(disk["tokens"]["account_id"], "acct-1");
        assert_eq!(disk["x_custom"], document["x_custom"]);
        assert_eq!(disk["tokens"]["x_token_extra"], "kept");
    }
}

/// Guarded adoption on a claims-object file: another user's login written that way is never
/// adopted, and nothing is spent for it.
#[tokio::test]
async fn another_users_claims_object_login_is_not_adopted() {
    let home = Home::new();
    let now = std::time::SystemTime::now();
    home.write_auth(&document_json(ALICE, 1, now, 3600, true));
    let server = MockServer::start().await;
    let options = ManagerOptions::default()
        .authority(AuthorityConfig::default().token_url(format!("{}/oauth/token", server.uri())))
        .watch(false);
    let manager = AuthManager::new(home.path(), options).unwrap();
    let held = manager.auth().await.unwrap();
    let mut bob = document_json(BOB_SAME_ACCOUNT, 2, now, 3600, true);
    bob["tokens"]["id_token"] = json!({
        "chatgpt_user_id": "user-bob",
        "chatgpt_account_id": "acct-1",
    });
    home.write_auth(&bob);
    let error = manager.unauthorized(&held).await.unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ReloginRequired(ReloginReason::IdentityChanged)
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    assert_eq!(home.disk(), bob, "the other user's file is left as it is");
}
