#![cfg(feature = "simulator")]
//! `authstore token --format ...` and `--min-valid`: the real binary against the embedded token
//! authority (family revocation on reuse). Each format is parsed the way its consumer parses
//! it, with serde structs mirroring kubectl's `ExecCredential` (client.authentication.k8s.io/v1)
//! and the Bazel credential-helper response; unknown fields are refused, as strict consumers do.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authstore::document::unsigned_jwt;
use authstore_simulator::Identity;
use authstore_testkit::alice;
use authstore_testkit::binary::*;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

/// kubectl's `ExecCredential`, `client.authentication.k8s.io/v1`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExecCredential {
    api_version: String,
    kind: String,
    #[serde(default)]
    spec: Option<Value>,
    status: ExecCredentialStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExecCredentialStatus {
    /// `metav1.Time`: RFC 3339.
    #[serde(default)]
    expiration_timestamp: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
}

/// The Bazel (EngFlow spec) credential-helper response to `get`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BazelResponse {
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
    /// RFC 3339.
    #[serde(default)]
    expires: Option<String>,
}

/// Installs a login for `identity` whose access token has `lifetime` left; tokens the authority
/// issues afterwards live an hour. Returns the document.
fn login_with_lifetime(env: &Env, identity: &Identity, lifetime: Duration) -> Value {
    let document = env.new_login(identity, lifetime);
    authstore_testkit::write_auth(env.home(), &document);
    document
}

/// The `exp` claim of a JWT, read here independently of the library.
fn exp_of(jwt: &str) -> SystemTime {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    UNIX_EPOCH + Duration::from_secs(claims["exp"].as_u64().expect("exp"))
}

fn rfc3339(text: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .into()
}

fn token_on_disk(env: &Env, field: &str) -> String {
    authstore_testkit::token(&env.disk(), field)
}

/// Runs `token` with `args`, expecting success; returns stdout. Also checks that neither the
/// refresh token nor the id token is anywhere in the output (stdout, or stderr at the most
/// verbose log level).
async fn token(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["-vvv", "token"];
    all.extend_from_slice(args);
    // The tokens before the run (the refresh token a refresh presents) and after it.
    let before = ["refresh_token", "id_token"].map(|field| token_on_disk(env, field));
    let output = env.run(&all).await;
    assert_success(&output);
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for (field, earlier) in ["refresh_token", "id_token"].into_iter().zip(before) {
        for secret in [earlier, token_on_disk(env, field)] {
            assert!(
                !everything.contains(&secret),
                "{args:?} printed the {field}"
            );
        }
    }
    stdout(&output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_parses_as_its_consumer_parses_it() {
    let env = Env::new().await;
    login_with_lifetime(&env, &alice(), Duration::from_secs(3600));
    let access = token_on_disk(&env, "access_token");
    let exp = exp_of(&access);
    let bearer = format!("Bearer {access}");

    assert_eq!(token(&env, &[]).await, access);
    assert_eq!(token(&env, &["--format", "raw"]).await, access);

    let kube: ExecCredential =
        serde_json::from_str(&token(&env, &["--format", "exec-credential"]).await).unwrap();
    assert_eq!(kube.api_version, "client.authentication.k8s.io/v1");
    assert_eq!(kube.kind, "ExecCredential");
    assert!(kube.spec.is_none());
    assert_eq!(kube.status.token.as_deref(), Some(access.as_str()));
    assert!(kube.status.client_certificate_data.is_none());
    assert!(kube.status.client_key_data.is_none());
    let timestamp = kube.status.expiration_timestamp.expect("an expiry");
    assert_eq!(rfc3339(&timestamp), exp);

    let bazel: BazelResponse =
        serde_json::from_str(&token(&env, &["--format", "bazel"]).await).unwrap();
    assert_eq!(
        bazel.headers,
        BTreeMap::from([
            ("Authorization".to_owned(), vec![bearer.clone()]),
            ("ChatGPT-Account-Id".to_owned(), vec!["acct-1".to_owned()]),
        ])
    );
    assert_eq!(rfc3339(&bazel.expires.expect("an expiry")), exp);

    let json: Value = serde_json::from_str(&token(&env, &["--format", "json"]).await).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["access_token", "account_id", "expires_at", "headers"]
    );
    assert_eq!(json["access_token"], access);
    assert_eq!(json["account_id"], "acct-1");
    assert_eq!(rfc3339(json["expires_at"].as_str().unwrap()), exp);
    assert_eq!(
        json["headers"],
        json!({"Authorization": bearer, "ChatGPT-Account-Id": "acct-1"})
    );

    assert_eq!(env.sim.refresh_calls(), 0, "a fresh token is not refreshed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_flag_prints_exactly_what_format_json_prints() {
    let env = Env::new().await;
    login_with_lifetime(&env, &alice(), Duration::from_secs(3600));
    let alias = token(&env, &["--json"]).await;
    assert_eq!(alias, token(&env, &["--format", "json"]).await);
    assert_eq!(alias, token(&env, &["--json", "--format", "json"]).await);
    assert!(serde_json::from_str::<Value>(&alias).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_account_header_when_the_account_is_unknown() {
    let env = Env::new().await;
    let nobody_s_account = Identity {
        user_id: Some("user-solo".into()),
        ..Identity::default()
    };
    login_with_lifetime(&env, &nobody_s_account, Duration::from_secs(3600));
    let bearer = format!("Bearer {}", token_on_disk(&env, "access_token"));

    let json: Value = serde_json::from_str(&token(&env, &["--format", "json"]).await).unwrap();
    assert_eq!(json["account_id"], Value::Null);
    assert_eq!(json["headers"], json!({ "Authorization": bearer }));
    let bazel: BazelResponse =
        serde_json::from_str(&token(&env, &["--format", "bazel"]).await).unwrap();
    assert_eq!(
        bazel.headers,
        BTreeMap::from([("Authorization".to_owned(), vec![bearer])])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contradicting_or_unknown_options_are_usage_errors_that_change_nothing() {
    let env = Env::new().await;
    // Stale: a command that went ahead would refresh, and the authority would count it.
    login_with_lifetime(&env, &alice(), Duration::from_secs(60));
    let before = std::fs::read(env.auth_path()).unwrap();
    for args in [
        &["token", "--json", "--format", "bazel"][..],
        &["token", "--format", "raw", "--json"],
        &["token", "--format", "yaml"],
        &["token", "--format"],
        &["token", "--min-valid", "-1"],
        &["token", "--min-valid", "soon"],
        &["token", "--min-valid", "99999999999"],
    ] {
        let output = env.run(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?} printed something");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(
            message.contains("--json")
                || message.contains("--format")
                || message.contains("--min-valid"),
            "{args:?}: the message names the option: {message}"
        );
    }
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), before);
    assert_eq!(env.sim.refresh_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_callers_wanting_600s_on_a_token_with_400s_left_make_one_refresh() {
    let env = Env::new().await;
    let before = login_with_lifetime(&env, &alice(), Duration::from_secs(400));

    let runs: Vec<_> = (0..16)
        .map(|_| env.run(&["token", "--min-valid", "600"]))
        .collect();
    let outputs = futures::future::join_all(runs).await;
    for output in &outputs {
        assert_success(output);
    }
    assert_eq!(env.sim.refresh_calls(), 1);
    assert_no_token_presented_twice(&env.sim);
    let on_disk = token_on_disk(&env, "access_token");
    assert!(on_disk != before["tokens"]["access_token"].as_str().unwrap());
    let same = outputs.iter().all(|o| stdout(o) == on_disk);
    assert!(same, "every process prints the new token now on disk");
    let left = exp_of(&on_disk).duration_since(SystemTime::now()).unwrap();
    assert!(left >= Duration::from_secs(600), "{left:?} left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_valid_refreshes_only_when_less_than_secs_is_left() {
    let env = Env::new().await;
    let before = login_with_lifetime(&env, &alice(), Duration::from_secs(900));
    let old = before["tokens"]["access_token"].as_str().unwrap();

    assert_eq!(token(&env, &["--min-valid", "600"]).await, old);
    assert_eq!(env.sim.refresh_calls(), 0, "900 s left is more than 600");

    let kube: ExecCredential = serde_json::from_str(
        &token(
            &env,
            &["--format", "exec-credential", "--min-valid", "1200"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(env.sim.refresh_calls(), 1, "900 s left is less than 1200");
    let new = token_on_disk(&env, "access_token");
    assert!(new != old);
    assert_eq!(kube.status.token.as_deref(), Some(new.as_str()));
    assert_eq!(
        rfc3339(&kube.status.expiration_timestamp.unwrap()),
        exp_of(&new)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_valid_below_the_default_window_still_refreshes_within_it() {
    let env = Env::new().await;
    let before = login_with_lifetime(&env, &alice(), Duration::from_secs(200));

    let printed = token(&env, &["--min-valid", "60"]).await;
    assert_eq!(
        env.sim.refresh_calls(),
        1,
        "200 s left is inside the 300 s window"
    );
    assert!(printed != before["tokens"]["access_token"].as_str().unwrap());
    assert_eq!(printed, token_on_disk(&env, "access_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_known_expiry_the_age_rule_decides_and_no_expiry_is_printed() {
    let env = Env::new().await;
    let mut document = env.sim.auth_json(&alice());
    // An access token without `exp`; `last_refresh` (now) says the tokens are new.
    document["tokens"]["access_token"] = json!(unsigned_jwt(&json!({"sub": "user-alice"})));
    authstore_testkit::write_auth(env.home(), &document);
    let access = token_on_disk(&env, "access_token");

    let kube: ExecCredential = serde_json::from_str(
        &token(&env, &["--format", "exec-credential", "--min-valid", "600"]).await,
    )
    .unwrap();
    assert_eq!(kube.status.token.as_deref(), Some(access.as_str()));
    assert!(kube.status.expiration_timestamp.is_none());
    let bazel: BazelResponse =
        serde_json::from_str(&token(&env, &["--format", "bazel", "--min-valid", "600"]).await)
            .unwrap();
    assert!(bazel.expires.is_none());
    assert_eq!(bazel.headers["Authorization"], [format!("Bearer {access}")]);
    let json: Value = serde_json::from_str(&token(&env, &["--json"]).await).unwrap();
    assert_eq!(json["expires_at"], Value::Null);
    assert_eq!(
        env.sim.refresh_calls(),
        0,
        "recently refreshed tokens are kept"
    );
}

/// The wrapper script the README shows for Bazel, taken from the README itself.
#[cfg(unix)]
fn readme_bazel_wrapper() -> String {
    let readme = include_str!("../../../../README.md");
    let start = readme
        .find("#!/bin/sh\n  # authstore-helper")
        .expect("the README shows the Bazel wrapper");
    let script = &readme[start..];
    let end = script.find("```").expect("the script's code block ends");
    // The block is indented under its list item.
    script[..end]
        .lines()
        .map(|line| line.strip_prefix("  ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bazel_runs_the_readme_wrapper_as_helper_get_with_the_request_on_stdin() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;

    let env = Env::new().await;
    login_with_lifetime(&env, &alice(), Duration::from_secs(3600));
    let access = token_on_disk(&env, "access_token");
    let tools = tempfile::tempdir().unwrap();
    let helper = tools.path().join("authstore-helper");
    std::fs::write(&helper, readme_bazel_wrapper()).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    // `authstore` as the user would have it: on PATH.
    std::os::unix::fs::symlink(bin(), tools.path().join("authstore")).unwrap();
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let helper_command = |arg: &str| {
        let mut command = tokio::process::Command::new(&helper);
        command
            .arg(arg)
            .env("PATH", &path)
            .env("CODEX_HOME", env.home())
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", env.sim.token_url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    };
    let mut get = helper_command("get").spawn().unwrap();
    let mut stdin = get.stdin.take().unwrap();
    stdin
        .write_all(br#"{"uri": "https://gateway.example.com/v1/models"}"#)
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(BOUND, get.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_success(&output);
    let response: BazelResponse = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        response.headers["Authorization"],
        [format!("Bearer {access}")]
    );
    assert_eq!(rfc3339(&response.expires.unwrap()), exp_of(&access));

    // Another command (a future protocol version) is refused, not answered with credentials.
    let mut other = helper_command("list").spawn().unwrap();
    drop(other.stdin.take());
    let output = tokio::time::timeout(BOUND, other.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authstore_itself_is_not_a_bazel_helper_without_the_wrapper() {
    let env = Env::new().await;
    login_with_lifetime(&env, &alice(), Duration::from_secs(3600));
    let output = env.run(&["get"]).await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "`authstore get` is not a command"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_valid_beyond_the_tokens_lifetime_refreshes_and_says_so() {
    let env = Env::new().await;
    // Tokens live an hour; asking for two hours cannot be met.
    let before = login_with_lifetime(&env, &alice(), Duration::from_secs(3600));
    let output = env.run(&["token", "--min-valid", "7200"]).await;
    assert_success(&output);
    assert_eq!(env.sim.refresh_calls(), 1);
    let printed = stdout(&output);
    assert!(printed != before["tokens"]["access_token"].as_str().unwrap());
    assert_eq!(printed, token_on_disk(&env, "access_token"));
    let warning = String::from_utf8_lossy(&output.stderr);
    assert!(warning.contains("--min-valid 7200"), "{warning}");
}
