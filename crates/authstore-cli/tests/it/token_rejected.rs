#![cfg(feature = "simulator")]
//! `authstore token --rejected-stdin`: the 401 path of the command line, the real binary against
//! the embedded token authority (family revocation on reuse). The rejected token reaches each
//! process on its standard input, as the npm package passes it.

use std::process::{Output, Stdio};
use std::time::Duration;

use authstore_simulator::Identity;
use authstore_testkit::alice;
use authstore_testkit::binary::*;
use tokio::io::AsyncWriteExt;

/// `token --rejected-stdin` plus `extra`, with `input` on its standard input, within [`BOUND`].
async fn report(env: &Env, input: &[u8], extra: &[&str]) -> Output {
    let mut args = vec!["token", "--rejected-stdin"];
    args.extend_from_slice(extra);
    let mut command = env.command(&args);
    command.stdin(Stdio::piped());
    let mut child = command.spawn().expect("the binary starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    tokio::time::timeout(BOUND, child.wait_with_output())
        .await
        .expect("the command ends within the bound")
        .unwrap()
}

/// A login of `identity` with an hour left (fresh: only a 401 makes it worth replacing),
/// written to the home; returns its access token.
fn login_fresh(env: &Env, identity: &Identity) -> String {
    let document = env.new_login(identity, Duration::from_secs(3600));
    authstore_testkit::write_auth(env.home(), &document);
    document["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn on_disk(env: &Env) -> String {
    env.disk()["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_reporting_one_rejected_token_make_one_refresh_and_print_the_same_token() {
    let env = Env::new().await;
    let rejected = login_fresh(&env, &alice());
    let line = format!("{rejected}\n");

    let runs: Vec<_> = (0..8).map(|_| report(&env, line.as_bytes(), &[])).collect();
    let outputs = futures::future::join_all(runs).await;
    for output in &outputs {
        assert_success(output);
    }
    assert_eq!(env.sim.refresh_calls(), 1);
    assert_no_token_presented_twice(&env.sim);
    let new = on_disk(&env);
    assert!(new != rejected, "the rejected token was replaced");
    let same = outputs.iter().all(|o| stdout(o) == new);
    assert!(same, "every process prints the token now on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_token_of_the_same_user_in_the_store_is_printed_with_no_authority_call() {
    let env = Env::new().await;
    let rejected = login_fresh(&env, &alice());
    // Another process already moved on: a newer login of the same account and user.
    let newer = login_fresh(&env, &alice());

    let output = report(&env, rejected.as_bytes(), &["--format", "json"]).await;
    assert_success(&output);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(answer["access_token"].as_str() == Some(newer.as_str()));
    assert_eq!(answer["account_id"], "acct-1");
    assert_eq!(env.sim.refresh_calls(), 0);
    assert!(on_disk(&env) == newer, "the store is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_but_stale_token_in_the_store_is_refreshed_once_before_it_is_printed() {
    let env = Env::new().await;
    let rejected = login_fresh(&env, &alice());
    // Another process moved on to a token that is already within the refresh window.
    let stale = env.login_stale(&alice());
    let stale = stale["tokens"]["access_token"].as_str().unwrap().to_owned();

    let runs: Vec<_> = (0..4)
        .map(|_| report(&env, rejected.as_bytes(), &[]))
        .collect();
    let outputs = futures::future::join_all(runs).await;
    for output in &outputs {
        assert_success(output);
    }
    let new = on_disk(&env);
    assert!(new != stale && new != rejected, "refreshed");
    assert!(outputs.iter().all(|o| stdout(o) == new));
    assert_eq!(env.sim.refresh_calls(), 1);
    assert!(env.seconds_left() > 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_or_user_in_the_store_is_exit_4_with_nothing_printed() {
    for other in [
        Identity::new("acct-1", "user-bob"),
        Identity::new("acct-2", "user-alice"),
    ] {
        let env = Env::new().await;
        let rejected = login_fresh(&env, &alice());
        let theirs = login_fresh(&env, &other);

        let output = report(&env, rejected.as_bytes(), &[]).await;
        assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
        assert!(output.stdout.is_empty(), "nothing handed out");
        assert!(stderr(&output).contains("identity") || stderr(&output).contains("another"));
        assert!(!stderr(&output).contains(&rejected) && !stderr(&output).contains(&theirs));
        assert_eq!(env.sim.refresh_calls(), 0);
        assert!(on_disk(&env) == theirs, "their login is untouched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_standard_input_is_exit_2_with_one_line_that_never_shows_it() {
    let env = Env::new().await;
    let token = login_fresh(&env, &alice());
    let two_lines = format!("{token}\n{token}\n");
    for input in [&b""[..], b"\n", two_lines.as_bytes(), b"not a token"] {
        let output = report(&env, input, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(output.stdout.is_empty());
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.contains("--rejected-stdin"), "{message}");
        assert!(!message.contains(&token));
    }
    assert_eq!(env.sim.refresh_calls(), 0);
}
