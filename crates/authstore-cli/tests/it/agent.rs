#![cfg(all(unix, feature = "simulator"))] // Unix only: SIGTERM and SIGINT
//! `authstore agent`: keeps the token fresh ahead of the refresh window, survives an authority
//! that is briefly down, and stops cleanly on SIGTERM and SIGINT.

use std::time::Duration;

use authstore_simulator::{Fault, Identity};
use authstore_testkit::agent_process::Agent;
use authstore_testkit::binary::*;

/// Sends `signal` to the agent and checks that it stops cleanly.
async fn stop(agent: &mut Agent, signal: i32) {
    let status = agent.end(signal).await;
    assert!(
        status.success(),
        "the agent stops cleanly on signal {signal}: {status}"
    );
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
    let mut agent = Agent::start(&env, "15");
    agent.wait_for("started").await;

    let mut lowest = i64::MAX;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(14) {
        lowest = lowest.min(env.seconds_left());
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
    agent.wait_for("stopped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_waits_out_an_unavailable_authority_and_a_missing_login() {
    let env = Env::new().await;
    env.sim.set_access_token_lifetime(Duration::from_secs(20));
    let mut agent = Agent::start(&env, "15");
    agent.wait_for("started").await;
    // Nobody is logged in yet.
    let waiting = agent.wait_for("waiting").await;
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
    let waiting = agent.wait_for("waiting").await;
    assert!(
        waiting["reason"].as_str().unwrap().contains("temporarily"),
        "{waiting}"
    );

    // The authority comes back: the agent refreshes.
    env.sim.set_fault(Fault::None);
    agent.wait_for("refreshed").await;
    assert!(env.seconds_left() > 15);

    stop(&mut agent, libc::SIGINT).await;
}
