#![cfg(all(unix, feature = "simulator"))] // Unix only: the broker is stopped with SIGTERM
//! `authstore broker`, a real process of the real binary in front of the embedded token
//! authority (family revocation on reuse), asked as Codex asks it: every answer, what reaches the
//! authority, and what the home ends on.

use std::process::Output;
use std::time::Duration;

use authstore_simulator::{Fault, Identity};
use authstore_testkit::binary::*;
use authstore_testkit::{alice, refresh_token_on_disk};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// A running `authstore broker` on a free loopback port, stopped (SIGTERM) when dropped.
pub(super) struct Broker {
    child: Child,
    pub(super) url: String,
}

impl Broker {
    /// `authstore broker` on `env`'s home, its upstream `env`'s authority, with `extra`
    /// arguments; returns once it printed the URL it listens on.
    pub(super) async fn start(env: &Env, extra: &[&str]) -> Self {
        Self::start_with_upstream(env, &env.sim.token_url(), extra).await
    }

    /// [`Broker::start`] in front of `upstream`.
    async fn start_with_upstream(env: &Env, upstream: &str, extra: &[&str]) -> Self {
        let mut args = vec!["broker", "--listen", "127.0.0.1:0", "--upstream", upstream];
        args.extend_from_slice(extra);
        let mut child = env.command(&args).spawn().expect("start the broker");
        let stdout = child.stdout.take().expect("the broker's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("the broker printed its address within the bound")
            .expect("read the broker's stdout")
            .expect("the broker printed a line");
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("an unexpected first line: {first}"))
            .to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with("/oauth/token"),
            "{url}"
        );
        // Keep reading stdout so that the broker never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, url }
    }

    pub(super) fn revoke_url(&self) -> String {
        self.url.replace("/oauth/token", "/oauth/revoke")
    }

    /// Stops the broker and returns what it wrote to stderr.
    pub(super) async fn stop(self) -> String {
        let pid = self.child.id().expect("the broker runs") as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let output = wait_output_bounded(self.child).await;
        assert!(
            output.status.success(),
            "the broker ended with {:?}",
            output.status
        );
        stderr(&output)
    }
}

async fn wait_output_bounded(child: Child) -> Output {
    authstore_testkit::process::wait_output_bounded(child).await
}

pub(super) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(BOUND)
        .build()
        .unwrap()
}

/// A refresh as Codex sends it: JSON, its client id.
pub(super) async fn codex_refresh(url: &str, refresh_token: &str) -> (u16, Value) {
    let body = json!({
        "client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    });
    let response = client()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("the broker answers");
    answer(response).await
}

pub(super) async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("the answer's body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

pub(super) fn rt(document: &Value) -> String {
    authstore_testkit::token(document, "refresh_token")
}

fn error_code(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_refreshes_of_the_current_token_at_once_make_one_authority_call_and_get_its_tokens()
{
    let env = Env::new().await;
    let before = env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;

    let presented = rt(&before);
    let answers =
        futures::future::join_all((0..16).map(|_| codex_refresh(&broker.url, &presented))).await;

    assert_eq!(
        env.sim.refresh_calls(),
        1,
        "one authority call for sixteen refreshes"
    );
    assert_no_token_presented_twice(&env.sim);
    let disk = env.disk();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{}", error_code(body));
        for field in ["id_token", "access_token", "refresh_token"] {
            assert_eq!(
                body[field], disk["tokens"][field],
                "{field} is the one now stored"
            );
        }
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].as_u64().is_some_and(|secs| secs > 3000));
    }
    assert_ne!(
        rt(&disk),
        rt(&before),
        "the home moved on to the authority's successor"
    );
    let family = env.sim.family_of(&rt(&disk)).expect("an issued token");
    assert_eq!(env.sim.current_refresh_token(family), Some(rt(&disk)));
    assert_eq!(
        disk["x_custom"],
        json!({"kept": true}),
        "unknown fields survive"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_another_authstore_process_rotated_moments_ago_is_answered_with_its_successor() {
    let env = Env::new().await;
    let before = env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;
    // Rotated by the command line straight at the authority, not through the broker.
    assert_success(&env.run(&["refresh", "--force"]).await);
    assert_eq!(env.sim.refresh_calls(), 1);

    let (status, body) = codex_refresh(&broker.url, &rt(&before)).await;

    assert_eq!(status, 200, "{}", error_code(&body));
    assert_eq!(body["refresh_token"], env.disk()["tokens"]["refresh_token"]);
    assert_eq!(body["access_token"], env.disk()["tokens"]["access_token"]);
    assert_eq!(
        env.sim.refresh_calls(),
        1,
        "no authority call for the rotated token"
    );
    assert_eq!(env.sim.reuse_rejections(), 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_codex_rotated_and_wrote_by_itself_is_answered_with_its_successor() {
    let env = Env::new().await;
    let before = env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;
    // What Codex does without the broker: spend the token itself, write the file itself.
    let issued = env
        .sim
        .refresh(&rt(&before))
        .expect("the authority rotates");
    let mut written = before.clone();
    written["tokens"]["refresh_token"] = json!(issued.refresh_token);
    written["tokens"]["access_token"] = json!(issued.access_token);
    written["tokens"]["id_token"] = json!(issued.id_token);
    written["last_refresh"] = json!(chrono::Utc::now().to_rfc3339());
    std::fs::write(env.auth_path(), serde_json::to_vec(&written).unwrap()).unwrap();
    // The broker follows the home; a presented token it has not yet seen rotate is looked up
    // again inside the lock, so no wait is needed here.

    let (status, body) = codex_refresh(&broker.url, &rt(&before)).await;

    assert_eq!(status, 200, "{}", error_code(&body));
    assert_eq!(body["refresh_token"], json!(issued.refresh_token));
    assert_eq!(env.sim.refresh_calls(), 0, "nothing sent to the authority");
    assert_eq!(env.sim.reuse_rejections(), 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reuse_interval_a_rotated_token_is_forwarded_and_the_authoritys_rejection_passed_back()
 {
    let env = Env::new().await;
    let before = env.login_stale(&alice());
    let broker = Broker::start(&env, &["--reuse-interval", "0"]).await;
    assert_success(&env.run(&["refresh", "--force"]).await);
    let stored = std::fs::read(env.auth_path()).unwrap();

    let (status, body) = codex_refresh(&broker.url, &rt(&before)).await;

    assert_eq!(status, 401, "the authority's own answer to a reused token");
    assert_eq!(body["error"]["code"], "refresh_token_reused");
    assert_eq!(env.sim.reuse_rejections(), 1, "it was forwarded");
    assert_eq!(
        std::fs::read(env.auth_path()).unwrap(),
        stored,
        "the store is untouched"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_token_is_never_answered_from_the_store() {
    let env = Env::new().await;
    let alices = env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;
    // Alice's token is rotated by authstore (so it is in the record), then Bob logs in here.
    assert_success(&env.run(&["refresh", "--force"]).await);
    let bob = Identity::new("acct-1", "user-bob");
    let bobs = env.new_login(&bob, Duration::from_secs(3600));
    assert_success(
        &env.run(&["login", "--from", env.login_file(&bobs).to_str().unwrap()])
            .await,
    );

    let (status, body) = codex_refresh(&broker.url, &rt(&alices)).await;

    for field in ["id_token", "access_token", "refresh_token"] {
        assert_ne!(
            body[field], bobs["tokens"][field],
            "Bob's {field} handed out for Alice's token"
        );
    }
    assert_eq!(
        status, 401,
        "forwarded: the authority refuses the spent token"
    );
    assert_eq!(rt(&env.disk()), rt(&bobs), "Bob's login untouched");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_this_home_never_held_and_other_grants_are_forwarded_unchanged() {
    let env = Env::new().await;
    env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;
    let stored = std::fs::read(env.auth_path()).unwrap();
    let elsewhere = env.sim.auth_json(&Identity::new("acct-2", "user-carol"));

    let (status, body) = codex_refresh(&broker.url, &rt(&elsewhere)).await;

    assert_eq!(status, 200, "{}", error_code(&body));
    let family = env.sim.family_of(&rt(&elsewhere)).unwrap();
    assert_eq!(
        body["refresh_token"],
        json!(env.sim.current_refresh_token(family).unwrap())
    );
    assert!(
        body.get("token_type").is_none(),
        "the authority's answer, not one of the broker's"
    );
    assert_eq!(env.sim.refresh_calls(), 1);
    assert_eq!(
        std::fs::read(env.auth_path()).unwrap(),
        stored,
        "this home is untouched"
    );

    // A grant that is not a refresh goes on as it came (the authority refuses it).
    let (status, _) = answer(
        client()
            .post(&broker.url)
            .json(&json!({"grant_type": "authorization_code", "code": "c"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), stored);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_encoded_refresh_grant_is_read_as_rfc_6749_writes_it() {
    let env = Env::new().await;
    let before = env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;
    let form = format!(
        "grant_type=refresh_token&refresh_token={}&client_id=app_EMoamEEZ73f0CkXaXp7hrann",
        rt(&before)
    );
    let response = client()
        .post(&broker.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(response).await;

    assert_eq!(status, 200, "{}", error_code(&body));
    assert_eq!(body["refresh_token"], env.disk()["tokens"]["refresh_token"]);
    assert_eq!(env.sim.refresh_calls(), 1);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_oauth_errors_and_change_nothing() {
    let env = Env::new().await;
    let document = env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;
    let stored = std::fs::read(env.auth_path()).unwrap();
    let base = broker.url.trim_end_matches("/oauth/token").to_owned();
    let http = client();

    let not_found = [
        http.get(&broker.url).send(),
        http.post(format!("{base}/")).send(),
        http.post(format!("{base}/oauth/token/x")).send(),
        http.put(&broker.url).body("{}").send(),
    ];
    for response in futures::future::join_all(not_found).await {
        let (status, body) = answer(response.unwrap()).await;
        assert_eq!(status, 404);
        assert_eq!(error_code(&body), "invalid_request");
    }
    let long = "x".repeat(100 * 1024);
    let malformed = [
        "{not json".to_owned(),
        "[]".to_owned(),
        r#"{"grant_type":"refresh_token"}"#.to_owned(),
        r#"{"grant_type":"refresh_token","refresh_token":""}"#.to_owned(),
        r#"{"grant_type":"refresh_token","refresh_token":42}"#.to_owned(),
        r#"{"refresh_token":"rt"}"#.to_owned(),
        format!(r#"{{"grant_type":"refresh_token","refresh_token":"{long}"}}"#),
    ];
    for body in malformed {
        let response = http
            .post(&broker.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, answer) = answer(response).await;
        assert_eq!(status, 400);
        assert_eq!(error_code(&answer), "invalid_request");
    }
    assert_eq!(env.sim.refresh_calls(), 0);
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), stored);

    // A revocation is forwarded, and changes nothing here either.
    let revoke = json!({"token": rt(&document), "token_type_hint": "refresh_token"});
    let response = http
        .post(broker.revoke_url())
        .json(&revoke)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(env.sim.revoke_calls(), 1);
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), stored);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_upstream_is_an_answer_codex_retries_and_a_rejection_passes_through() {
    let env = Env::new().await;
    let document = env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;
    let stored = std::fs::read(env.auth_path()).unwrap();

    env.sim.set_fault(Fault::Status(500));
    let (status, body) = codex_refresh(&broker.url, &rt(&document)).await;
    assert!(
        [502, 503, 504].contains(&status),
        "{status}: Codex retries these"
    );
    assert_eq!(error_code(&body), "temporarily_unavailable");
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), stored);

    env.sim.set_fault(Fault::Code {
        status: 401,
        code: "refresh_token_expired".into(),
    });
    let (status, body) = codex_refresh(&broker.url, &rt(&document)).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "refresh_token_expired");
    assert_eq!(
        std::fs::read(env.auth_path()).unwrap(),
        stored,
        "nothing deleted or blanked"
    );
    broker.stop().await;

    // No upstream at all: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = format!("http://127.0.0.1:{port}/oauth/token");
    let broker = Broker::start_with_upstream(&env, &nowhere, &[]).await;
    let (status, _) = codex_refresh(&broker.url, &rt(&document)).await;
    assert!(
        [502, 503, 504].contains(&status),
        "{status}: Codex retries these"
    );
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), stored);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authstore_processes_whose_token_url_is_the_broker_finish_without_waiting_for_their_own_lock()
 {
    let env = Env::new().await;
    env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;

    // A lock timeout shorter than the request timeout: a process that waited on the broker
    // while the broker waited on its lock would fail with exit 5.
    let runs = (0..16).map(|_| {
        let mut command = env.command(&["--lock-timeout", "8", "token"]);
        command.env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", &broker.url);
        run_bounded(command)
    });
    let outputs = futures::future::join_all(runs).await;

    for output in &outputs {
        assert_success(output);
        assert_eq!(
            stdout(output),
            authstore_testkit::token(&env.disk(), "access_token")
        );
    }
    assert_eq!(env.sim.refresh_calls(), 1);
    assert_no_token_presented_twice(&env.sim);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_logs_no_token_even_at_trace() {
    let env = Env::new().await;
    let before = env.login_stale(&alice());
    let broker = Broker::start(&env, &["-vvv"]).await;
    let (status, first) = codex_refresh(&broker.url, &rt(&before)).await;
    assert_eq!(status, 200);
    let (status, _) = codex_refresh(&broker.url, &rt(&before)).await;
    assert_eq!(status, 200);
    let _ = client().post(&broker.url).body("{not json").send().await;
    let logs = broker.stop().await;

    assert!(logs.contains("answered"), "the requests were logged");
    let secrets = [&before, &first]
        .into_iter()
        .flat_map(|document| {
            let tokens = document.get("tokens").unwrap_or(document);
            ["id_token", "access_token", "refresh_token"]
                .map(|field| tokens[field].as_str().unwrap().to_owned())
        })
        .collect::<Vec<_>>();
    for secret in secrets {
        assert!(!logs.contains(&secret), "a token in the broker's log");
    }
    assert!(refresh_token_on_disk(env.home()).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_refuses_an_upstream_that_is_itself_and_bad_options() {
    let env = Env::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    drop(taken);
    let listen = format!("127.0.0.1:{port}");
    let itself = format!("http://localhost:{port}/oauth/token");
    let output = env
        .run(&["broker", "--listen", &listen, "--upstream", &itself])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("own address"),
        "{}",
        stderr(&output)
    );

    let output = env
        .run(&[
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--reuse-interval",
            "100000",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2));
    let output = env
        .run(&[
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "ftp://x/y",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_agent_with_broker_answers_codex_and_refreshes_at_the_upstream_itself() {
    let env = Env::new().await;
    env.login_stale(&alice());
    let upstream = env.sim.token_url();
    let mut command = env.command(&[
        "agent",
        "--json",
        "--broker",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
    ]);
    // The session's token URL names the broker (here: nothing at all); the agent's own refresh
    // must go to the upstream, not there.
    command.env(
        "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
        "http://127.0.0.1:9/oauth/token",
    );
    let mut agent = authstore_testkit::agent_process::Agent::spawn(command);
    let url = agent.wait_for("broker").await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    agent.wait_for("refreshed").await;
    assert_eq!(
        env.sim.refresh_calls(),
        1,
        "the agent refreshed at the upstream"
    );

    let current = rt(&env.disk());
    let answers = futures::future::join_all((0..4).map(|_| codex_refresh(&url, &current))).await;

    for (status, body) in &answers {
        assert_eq!(*status, 200, "{}", error_code(body));
        assert_eq!(body["refresh_token"], env.disk()["tokens"]["refresh_token"]);
    }
    assert_eq!(
        env.sim.refresh_calls(),
        2,
        "one call for four forced refreshes"
    );
    assert_no_token_presented_twice(&env.sim);
    assert!(agent.end(libc::SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_socket_activation_the_broker_answers_on_the_socket_the_service_manager_holds() {
    if std::process::Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-socket-activate is not installed");
        return;
    }
    let env = Env::new().await;
    let before = env.login_stale(&alice());
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = free.local_addr().unwrap();
    drop(free);
    let upstream = env.sim.token_url();
    let broker = env.command(&["broker", "--upstream", &upstream]);
    let program = broker.as_std().get_program().to_owned();
    let mut command = tokio::process::Command::new("systemd-socket-activate");
    command
        .arg("--listen")
        .arg(address.to_string())
        .arg(program)
        .args(broker.as_std().get_args())
        .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", env.sim.token_url())
        .env_remove("CODEX_HOME");
    captured(&mut command);
    let mut activator = command.spawn().unwrap();
    // The socket is held before any broker runs: connecting succeeds, and the first request
    // starts the broker on it.
    let url = format!("http://{address}/oauth/token");
    let mut answered = None;
    for _ in 0..100 {
        match client()
            .post(&url)
            .json(&json!({
                "grant_type": "refresh_token",
                "refresh_token": rt(&before),
            }))
            .send()
            .await
        {
            Ok(response) => {
                answered = Some(answer(response).await);
                break;
            }
            // systemd-socket-activate binds a moment after it starts.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let (status, body) = answered.expect("the activated broker answered");
    assert_eq!(status, 200, "{}", error_code(&body));
    assert_eq!(body["refresh_token"], env.disk()["tokens"]["refresh_token"]);
    assert_eq!(env.sim.refresh_calls(), 1);
    let stdout = activator.stdout.take().unwrap();
    let first = tokio::time::timeout(BOUND, BufReader::new(stdout).lines().next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first,
        format!("listening on {url}"),
        "the passed socket, not --listen's default"
    );
    let _ = activator.kill().await;
}

/// `status --json` (or `agent status --json`) with the session's token URL set to `url`.
async fn status_with_token_url(env: &Env, args: &[&str], url: &str) -> (Value, String) {
    let mut command = env.command(args);
    command.env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", url);
    let output = run_bounded(command).await;
    let json = serde_json::from_str(&stdout(&output)).unwrap_or_else(|_| {
        panic!(
            "not JSON (exit {:?}): {}",
            output.status.code(),
            stderr(&output)
        )
    });
    (json, stderr(&output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_whether_the_token_url_reaches_this_homes_broker_and_warns_when_nothing_answers()
 {
    let env = Env::new().await;
    env.login_stale(&alice());
    let broker = Broker::start(&env, &[]).await;
    let broker_pid = u64::from(broker.child.id().unwrap());

    for args in [
        &["status", "--json"][..],
        &["agent", "status", "--json"][..],
    ] {
        let (json, warnings) = status_with_token_url(&env, args, &broker.url).await;
        assert_eq!(json["token_url"]["reaches"], "this_home", "{args:?}");
        assert_eq!(json["token_url"]["broker_pid"], json!(broker_pid));
        assert!(!warnings.contains("warning"), "{warnings}");
    }

    // Another home's broker: forwarded, so unprotected.
    let other = Env::new().await;
    let (json, warnings) = status_with_token_url(&other, &["status", "--json"], &broker.url).await;
    assert_eq!(json["token_url"]["reaches"], "other_home");
    assert!(
        warnings.contains("another Codex home's broker"),
        "{warnings}"
    );

    // Something else on the port (the authority itself, which runs in this test's process):
    // named by its holder.
    let (json, _) = status_with_token_url(&env, &["status", "--json"], &env.sim.token_url()).await;
    assert_eq!(json["token_url"]["reaches"], "not_a_broker");
    let holder = json["token_url"]["holder"].as_str().unwrap_or_default();
    assert!(
        holder.starts_with(&format!("pid {} ", std::process::id())),
        "{holder}"
    );
    broker.stop().await;

    // Nothing at all: every Codex refresh would fail, said loudly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}/oauth/token", closed.local_addr().unwrap());
    drop(closed);
    for args in [
        &["status", "--json"][..],
        &["agent", "status", "--json"][..],
    ] {
        let (json, warnings) = status_with_token_url(&env, args, &nowhere).await;
        assert_eq!(json["token_url"]["reaches"], "nothing_answers", "{args:?}");
        assert!(
            warnings.contains("every Codex refresh would fail"),
            "{warnings}"
        );
    }
}

/// Two network namespaces joined by a veth pair (10.201.N.1 in `inner`, 10.201.N.2 in
/// `outer`), removed when dropped: the only place a broker on an address other than loopback
/// is tried, so that nothing listens on this machine's own interfaces.
pub(super) struct Namespaces {
    pub(super) inner: String,
    pub(super) outer: String,
    pub(super) inner_address: String,
}

impl Namespaces {
    /// `None` when they cannot be made here (not root, no `ip`): the caller skips, saying so.
    pub(super) fn new() -> Option<Self> {
        // Tests of one process run at once: each pair has names and addresses of its own.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = (std::process::id() + seq * 101) % 250;
        let inner = format!("authstore-broker-{}-{seq}", std::process::id());
        let outer = format!("authstore-client-{}-{seq}", std::process::id());
        let made = Self {
            inner_address: format!("10.201.{n}.1"),
            inner: inner.clone(),
            outer: outer.clone(),
        };
        let (veth_inner, veth_outer) = (format!("asb{n}"), format!("asc{n}"));
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), inner.clone()],
            vec!["netns".into(), "add".into(), outer.clone()],
            vec![
                "link".into(),
                "add".into(),
                veth_inner.clone(),
                "netns".into(),
                inner.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                veth_outer.clone(),
                "netns".into(),
                outer.clone(),
            ],
            vec![
                "-n".into(),
                inner.clone(),
                "addr".into(),
                "add".into(),
                format!("10.201.{n}.1/30"),
                "dev".into(),
                veth_inner.clone(),
            ],
            vec![
                "-n".into(),
                outer.clone(),
                "addr".into(),
                "add".into(),
                format!("10.201.{n}.2/30"),
                "dev".into(),
                veth_outer.clone(),
            ],
            vec![
                "-n".into(),
                inner.clone(),
                "link".into(),
                "set".into(),
                veth_inner,
                "up".into(),
            ],
            vec![
                "-n".into(),
                outer.clone(),
                "link".into(),
                "set".into(),
                veth_outer,
                "up".into(),
            ],
            vec![
                "-n".into(),
                inner.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                outer.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for step in steps {
            let ran = std::process::Command::new("ip").args(&step).output();
            if !ran.is_ok_and(|output| output.status.success()) {
                eprintln!(
                    "skipped: cannot make network namespaces here (ip {step:?} failed; root needed)"
                );
                return None;
            }
        }
        Some(made)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for namespace in [&self.inner, &self.outer] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", namespace])
                .output();
        }
    }
}

/// POSTs a refresh of `refresh_token` to `url` from inside `namespace`; (status, body).
pub(super) async fn refresh_from_namespace(
    namespace: &str,
    url: &str,
    refresh_token: &str,
) -> (u16, Value) {
    const CLIENT: &str = "import json, sys, urllib.request, urllib.error\n\
        body = json.dumps({'grant_type': 'refresh_token', 'refresh_token': sys.argv[2]}).encode()\n\
        request = urllib.request.Request(sys.argv[1], data=body, headers={'Content-Type': 'application/json'})\n\
        try:\n    answer = urllib.request.urlopen(request, timeout=20)\n\
        except urllib.error.HTTPError as error:\n    answer = error\n\
        print(answer.status)\nprint(answer.read().decode())\n";
    let mut command = tokio::process::Command::new("ip");
    command.args([
        "netns",
        "exec",
        namespace,
        "python3",
        "-c",
        CLIENT,
        url,
        refresh_token,
    ]);
    captured(&mut command);
    let output = run_bounded(command).await;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, body) = text
        .split_once('\n')
        .unwrap_or_else(|| panic!("no answer: {}", stderr(&output)));
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body.trim()).unwrap_or(Value::Null),
    )
}

/// `authstore broker --listen 0.0.0.0:0` on `env`'s home, inside `namespace`; its upstream is this
/// machine's authority, which that namespace cannot reach: nothing a test does can leave either
/// namespace. Returns the process (stderr unread) and its port.
pub(super) async fn broker_in_namespace(env: &Env, namespace: &str) -> (Child, String) {
    let upstream = env.sim.token_url();
    let broker = env.command(&["broker", "--listen", "0.0.0.0:0", "--upstream", &upstream]);
    let mut command = tokio::process::Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(broker.as_std().get_program())
        .args(broker.as_std().get_args())
        .env_remove("CODEX_HOME");
    captured(&mut command);
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(BOUND, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let port = first
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/oauth/token")
        .to_owned();
    (child, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_address_other_than_loopback_the_broker_answers_no_client_off_its_loopback() {
    let Some(namespaces) = Namespaces::new() else {
        return;
    };
    let env = Env::new().await;
    let before = env.login_stale(&alice());
    let stored = std::fs::read(env.auth_path()).unwrap();
    let (mut child, port) = broker_in_namespace(&env, &namespaces.inner).await;
    let mut stderr_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = tokio::time::timeout(BOUND, stderr_lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(
        warning.unwrap_or_default().contains("not loopback"),
        "a warning about the address"
    );

    // From the other end of the veth pair: refused, and nothing spent or written.
    let remote = format!("http://{}:{port}/oauth/token", namespaces.inner_address);
    let (status, body) = refresh_from_namespace(&namespaces.outer, &remote, &rt(&before)).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "invalid_grant");
    assert_eq!(env.sim.refresh_calls(), 0);
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), stored);

    // From the broker's own loopback, the same request is the broker's to answer: it runs the
    // transaction (whose upstream is out of reach there: an answer Codex retries).
    let local = format!("http://127.0.0.1:{port}/oauth/token");
    let (status, _) = refresh_from_namespace(&namespaces.inner, &local, &rt(&before)).await;
    assert!([502, 503, 504].contains(&status), "{status}");
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), stored);
    let _ = child.kill().await;
}
