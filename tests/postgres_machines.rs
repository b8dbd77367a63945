#![cfg(all(feature = "postgres", feature = "simulator"))]
//! Many machines, one login: processes that stand for different machines (each with its own
//! Codex home) share one PostgreSQL store through the real binary's `--store`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use authstore::simulator::{Fault, Identity};
use common::binary::{Env, assert_success, run_bounded, stdout};
use common::postgres::Cluster;

struct Machines {
    env: Env,
    url: String,
}

impl Machines {
    async fn new(tag: &str) -> Self {
        let cluster = Cluster::shared();
        let database = cluster.create_database(tag);
        Self {
            env: Env::new().await,
            url: cluster.url(&database),
        }
    }

    fn home(&self, machine: usize) -> PathBuf {
        let home = self.env.home().join(format!("machine-{machine}"));
        std::fs::create_dir_all(&home).unwrap();
        home
    }

    fn command(&self, machine: usize, args: &[&str]) -> tokio::process::Command {
        let home = self.home(machine);
        let mut all = vec!["--store", &self.url, "--codex-home", home.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut command = self.env.command(&all);
        command.env_remove("AUTHSTORE_STORE");
        command
    }

    async fn run(&self, machine: usize, args: &[&str]) -> std::process::Output {
        run_bounded(self.command(machine, args)).await
    }

    /// Logs machine 0 in with a login whose access token is already stale.
    async fn login_stale(&self) {
        self.env
            .sim
            .set_access_token_lifetime(Duration::from_secs(60));
        let document = self.env.sim.auth_json(&Identity::new("acct-1", "user-1"));
        self.env
            .sim
            .set_access_token_lifetime(Duration::from_secs(3600));
        let file = self.env.home().join("login.json");
        std::fs::write(&file, document.to_string()).unwrap();
        assert_success(
            &self
                .run(0, &["login", "--from", file.to_str().unwrap()])
                .await,
        );
    }
}

fn local_access_token(home: &Path) -> Option<String> {
    let disk = common::read_auth(home)?;
    disk["tokens"]["access_token"].as_str().map(str::to_owned)
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
        let mirrored = local_access_token(&machines.home(machine));
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
        common::eventually(Duration::from_secs(10), async || {
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
