#![cfg(all(unix, feature = "postgres", feature = "simulator"))] // Unix only: a throwaway PostgreSQL cluster run as the postgres user
//! Many machines, one login: processes that stand for different machines (each with its own
//! Codex home) share one PostgreSQL store through the real binary's `--store`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use authstore_simulator::{Fault, Identity};
use authstore_testkit::binary::{Env, assert_success, run_bounded, stdout};
use authstore_testkit::home::Home;
use authstore_testkit::postgres::Cluster;

/// Machine 0 logs in; machines 1 to 8 use the login.
const MACHINES: usize = 9;

/// The authority (an [`Env`], whose own home only holds the login file), one Codex home per
/// machine, and the shared database's URL.
struct Machines {
    env: Env,
    homes: Vec<Home>,
    url: String,
}

impl Machines {
    async fn new(tag: &str) -> Self {
        let cluster = Cluster::shared();
        let database = cluster.create_database(tag);
        Self {
            env: Env::new().await,
            homes: (0..MACHINES).map(|_| Home::new()).collect(),
            url: cluster.url(&database),
        }
    }

    fn home(&self, machine: usize) -> &Path {
        self.homes[machine].path()
    }

    fn command(&self, machine: usize, args: &[&str]) -> tokio::process::Command {
        let mut all = vec!["--store", &self.url];
        all.extend_from_slice(args);
        let mut command = self.env.command_in(self.home(machine), &all);
        command.env_remove("AUTHSTORE_STORE");
        command
    }

    async fn run(&self, machine: usize, args: &[&str]) -> std::process::Output {
        run_bounded(self.command(machine, args)).await
    }

    /// Logs machine 0 in with a login whose access token is already stale.
    async fn login_stale(&self) {
        let document = self
            .env
            .new_login(&Identity::new("acct-1", "user-1"), Duration::from_secs(60));
        let file = self.env.login_file(&document);
        assert_success(
            &self
                .run(0, &["login", "--from", file.to_str().unwrap()])
                .await,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_sharing_one_database_refresh_once_and_every_mirror_is_updated() {
    let machines = Machines::new("machines").await;
    machines.login_stale().await;

    let runs: Vec<_> = (1..=8).map(|m| machines.run(m, &["token"])).collect();
    let outputs = futures::future::join_all(runs).await;
    for output in &outputs {
        assert_success(output);
    }
    assert_eq!(
        machines.env.sim.refresh_calls(),
        1,
        "one refresh for all machines"
    );
    assert_eq!(machines.env.sim.reuse_rejections(), 0);
    let printed = stdout(&outputs[0]);
    assert!(
        outputs.iter().all(|o| stdout(o) == printed),
        "every machine got the new token"
    );
    for machine in 1..=8 {
        let mirrored = authstore_testkit::token_on_disk(machines.home(machine), "access_token");
        assert!(
            mirrored.as_deref() == Some(printed.as_str()),
            "machine {machine}'s auth.json mirrors the new token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_row_lock_holder_mid_refresh_lets_the_next_machine_proceed() {
    let machines = Machines::new("killed").await;
    machines.login_stale().await;
    machines
        .env
        .sim
        .set_fault(Fault::Latency(Duration::from_secs(3)));

    let mut holder = machines
        .command(1, &["refresh", "--force"])
        .spawn()
        .unwrap();
    assert!(
        authstore_testkit::eventually(Duration::from_secs(10), async || {
            machines.env.sim.refresh_calls() == 1
        })
        .await
    );
    holder.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), holder.wait()).await;
    machines.env.sim.set_fault(Fault::None);

    let started = Instant::now();
    let next = machines
        .run(2, &["--lock-timeout", "20", "refresh", "--force"])
        .await;
    let waited = started.elapsed();
    let code = next.status.code();
    // The dead holder's request may have rotated the token (the window no client can close),
    // so the next refresh either succeeds or asks for a new login; it never times out waiting.
    assert!(
        code == Some(0) || code == Some(4),
        "exit {code:?}: {}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert!(
        waited < Duration::from_secs(20),
        "the next machine waited {waited:?}, as long as the lock timeout"
    );
}

fn json_line(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output)).expect("one JSON object on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_the_shared_stores_login_and_labels_the_local_mirror() {
    let machines = Machines::new("status").await;
    machines.login_stale().await;

    // A machine that never ran a command has no local file: its status is the store's.
    let status = machines.run(5, &["status", "--json"]).await;
    assert_success(&status);
    let status = json_line(&status);
    assert_eq!(status["logged_in"], true);
    assert_eq!(status["account_id"], "acct-1");
    assert_eq!(status["user_id"], "user-1");
    assert_eq!(status["refresh_due"], true, "the login is stale");
    let location = status["path"].as_str().unwrap();
    assert!(
        location.starts_with("postgres://postgres@127.0.0.1:") && location.ends_with("#default"),
        "{location}"
    );
    let mirror = &status["mirror"];
    assert_eq!(
        mirror["path"].as_str().map(PathBuf::from),
        Some(machines.home(5).join("auth.json"))
    );
    assert_eq!(
        mirror["logged_in"], false,
        "status only looks: nothing mirrored"
    );
    assert_eq!(mirror["in_sync"], false);
    assert!(!machines.home(5).join("auth.json").exists());

    // Once the machine used the login, its mirror holds exactly the store's document.
    assert_success(&machines.run(5, &["token"]).await);
    let status = json_line(&machines.run(5, &["status", "--json"]).await);
    assert_eq!(status["refresh_due"], false, "refreshed through the store");
    assert_eq!(status["mirror"]["logged_in"], true);
    assert_eq!(status["mirror"]["in_sync"], true);

    let text = machines.run(5, &["status"]).await;
    assert_success(&text);
    let text = stdout(&text);
    assert!(
        text.contains(&format!("store:        {location}")),
        "{text}"
    );
    assert!(text.contains("local mirror: "), "{text}");
    assert!(text.contains("in sync with the store"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_a_refresh_made_on_another_machine() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let machines = Machines::new("watch").await;
    machines.login_stale().await;
    let mut watch = machines.command(3, &["watch", "--json"]).spawn().unwrap();
    let mut stderr = BufReader::new(watch.stderr.take().unwrap()).lines();
    let mut events = BufReader::new(watch.stdout.take().unwrap()).lines();
    // The watcher has read the current state once it says what it watches.
    let started = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
        .await
        .expect("watch started in time")
        .unwrap()
        .unwrap_or_default();
    assert!(
        started.contains("watching postgres://postgres@127.0.0.1:"),
        "{started}"
    );

    assert_success(&machines.run(1, &["refresh", "--force"]).await);
    let line = tokio::time::timeout(Duration::from_secs(20), events.next_line())
        .await
        .expect("an event within the bound")
        .unwrap()
        .expect("a line");
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "refreshed");
    assert_eq!(event["account_id"], "acct-1");
    let refreshed = authstore_testkit::read_auth(machines.home(1)).unwrap();
    assert!(
        !line.contains(refreshed["tokens"]["access_token"].as_str().unwrap()),
        "an event carries no token"
    );
    assert!(
        machines.home(3).join("auth.json").metadata().is_err(),
        "watching writes no mirror"
    );
    watch.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), watch.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_unavailable_to_every_command_named_without_its_password() {
    let env = authstore_testkit::binary::Env::new().await;
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://alice:s3cret-pw@127.0.0.1:1/auth";
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["token"],
        &["watch"],
        &["watch", "--json"],
        &["refresh"],
    ] {
        let mut all = vec!["--store", url];
        all.extend_from_slice(args);
        let mut command = env.command(&all);
        command.env_remove("AUTHSTORE_STORE");
        let output = run_bounded(command).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(5), "{args:?}: {stderr}");
        assert!(
            stderr.contains("postgres://alice@127.0.0.1:1/auth#default"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{args:?}: the password leaked");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    assert!(!env.auth_path().exists(), "nothing was written locally");
}
