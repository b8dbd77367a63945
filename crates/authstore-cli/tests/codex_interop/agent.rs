//! `authstore agent` beside Codex (issue 6): with the agent keeping the token ahead of Codex's
//! window, real Codex processes running all the time over several token lifetimes never call the
//! token endpoint and never report a refresh failure; without the agent, the same burst does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use authstore::document::access_token_expiry;
use authstore_testkit::alice;
use authstore_testkit::binary::{assert_no_token_presented_twice, stderr};
use authstore_testkit::eventually;
use authstore_testkit::process::BOUND;
use authstore_testkit::token;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::lab::*;

/// The agent run: access tokens live a little longer than Codex's 5-minute window, and the agent
/// refreshes when fewer than [`AGENT_AHEAD_SECS`] are left, so it refreshes every 8 s (the
/// authority rounds `exp` up to a whole second) while Codex, using real time too, always finds
/// more than 300 s left.
const AGENT_TOKEN_LIFETIME: Duration = Duration::from_secs(312);
const AGENT_AHEAD_SECS: u64 = 305;
/// Agent refresh cycles (token lifetimes, as the agent lives them) the run covers.
const AGENT_CYCLES: usize = 5;
/// After the last counted refresh, Codex keeps running on its token this long.
const AGENT_TAIL: Duration = Duration::from_secs(2);
/// The run stops here even if the agent fell behind (the assertions then fail).
const AGENT_RUN_CAP: Duration = Duration::from_secs(52);

/// One finished process of the agent run.
struct Run {
    exit: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs the commands `make` builds one after another until `stop` is set.
async fn repeat_until(stop: &AtomicBool, make: impl Fn() -> Command) -> Vec<Run> {
    let mut runs = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let (output, took) = timed(make()).await;
        runs.push(Run {
            exit: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            stderr: stderr(&output),
            took,
        });
    }
    runs
}

/// Seconds the access token in auth.json has left (negative when expired), or `None` when the
/// file cannot be read whole.
fn seconds_left_on_disk(lab: &Lab) -> Option<f64> {
    let bytes = std::fs::read(lab.auth_path()).ok()?;
    let document: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = access_token_expiry(document["tokens"]["access_token"].as_str()?)?;
    Some(match exp.duration_since(SystemTime::now()) {
        Ok(left) => left.as_secs_f64(),
        Err(past) => -past.duration().as_secs_f64(),
    })
}

/// Issue 6: with `authstore agent` keeping the token ahead of Codex's window, real Codex processes
/// running all the time over several token lifetimes never call the token endpoint and never
/// report a refresh failure. The control, the same `codex features list` burst on a stale token
/// without the agent, runs at the end in this same lab (it shows that these Codex processes do
/// reach this authority when their token is stale) and, racing, in
/// `races::codex_processes_racing_on_a_stale_token_spend_it_repeatedly_unless_authstore_kept_it_fresh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_agent_running_codex_never_calls_the_token_endpoint_over_many_token_lifetimes() {
    const FEATURES_WORKERS: usize = 4;
    const STATUS_WORKERS: usize = 1;
    const TOKEN_WORKERS: usize = 2;
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), AGENT_TOKEN_LIFETIME);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    lab.sim.set_access_token_lifetime(AGENT_TOKEN_LIFETIME);

    let agent = Agent::spawn(&lab, AGENT_AHEAD_SECS);
    assert!(
        eventually(BOUND, async || agent.count("started") == 1).await,
        "the agent never reported `started`"
    );

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    // Watches auth.json and the agent; stops the workers once the agent has refreshed
    // AGENT_CYCLES times and Codex has run AGENT_TAIL on the last token.
    let watch = async {
        let (mut lowest, mut samples, mut unreadable) = (f64::MAX, 0_u64, 0_u64);
        loop {
            match seconds_left_on_disk(&lab) {
                Some(left) => lowest = lowest.min(left),
                None => unreadable += 1,
            }
            samples += 1;
            let covered = agent
                .moments("refreshed")
                .get(AGENT_CYCLES - 1)
                .is_some_and(|last| last.elapsed() >= AGENT_TAIL);
            if covered || started.elapsed() >= AGENT_RUN_CAP {
                stop.store(true, Ordering::SeqCst);
                return (lowest, samples, unreadable);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let features = (0..FEATURES_WORKERS)
        .map(|_| repeat_until(&stop, || lab.codex(&["features", "list"])))
        .collect::<Vec<_>>();
    let status = (0..STATUS_WORKERS)
        .map(|_| repeat_until(&stop, || lab.codex(&["login", "status"])))
        .collect::<Vec<_>>();
    let tokens = (0..TOKEN_WORKERS)
        .map(|_| repeat_until(&stop, || lab.authstore(&["token"])))
        .collect::<Vec<_>>();
    let ((lowest, samples, unreadable), features, status, tokens) = tokio::join!(
        watch,
        futures::future::join_all(features),
        futures::future::join_all(status),
        futures::future::join_all(tokens),
    );
    let ran = started.elapsed();
    let features: Vec<Run> = features.into_iter().flatten().collect();
    let status: Vec<Run> = status.into_iter().flatten().collect();
    let tokens: Vec<Run> = tokens.into_iter().flatten().collect();

    // SIGTERM while the agent sleeps: it has reported every refresh the authority served it, and
    // its next check is more than a second away.
    let authstore_calls = || lab.calls_by_client().get("authstore").copied().unwrap_or(0);
    assert!(
        eventually(BOUND, async || {
            agent.count("refreshed") == authstore_calls()
                && seconds_left_on_disk(&lab)
                    .is_some_and(|left| left >= AGENT_AHEAD_SECS as f64 + 1.0)
        })
        .await,
        "the agent did not settle between refreshes"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refreshed_at = agent.moments("refreshed");
    let (agent_status, agent_events, agent_stderr) = agent.terminate().await;

    // The figures before the assertions, so that a failure shows them.
    let calls = lab.calls_by_client();
    let total_calls = lab.sim.refresh_calls();
    let agent_refreshes = agent_events
        .iter()
        .filter(|event| event["event"] == "refreshed")
        .count();
    let codex_calls = total_calls as i64 - agent_refreshes as i64;
    let mut event_counts: BTreeMap<String, usize> = BTreeMap::new();
    for event in &agent_events {
        let name = event["event"].as_str().unwrap_or("?").to_owned();
        *event_counts.entry(name).or_default() += 1;
    }
    let cycles: Vec<Duration> = refreshed_at.windows(2).map(|w| w[1] - w[0]).collect();
    let mut codex_stderr: BTreeMap<&str, usize> = BTreeMap::new();
    for run in features.iter().chain(&status) {
        *codex_stderr.entry(run.stderr.as_str()).or_default() += 1;
    }
    println!(
        "figures: agent run {}ms (tokens live {}s, agent --ahead {AGENT_AHEAD_SECS}): agent \
         events {event_counts:?}, refresh cycle {}; {} codex features list ({FEATURES_WORKERS} \
         at a time) {}; {} codex login status {}; {} authstore token {}; authority: {total_calls} \
         refresh calls, by client {calls:?}, Codex calls (total minus agent refreshes) \
         {codex_calls}, {} reuse; auth.json read {samples} times, lowest {lowest:.1}s left, \
         {unreadable} unreadable; Codex stderr (text: runs) {codex_stderr:?}; agent stderr {:?}",
        millis(ran),
        AGENT_TOKEN_LIFETIME.as_secs(),
        summary(&cycles),
        features.len(),
        summary(&features.iter().map(|run| run.took).collect::<Vec<_>>()),
        status.len(),
        summary(&status.iter().map(|run| run.took).collect::<Vec<_>>()),
        tokens.len(),
        summary(&tokens.iter().map(|run| run.took).collect::<Vec<_>>()),
        lab.sim.reuse_rejections(),
        agent_stderr,
    );

    assert!(
        agent_refreshes >= AGENT_CYCLES,
        "the agent refreshed {agent_refreshes} times in {}ms; the run needs {AGENT_CYCLES} cycles",
        millis(ran)
    );
    assert!(
        !features.is_empty() && !status.is_empty() && !tokens.is_empty(),
        "every kind of worker ran"
    );
    for run in features.iter().chain(&status) {
        assert_eq!(run.exit, Some(0), "a Codex process failed: {}", run.stderr);
        assert!(
            !run.stderr.contains("Failed to refresh"),
            "a Codex process reported a refresh failure: {}",
            run.stderr
        );
    }
    for run in &status {
        assert!(
            run.stderr.contains("Logged in using ChatGPT"),
            "codex login status: {}",
            run.stderr
        );
    }
    for run in &tokens {
        assert_eq!(run.exit, Some(0), "authstore token failed: {}", run.stderr);
        assert!(!run.stdout.is_empty(), "authstore token printed nothing");
    }
    // No Codex process called the token endpoint: every call came from the agent. Both ways of
    // telling: the client_id Codex sends, and the total minus the agent's own `refreshed` events
    // (which also shows that no `authstore token` process had to refresh).
    assert_eq!(calls.get("codex"), None, "Codex called the token endpoint");
    assert_eq!(codex_calls, 0, "refresh calls the agent did not report");
    assert_eq!(
        calls,
        BTreeMap::from([("authstore", agent_refreshes)]),
        "refresh calls by client"
    );
    assert_no_token_presented_twice(&lab.sim);
    assert!(!lab.sim.is_family_revoked(family));
    assert_current_token_on_disk(&lab, family);
    assert_eq!(unreadable, 0, "a reader saw a missing or torn auth.json");
    assert!(
        lowest > 300.0,
        "auth.json held a token with only {lowest:.1}s left: inside Codex's window"
    );
    // The agent: active at once (no other agent on this home), nothing but its refreshes, then
    // a clean stop on SIGTERM.
    assert_eq!(
        event_counts,
        BTreeMap::from([
            ("active".to_owned(), 1),
            ("refreshed".to_owned(), agent_refreshes),
            ("started".to_owned(), 1),
            ("stopped".to_owned(), 1),
        ]),
        "agent events"
    );
    assert_eq!(agent_events.last().unwrap()["event"], json!("stopped"));
    assert!(
        agent_status.success(),
        "the agent did not stop cleanly on SIGTERM: {agent_status}; stderr: {agent_stderr}"
    );

    // The control, without the agent: the same burst on a stale token in this lab calls the
    // endpoint (so the zero above is the agent's doing, not Codex looking elsewhere).
    let stale = lab.new_login(&alice(), STALE);
    lab.authstore_login(&stale).await;
    let control = codex_burst(&lab, FEATURES_WORKERS).await;
    assert!(
        control.calls >= 1,
        "without the agent, Codex made no call on a stale token"
    );
    assert_eq!(control.successes, 1, "exactly one refresh succeeds");
    println!(
        "figures: control, agent stopped, {FEATURES_WORKERS} codex features list at once on a \
         stale token: {} calls, {} refused as reused, {} as invalidated; {}",
        control.calls,
        control.reuse,
        control.rejected - control.reuse,
        summary(&control.durations)
    );
}
