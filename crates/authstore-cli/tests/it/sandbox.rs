#![cfg(all(unix, feature = "simulator"))] // Unix only: modes, and the broker stopped with SIGTERM
//! `authstore sandbox`: access-only Codex homes. Real processes of the real binary (`sandbox`,
//! `broker`, `agent`, `login`, `logout`) against the embedded token authority, which revokes the
//! family on reuse: what each sandbox directory holds, what the broker answers a sandbox, what
//! the agent writes after the host changes, and that the host's refresh token is found nowhere
//! a sandbox can see.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use authstore_simulator::Identity;
use authstore_testkit::agent_process::Agent;
use authstore_testkit::alice;
use authstore_testkit::binary::*;
use serde_json::{Value, json};

use super::broker::{
    Broker, Namespaces, answer, broker_in_namespace, client, codex_refresh, refresh_from_namespace,
    rt,
};

const PREFIX: &str = "authstore-sandbox-";

/// `sandbox add NAME --dir DIR --json` on `env`'s home; its JSON.
async fn add(env: &Env, name: &str, dir: &Path) -> Value {
    let output = env
        .run(&[
            "sandbox",
            "add",
            name,
            "--dir",
            dir.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert_success(&output);
    serde_json::from_str(stdout(&output).trim()).expect("sandbox add --json prints JSON")
}

/// Writes `document` as the host's `auth.json` (0600).
fn write_host(env: &Env, document: &Value) {
    std::fs::write(env.auth_path(), serde_json::to_vec(document).unwrap()).unwrap();
    std::fs::set_permissions(env.auth_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn token_of(document: &Value, name: &str) -> String {
    authstore_testkit::token(document, name)
}

/// Fails, naming the file but never the token, when any host refresh token in `tokens` is in
/// any file under `dir` or in `texts`.
fn assert_nowhere(tokens: &[String], dir: &Path, texts: &[&str]) {
    for (i, token) in tokens.iter().enumerate() {
        for (path, bytes) in authstore_testkit::files::regular_files(dir, u64::MAX) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(token.as_str()),
                "host refresh token #{i} found in {}",
                path.display()
            );
        }
        for (j, text) in texts.iter().enumerate() {
            assert!(
                !text.contains(token.as_str()),
                "host refresh token #{i} found in output #{j}"
            );
        }
    }
}

/// Polls (bounded) until `check` holds; the sandbox files are written by another process.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < BOUND, "not within {BOUND:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_holds_the_hosts_access_token_and_a_secret_of_its_own_never_the_refresh_token() {
    let env = Env::new().await;
    env.login_stale(&alice());
    let dir = env.dir().join("box-a");
    let added = add(&env, "box-a", &dir).await;
    // The host was stale: one refresh, through the transaction, before the sandbox was made.
    assert_eq!(env.sim.refresh_calls(), 1);
    let host = env.disk();

    assert_eq!(added["name"], "box-a");
    assert_eq!(added["dir"], dir.to_str().unwrap());
    assert_eq!(added["env"]["CODEX_HOME"], dir.to_str().unwrap());
    assert!(
        added["env"]["CODEX_REFRESH_TOKEN_URL_OVERRIDE"]
            .as_str()
            .unwrap()
            .ends_with("/oauth/token")
    );
    let sandbox = read_json(&dir.join("auth.json"));
    assert_eq!(
        token_of(&sandbox, "access_token"),
        token_of(&host, "access_token")
    );
    assert_eq!(token_of(&sandbox, "id_token"), token_of(&host, "id_token"));
    assert_eq!(
        sandbox["tokens"]["account_id"],
        host["tokens"]["account_id"]
    );
    assert_eq!(sandbox["auth_mode"], host["auth_mode"]);
    let secret = token_of(&sandbox, "refresh_token");
    assert!(secret.starts_with(PREFIX), "the secret says what it is");
    // 256 random bits, base64url: 43 characters after the prefix.
    assert_eq!(secret.len(), PREFIX.len() + 43);
    assert!(sandbox["last_refresh"].as_str().is_some());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("auth.json")), 0o600);

    // The registry: 0600, digests only.
    let registry = env.home().join("authstore-sandboxes.json");
    assert_eq!(mode(&registry), 0o600);
    let text = std::fs::read_to_string(&registry).unwrap();
    assert!(!text.contains(&secret), "the registry holds the secret");
    let listed = env.run(&["sandbox", "list", "--json"]).await;
    assert_success(&listed);
    let list: Value = serde_json::from_str(stdout(&listed).trim()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "box-a");
    assert_eq!(list[0]["logged_in"], true);
    assert!(!stdout(&listed).contains(&secret));
    let plain = env.run(&["sandbox", "list"]).await;
    assert!(stdout(&plain).contains("box-a") && !stdout(&plain).contains(&secret));

    let host_tokens = env.sim.presented_refresh_tokens();
    let mut all = host_tokens.clone();
    all.push(token_of(&host, "refresh_token"));
    assert_nowhere(&all, &dir, &[&text, &stdout(&listed), &stdout(&plain)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_add_refuses_bad_names_taken_names_and_a_directory_with_a_login_of_its_own() {
    let env = Env::new().await;
    env.login_stale(&alice());
    for bad in ["", "-x", ".hidden", "a/b", "sp ace", &"x".repeat(65)] {
        let output = env.run(&["sandbox", "add", "--", bad]).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{bad:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("not a sandbox name"),
            "{}",
            stderr(&output)
        );
    }
    assert!(!env.home().join("sandboxes").exists());

    let dir = env.dir().join("box");
    add(&env, "box", &dir).await;
    let again = env.run(&["sandbox", "add", "box"]).await;
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));

    // A directory that holds a Codex login of its own is never overwritten.
    let other = env.dir().join("real-home");
    std::fs::create_dir_all(&other).unwrap();
    let login = env.new_login(
        &Identity::new("acct-9", "user-9"),
        Duration::from_secs(3600),
    );
    std::fs::write(other.join("auth.json"), serde_json::to_vec(&login).unwrap()).unwrap();
    let before = std::fs::read(other.join("auth.json")).unwrap();
    let output = env
        .run(&["sandbox", "add", "other", "--dir", other.to_str().unwrap()])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("holds a Codex login of its own"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(other.join("auth.json")).unwrap(), before);
    // The host home itself is not a sandbox.
    let output = env
        .run(&[
            "sandbox",
            "add",
            "self",
            "--dir",
            env.home().to_str().unwrap(),
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    let removed = env.run(&["sandbox", "remove", "nothing-here"]).await;
    assert_eq!(removed.status.code(), Some(2));
    assert!(stderr(&removed).contains("no sandbox named nothing-here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_login_on_the_host_sandbox_add_says_so_and_makes_nothing() {
    let env = Env::new().await;
    let dir = env.dir().join("box");
    let output = env
        .run(&["sandbox", "add", "box", "--dir", dir.to_str().unwrap()])
        .await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(!dir.exists());
    assert!(!env.home().join("authstore-sandboxes.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_sandbox_refreshes_at_once_on_a_stale_host_make_one_authority_call_and_keep_the_secret()
 {
    let env = Env::new().await;
    env.login_stale(&alice());
    let dir = env.dir().join("box");
    add(&env, "box", &dir).await;
    let secret = token_of(&read_json(&dir.join("auth.json")), "refresh_token");
    // The host goes stale again (a new login of the same account and user).
    env.login_stale(&alice());
    let calls = env.sim.refresh_calls();
    let broker = Broker::start(&env, &[]).await;

    let answers = futures_join(8, || {
        let (url, secret) = (broker.url.clone(), secret.clone());
        async move { codex_refresh(&url, &secret).await }
    })
    .await;
    assert_eq!(
        env.sim.refresh_calls(),
        calls + 1,
        "one authority call for eight"
    );
    assert_eq!(env.sim.reuse_rejections(), 0);
    let host = env.disk();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{}", body["error"]);
        assert_eq!(
            body["refresh_token"],
            secret.as_str(),
            "the sandbox keeps its secret"
        );
        assert_eq!(
            body["access_token"],
            token_of(&host, "access_token").as_str()
        );
        assert_eq!(body["id_token"], token_of(&host, "id_token").as_str());
    }
    // A fresh host: answered with no authority call.
    let (status, body) = codex_refresh(&broker.url, &secret).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["access_token"],
        token_of(&host, "access_token").as_str()
    );
    assert_eq!(env.sim.refresh_calls(), calls + 1);

    let logs = broker.stop().await;
    let texts: Vec<String> = answers.iter().map(|(_, body)| body.to_string()).collect();
    let mut seen: Vec<&str> = texts.iter().map(String::as_str).collect();
    seen.push(&logs);
    let mut host_tokens = env.sim.presented_refresh_tokens();
    host_tokens.push(token_of(&host, "refresh_token"));
    assert_nowhere(&host_tokens, &dir, &seen);
}

/// `n` calls of `call` at once.
async fn futures_join<F, Fut>(n: usize, call: F) -> Vec<(u16, Value)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (u16, Value)> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(call())).collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_or_unknown_sandbox_secret_gets_invalid_grant_and_costs_no_authority_call() {
    let env = Env::new().await;
    env.login_stale(&alice());
    let dir = env.dir().join("box");
    add(&env, "box", &dir).await;
    let secret = token_of(&read_json(&dir.join("auth.json")), "refresh_token");
    let broker = Broker::start(&env, &[]).await;
    let calls = env.sim.refresh_calls();
    let host = std::fs::read(env.auth_path()).unwrap();

    let removed = env.run(&["sandbox", "remove", "box"]).await;
    assert_success(&removed);
    // The directory is left as it is, so that its Codex asks (and hears no) at its next refresh.
    assert!(dir.is_dir());
    assert_eq!(
        token_of(&read_json(&dir.join("auth.json")), "refresh_token"),
        secret
    );
    for presented in [secret.clone(), format!("{PREFIX}{}", "A".repeat(43))] {
        let (status, body) = codex_refresh(&broker.url, &presented).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "invalid_grant", "{body}");
    }
    assert_eq!(env.sim.refresh_calls(), calls, "nothing sent upstream");
    assert_eq!(
        std::fs::read(env.auth_path()).unwrap(),
        host,
        "the host untouched"
    );
    let list = env.run(&["sandbox", "list", "--json"]).await;
    assert_eq!(stdout(&list).trim(), "[]");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_logging_out_inside_a_sandbox_removes_that_sandbox_only() {
    let env = Env::new().await;
    env.login_stale(&alice());
    let (dir_a, dir_b) = (env.dir().join("a"), env.dir().join("b"));
    add(&env, "a", &dir_a).await;
    add(&env, "b", &dir_b).await;
    let secret_a = token_of(&read_json(&dir_a.join("auth.json")), "refresh_token");
    let secret_b = token_of(&read_json(&dir_b.join("auth.json")), "refresh_token");
    let broker = Broker::start(&env, &[]).await;
    let host = std::fs::read(env.auth_path()).unwrap();

    // Codex's logout: POST the revoke URL with the refresh token it holds.
    let response = client()
        .post(broker.revoke_url())
        .json(&json!({"token": secret_a, "token_type_hint": "refresh_token", "client_id": "app_EMoamEEZ73f0CkXaXp7hrann"}))
        .send()
        .await
        .unwrap();
    let (status, _) = answer(response).await;
    assert_eq!(status, 200);
    assert_eq!(env.sim.revoke_calls(), 0, "the host's login is not revoked");
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), host);
    // (Codex removes its own auth.json when it logs out; the broker only forgets the secret.)
    let (status, _) = codex_refresh(&broker.url, &secret_a).await;
    assert_eq!(status, 401);
    let (status, body) = codex_refresh(&broker.url, &secret_b).await;
    assert_eq!(status, 200, "{body}");
    let list: Value =
        serde_json::from_str(stdout(&env.run(&["sandbox", "list", "--json"]).await).trim())
            .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "b");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_rewrites_every_sandbox_after_each_host_refresh_and_logs_them_out_for_another_identity()
 {
    let env = Env::new().await;
    // Fresh for 20 minutes: outside the agent's window at first.
    let login = env.new_login(&alice(), Duration::from_secs(1200));
    write_host(&env, &login);
    let (dir_a, dir_b) = (env.dir().join("a"), env.dir().join("b"));
    add(&env, "a", &dir_a).await;
    add(&env, "b", &dir_b).await;
    let secret_a = token_of(&read_json(&dir_a.join("auth.json")), "refresh_token");
    assert_eq!(env.sim.refresh_calls(), 0);

    // An agent whose window (40 minutes) the token is inside: it refreshes at once (and the
    // new tokens, which live an hour, are outside it).
    let mut agent = Agent::start(&env, "2400");
    agent.wait_for("refreshed").await;
    let host = env.disk();
    let fresh = token_of(&host, "access_token");
    assert_ne!(fresh, token_of(&login, "access_token"));
    for dir in [&dir_a, &dir_b] {
        eventually("the sandbox holds the host's new access token", || {
            std::fs::read(dir.join("auth.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .is_some_and(|doc| token_of(&doc, "access_token") == fresh)
        })
        .await;
    }
    let a = read_json(&dir_a.join("auth.json"));
    assert_eq!(
        token_of(&a, "refresh_token"),
        secret_a,
        "the secret is kept"
    );
    assert_eq!(token_of(&a, "id_token"), token_of(&host, "id_token"));
    let sandboxes = agent.wait_for("sandboxes").await;
    assert!(
        sandboxes["written"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{sandboxes}"
    );

    // Another user logs in on the host: every sandbox is logged out, none gets the new tokens.
    let bob = env.new_login(
        &Identity::new("acct-1", "user-bob"),
        Duration::from_secs(7200),
    );
    let file = env.login_file(&bob);
    let output = env.run(&["login", "--from", file.to_str().unwrap()]).await;
    assert_success(&output);
    // Logged out by the login command or by the agent, whichever came first (both wait for the
    // registry's lock): either way, by the time the command is done.
    for dir in [&dir_a, &dir_b] {
        assert!(
            !dir.join("auth.json").exists(),
            "{} still logged in",
            dir.display()
        );
        assert!(dir.is_dir());
    }
    let list: Value =
        serde_json::from_str(stdout(&env.run(&["sandbox", "list", "--json"]).await).trim())
            .unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|s| s["logged_in"] == false),
        "{list}"
    );
    // The agent sees the new login and writes nothing into the sandboxes.
    loop {
        let event = agent.next_event().await;
        // The agent's manager was alice's: it reports the change, or waits for a login it
        // may serve.
        if ["logged_in", "identity_changed", "waiting"]
            .contains(&event["event"].as_str().unwrap_or(""))
        {
            break;
        }
    }
    for dir in [&dir_a, &dir_b] {
        assert!(!dir.join("auth.json").exists());
    }
    // Added again, a sandbox gets a new secret and bob's tokens.
    add(&env, "a", &dir_a).await;
    let again = read_json(&dir_a.join("auth.json"));
    assert_ne!(token_of(&again, "refresh_token"), secret_a);
    assert_eq!(
        token_of(&again, "access_token"),
        token_of(&bob, "access_token")
    );
    agent.end(libc::SIGTERM).await;

    // With no agent running, a host logout logs it out again, and says so.
    let output = env.run(&["logout"]).await;
    assert_success(&output);
    assert!(
        stderr(&output).contains("logged out the sandboxes a"),
        "{}",
        stderr(&output)
    );
    assert!(!dir_a.join("auth.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_broker_answers_a_sandboxs_secret_and_nothing_else() {
    let Some(namespaces) = Namespaces::new() else {
        return;
    };
    let env = Env::new().await;
    let login = env.new_login(&alice(), Duration::from_secs(3600));
    write_host(&env, &login);
    let dir = env.dir().join("box");
    add(&env, "box", &dir).await;
    let secret = token_of(&read_json(&dir.join("auth.json")), "refresh_token");
    let stored = std::fs::read(env.auth_path()).unwrap();
    let (mut child, port) = broker_in_namespace(&env, &namespaces.inner).await;
    let remote = format!("http://{}:{port}/oauth/token", namespaces.inner_address);

    // The sandbox's secret, from the other end of the veth pair (a container's bridge).
    let (status, body) = refresh_from_namespace(&namespaces.outer, &remote, &secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refresh_token"], secret.as_str());
    assert_eq!(
        body["access_token"],
        token_of(&login, "access_token").as_str()
    );
    // The host's refresh token from there: refused, nothing spent, nothing written.
    let (status, body) = refresh_from_namespace(&namespaces.outer, &remote, &rt(&login)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(env.sim.refresh_calls(), 0);
    assert_eq!(std::fs::read(env.auth_path()).unwrap(), stored);
    let _ = child.kill().await;
}
