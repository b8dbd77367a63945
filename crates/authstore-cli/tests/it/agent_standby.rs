#![cfg(all(unix, feature = "simulator"))] // Unix only: SIGKILL, SIGTERM
//! One active `authstore agent` per home: a second one is a standby, says so, and takes over
//! within a second when the first is killed; `status` names the active agent only while it runs.
//! Real processes of the real binary against the embedded token authority.

use std::time::{Duration, Instant};

use authstore_simulator::Identity;
use authstore_testkit::agent_process::{Agent, reported_agent_pid, status_json};
use authstore_testkit::binary::*;

/// How soon a standby must be named after the active agent dies (the promise).
const TAKEOVER: Duration = Duration::from_secs(1);

fn log_in(env: &Env) {
    authstore_testkit::write_auth(
        env.home(),
        &env.sim.auth_json(&Identity::new("acct-1", "user-1")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_replaced_by_the_standby_within_a_second_and_the_token_stays_fresh() {
    let env = Env::new().await;
    // Tokens live 20 s; an agent refreshes when fewer than 15 s are left: every ~5 s.
    env.sim.set_access_token_lifetime(Duration::from_secs(20));
    log_in(&env);

    let mut first = Agent::start(&env, "15");
    let active = first.wait_for("active").await;
    assert_eq!(active["pid"], first.pid);
    let mut second = Agent::start(&env, "15");
    let standby = second.wait_for("standby").await;
    assert_eq!(standby["active_pid"], first.pid, "{standby}");

    // Other processes see the first one, with when it became active and when it looks next.
    let status = status_json(&env).await;
    let agent = &status["agent"];
    assert_eq!(agent["pid"], first.pid, "{status}");
    assert_eq!(agent["since"], active["since"]);
    let next_check = agent["next_check"].as_str().expect("next_check is set");
    assert!(
        chrono::DateTime::parse_from_rfc3339(next_check).is_ok(),
        "{next_check}"
    );

    let killed = Instant::now();
    first.end(libc::SIGKILL).await;
    let named = loop {
        if reported_agent_pid(&env).await == Some(u64::from(second.pid)) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < TAKEOVER,
            "the standby was not named within {TAKEOVER:?} of the SIGKILL"
        );
    };
    eprintln!("the standby was named {named:?} after the SIGKILL");
    let active = second.wait_for("active").await;
    assert_eq!(active["pid"], second.pid);

    // The new active agent keeps the token fresh: it refreshes when the token is due.
    let refreshes = env.sim.successful_refreshes();
    second.wait_for("refreshed").await;
    assert!(env.sim.successful_refreshes() > refreshes);
    assert!(
        env.seconds_left() >= 14,
        "{} s left after the refresh",
        env.seconds_left()
    );
    assert_no_token_presented_twice(&env.sim);

    assert!(second.end(libc::SIGTERM).await.success());
    assert_eq!(reported_agent_pid(&env).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_says_so_and_a_stopped_agent_is_no_longer_reported() {
    let env = Env::new().await;
    log_in(&env);
    let output = env.run(&["status"]).await;
    assert_success(&output);
    assert!(
        stdout(&output).lines().any(|l| l == "agent:        none"),
        "{}",
        stdout(&output)
    );

    let mut active = Agent::start(&env, "600");
    active.wait_for("active").await;
    let output = env.run(&["status"]).await;
    let text = stdout(&output);
    let line = text
        .lines()
        .find(|l| l.starts_with("agent:"))
        .unwrap_or_else(|| panic!("no agent line in: {text}"));
    assert!(
        line.starts_with(&format!("agent:        pid {} since 20", active.pid))
            && line.contains(" next check 20"),
        "{line}"
    );

    // `agent status` names the same process beside the service's state.
    let service = agent_status(&env).await;
    assert_eq!(service["agent"]["pid"], active.pid, "{service}");
    assert_eq!(service["installed"], false, "{service}");

    // A second agent, in text mode, says it is a standby and whom it waits for.
    let mut standby = Agent::spawn(env.command(&["agent", "--ahead", "600"]));
    let said = loop {
        let line = standby
            .next_line_within(BOUND)
            .await
            .expect("the standby is running");
        if line.contains(" standby ") {
            break line;
        }
    };
    assert!(
        said.contains(&format!("active_pid={}", active.pid)),
        "{said}"
    );
    // A standby stops on SIGTERM too, and is never the one reported.
    assert_eq!(reported_agent_pid(&env).await, Some(u64::from(active.pid)));
    assert!(standby.end(libc::SIGTERM).await.success());

    // Stopped with SIGTERM: no longer reported, though its note stays on disk.
    assert!(active.end(libc::SIGTERM).await.success());
    assert!(env.home().join("authstore-agent.json").exists());
    assert_eq!(reported_agent_pid(&env).await, None);
    let output = env.run(&["status"]).await;
    assert!(
        stdout(&output).lines().any(|l| l == "agent:        none"),
        "{}",
        stdout(&output)
    );
    let service = agent_status(&env).await;
    assert_eq!(service["agent"], serde_json::Value::Null, "{service}");
}

/// `agent status --json` in a user home of its own, with no service manager on `PATH`, so that
/// nothing asks this machine's.
async fn agent_status(env: &Env) -> serde_json::Value {
    let user = tempfile::tempdir().unwrap();
    let mut command = env.command(&["agent", "status", "--json"]);
    command
        .env("HOME", user.path())
        .env("XDG_CONFIG_HOME", user.path().join(".config"))
        .env("PATH", user.path());
    let output = run_bounded(command).await;
    assert_success(&output);
    serde_json::from_slice(&output.stdout).expect("agent status --json prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_an_agent_stopped_with_sigterm() {
    let env = Env::new().await;
    log_in(&env);
    let mut first = Agent::start(&env, "600");
    first.wait_for("active").await;
    let mut second = Agent::start(&env, "600");
    second.wait_for("standby").await;

    assert!(first.end(libc::SIGTERM).await.success());
    let active = second.wait_for("active").await;
    assert_eq!(active["pid"], second.pid);
    assert_eq!(reported_agent_pid(&env).await, Some(u64::from(second.pid)));
    assert!(second.end(libc::SIGTERM).await.success());
    assert_eq!(reported_agent_pid(&env).await, None);
}

/// An agent in a container that shares the home (another PID namespace) calls itself pid 1;
/// `status` on the host names it by the pid the host sees, instead of reporting no agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_in_another_pid_namespace_is_named_by_the_pid_seen_here() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a new PID namespace (unshare --pid) needs root");
        return;
    }
    let env = Env::new().await;
    log_in(&env);
    let inner = env.command(&["agent", "--json", "--ahead", "600"]);
    let inner = inner.as_std();
    let mut command = tokio::process::Command::new("unshare");
    // --kill-child: the agent dies with the unshare process the test stops.
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut agent = Agent::spawn(command);
    let active = agent.wait_for("active").await;
    assert_eq!(active["pid"], 1, "pid 1 in its own namespace: {active}");

    let pid = reported_agent_pid(&env)
        .await
        .expect("the agent in the other namespace is reported");
    assert_ne!(pid, 1, "named by the pid this side sees");
    let program = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(program.trim(), "authstore", "pid {pid} is the agent");

    // unshare ignores SIGTERM while it waits for its child: stop the agent itself, by the pid
    // this side sees, and unshare exits with it.
    // SAFETY: kill(2) on the agent process the test started (checked by name above).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(BOUND, agent.child.wait())
        .await
        .expect("the agent ends in time")
        .unwrap();
    assert!(status.success(), "the agent stopped cleanly: {status}");
    assert_eq!(reported_agent_pid(&env).await, None);
}
