//! One file, two programs: Codex reads what authstore writes and makes no call on its fresh
//! tokens, Codex spends exactly the refresh token authstore wrote, and authstore reads what Codex
//! writes (its unknown-field losses included) and makes no further call.

use std::time::Duration;

use authstore::document::format_timestamp;
use authstore_testkit::alice;
use authstore_testkit::binary::{assert_no_token_presented_twice, assert_success, stderr, stdout};
use authstore_testkit::token;
use serde_json::{Value, json};

use crate::lab::*;

/// After `authstore AFTER`: `codex login status` succeeds and says Codex is logged in with
/// ChatGPT, then `codex features list` succeeds and leaves the authority at `calls` refresh
/// calls in all (`why` otherwise). Returns how long each of the two ran.
async fn codex_runs_on_authstore_s_tokens(
    lab: &Lab,
    after: &str,
    calls: u64,
    why: &str,
) -> (Duration, Duration) {
    let (status, status_took) = lab.run_codex(&["login", "status"]).await;
    assert!(
        status.status.success(),
        "codex login status after {after}: exit {:?}: {}",
        status.status.code(),
        stderr(&status)
    );
    assert!(stderr(&status).contains("Logged in using ChatGPT"));
    let (features, features_took) = lab.run_codex(&["features", "list"]).await;
    assert_success(&features);
    assert_eq!(lab.sim.refresh_calls(), calls, "{why}");
    (status_took, features_took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn codex_reads_what_authstore_writes_and_makes_no_refresh_call_on_its_fresh_tokens() {
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), FRESH);
    lab.authstore_login(&login).await;

    let (status_took, fresh_took) = codex_runs_on_authstore_s_tokens(
        &lab,
        "authstore login",
        0,
        "Codex refreshed authstore's fresh tokens",
    )
    .await;

    let (refresh, _) = lab.run_authstore(&["refresh", "--force"]).await;
    assert_success(&refresh);
    assert!(stdout(&refresh).starts_with("refreshed"));
    assert_eq!(lab.sim.refresh_calls(), 1);

    let written = std::fs::read(lab.auth_path()).unwrap();
    codex_runs_on_authstore_s_tokens(
        &lab,
        "authstore refresh --force",
        1,
        "Codex refreshed the fresh tokens authstore's refresh wrote",
    )
    .await;
    // Codex wrote nothing: authstore's file, unknown fields included, stays byte for byte.
    assert!(
        std::fs::read(lab.auth_path()).unwrap() == written,
        "Codex rewrote auth.json"
    );
    assert_eq!(lab.disk()["x_custom"], json!({"kept": true}));
    println!(
        "figures: codex login status {}ms; codex features list on fresh tokens {}ms, 0 calls",
        millis(status_took),
        millis(fresh_took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn codex_spends_exactly_the_refresh_token_authstore_wrote() {
    let lab = Lab::new().await;
    // `codex login status` says "Logged in using ChatGPT" even for `{}`; this proves that Codex
    // parses the tokens in authstore's file: it refreshes with exactly the refresh token there.
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    // authstore's own refresh writes a token that is stale again (60 s lifetime).
    lab.sim.set_access_token_lifetime(STALE);
    let (refresh, _) = lab.run_authstore(&["refresh", "--force"]).await;
    assert_success(&refresh);
    lab.sim.set_access_token_lifetime(FRESH);
    let written = token(&lab.disk(), "refresh_token");
    assert!(written != token(&login, "refresh_token"));

    let (features, took) = lab.run_codex(&["features", "list"]).await;
    assert_success(&features);
    let presented = lab.sim.presented_refresh_tokens();
    assert_eq!(presented.len(), 2, "authstore's refresh, then one by Codex");
    assert!(
        presented[1] == written,
        "Codex presented another refresh token than the one authstore wrote"
    );
    let family = lab.sim.family_of(&written).unwrap();
    assert_current_token_on_disk(&lab, family);
    assert_no_token_presented_twice(&lab.sim);
    println!(
        "figures: codex features list on authstore's stale token: 1 call, {}ms",
        millis(took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authstore_reads_what_codex_writes_and_makes_no_further_call() {
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();

    let (features, took) = lab.run_codex(&["features", "list"]).await;
    assert_success(&features);
    assert_eq!(
        lab.sim.refresh_calls(),
        1,
        "codex features list refreshes a stale token once"
    );
    let written_by_codex = lab.disk();
    let access = token(&written_by_codex, "access_token");
    assert!(
        access != token(&login, "access_token"),
        "Codex wrote no new token"
    );
    assert_current_token_on_disk(&lab, family);
    // What Codex 0.171.0 does to the file (SPEC §2: this is why authstore keeps nothing of its
    // own in auth.json).
    assert!(
        written_by_codex.get("x_custom").is_none()
            && written_by_codex["tokens"].get("x_token_extra").is_none(),
        "Codex 0.171.0 was seen to drop unknown fields; it kept them here"
    );

    let (printed, _) = lab.run_authstore(&["token"]).await;
    assert_success(&printed);
    assert!(
        stdout(&printed) == access,
        "authstore token printed another access token than the one Codex wrote"
    );

    let (json_token, _) = lab.run_authstore(&["token", "--json"]).await;
    assert_success(&json_token);
    let json_token: Value = serde_json::from_str(&stdout(&json_token)).unwrap();
    assert!(json_token["access_token"].as_str() == Some(access.as_str()));
    assert_eq!(json_token["account_id"], json!("acct-1"));

    let expires_at = format_timestamp(expiry_of(&access));
    let (status, _) = lab.run_authstore(&["status", "--json"]).await;
    assert_success(&status);
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["logged_in"], json!(true));
    assert_eq!(status["expires_at"], json!(expires_at));
    assert_eq!(json_token["expires_at"], json!(expires_at));
    assert_eq!(status["refresh_due"], json!(false));
    assert_eq!(status["account_id"], json!("acct-1"));
    assert_eq!(status["user_id"], json!("user-alice"));
    // Codex writes last_refresh with nanoseconds; authstore reads it.
    assert!(status["last_refresh"].is_string(), "last_refresh unread");

    assert_eq!(
        lab.sim.refresh_calls(),
        1,
        "authstore called the authority although Codex had just refreshed"
    );
    // And authstore can carry on from Codex's tokens.
    let (refresh, _) = lab.run_authstore(&["refresh", "--force"]).await;
    assert_success(&refresh);
    assert_current_token_on_disk(&lab, family);
    assert_no_token_presented_twice(&lab.sim);
    println!(
        "figures: codex features list on a stale token: 1 call, {}ms; authstore then 0 calls for \
         token, token --json, status --json",
        millis(took)
    );
}
