#![cfg(all(unix, feature = "simulator"))] // Unix only: SIGTERM and SIGINT
//! `authstore agent`: keeps the token fresh ahead of the refresh window, survives an authority
//! that is briefly down, and stops cleanly on SIGTERM and SIGINT.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authstore_simulator::{Fault, Identity};
use authstore_testkit::binary::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

fn spawn_agent(env: &Env, ahead: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut command = env.command(&["agent", "--json", "--ahead", ahead]);
    command.stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Sends `signal` to the agent and checks that it stops cleanly.
async fn stop(agent: &mut Child, signal: i32) {
    let pid = agent.id().unwrap() as i32;
    // SAFETY: kill(2) with a pid we spawned.
    unsafe { libc::kill(pid, signal) };
    let status = tokio::time::timeout(BOUND, agent.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the agent stops cleanly on signal {signal}: {status}"
    );
}

async fn next_event(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(BOUND, lines.next_line())
        .await
        .expect("an agent event in time")
        .unwrap()
        .expect("the agent is running");
    serde_json::from_str(&line).unwrap()
}

async fn wait_for(lines: &mut Lines<BufReader<ChildStdout>>, event: &str) -> Value {
    loop {
        let value = next_event(lines).await;
        if value["event"] == event {
            return value;
        }
    }
}

fn seconds_left(env: &Env) -> i64 {
    let disk = env.disk();
    let token = disk["tokens"]["access_token"].as_str().unwrap().to_owned();
    let exp = authstore::document::access_token_expiry(&token).expect("exp");
    let exp = exp.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    exp - SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refreshes_ahead_of_the_window_so_the_file_is_never_stale() {
    let env = Env::new().await;
    // Tokens live 20 s; the agent refreshes when fewer than 15 s are left: every ~5 s.
    env.sim.set_access_token_lifetime(Duration::from_secs(20));
    authstore_testkit::write_auth(
        env.home(),
        &env.sim.auth_json(&Identity::new("acct-1", "user-1")),
    );
    let (mut agent, mut lines) = spawn_agent(&env, "15");
    wait_for(&mut lines, "started").await;

    let mut lowest = i64::MAX;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(14) {
        lowest = lowest.min(seconds_left(&env));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Whole seconds on both sides, and a check interval of up to a second: 2 s of slack.
    assert!(
        lowest >= 13,
        "a reader saw a token with only {lowest} s left"
    );
    let refreshes = env.sim.successful_refreshes();
    assert!(
        refreshes >= 2,
        "the agent refreshed {refreshes} times in 14 s"
    );
    assert_eq!(env.sim.reuse_rejections(), 0);
    assert_no_token_presented_twice(&env.sim);

    stop(&mut agent, libc::SIGTERM).await;
    wait_for(&mut lines, "stopped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_waits_out_an_unavailable_authority_and_a_missing_login() {
    let env = Env::new().await;
    env.sim.set_access_token_lifetime(Duration::from_secs(20));
    let (mut agent, mut lines) = spawn_agent(&env, "15");
    wait_for(&mut lines, "started").await;
    // Nobody is logged in yet.
    let waiting = wait_for(&mut lines, "waiting").await;
    assert!(
        waiting["reason"]
            .as_str()
            .unwrap()
            .contains("not logged in")
    );

    // A stale login while the authority is down: the agent reports and backs off.
    env.sim.set_fault(Fault::Status(503));
    env.sim.set_access_token_lifetime(Duration::from_secs(10));
    authstore_testkit::write_auth(
        env.home(),
        &env.sim.auth_json(&Identity::new("acct-1", "user-1")),
    );
    env.sim.set_access_token_lifetime(Duration::from_secs(20));
    let waiting = wait_for(&mut lines, "waiting").await;
    assert!(
        waiting["reason"].as_str().unwrap().contains("temporarily"),
        "{waiting}"
    );

    // The authority comes back: the agent refreshes.
    env.sim.set_fault(Fault::None);
    wait_for(&mut lines, "refreshed").await;
    assert!(seconds_left(&env) > 15);

    stop(&mut agent, libc::SIGINT).await;
}
