//! Sandboxes with real Codex (issue 18): two sandboxes made with `authstore sandbox add --dir
//! --json`, each directory bind-mounted as the `CODEX_HOME` of Codex processes in a mount and
//! network namespace of their own (`ip netns exec`, the host's Codex home hidden under a tmpfs),
//! which reach the host's broker only over a veth pair this test makes; beside them, Codex on
//! the host on the broker's loopback, and `authstore agent --broker` (the broker on every
//! address of this namespace) keeping the sandboxes in line.
//!
//! Rounds in which every app-server (the host's and each sandbox's) forces a refresh at once, a
//! `codex exec` in each sandbox, then `sandbox remove` of one sandbox and a login of another user
//! on the host while their Codex runs:
//! counted are the authority's calls per round, reuse, revoked families and failed answers; the
//! host's refresh tokens (every one the authority saw or holds) are searched for in every file
//! of both sandbox directories, sampled throughout, and in the logs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authstore_testkit::alice;
use authstore_testkit::binary::{assert_success, captured, stdout};
use authstore_testkit::process::BOUND;
use authstore_testkit::token;
use serde_json::Value;
use tokio::process::Command;

use crate::editors::{Answer, AppServer};
use crate::lab::*;

const ROUNDS: usize = 3;
/// The veth pair between this test's namespace (the host side, where the broker listens) and
/// the sandboxes' network namespace.
const HOST_ADDRESS: &str = "10.203.0.1";

/// The sandboxes' network namespace, joined to this one by a veth pair; deleted when dropped.
struct SandboxNet {
    name: String,
}

impl SandboxNet {
    fn new() -> Self {
        let name = format!("authstore-sandboxes-{}", std::process::id());
        let ns = name.as_str();
        let steps: [&[&str]; 7] = [
            &["netns", "add", ns],
            &[
                "link", "add", "sbxhost", "type", "veth", "peer", "name", "sbxbox", "netns", ns,
            ],
            &[
                "addr",
                "add",
                &format!("{HOST_ADDRESS}/30"),
                "dev",
                "sbxhost",
            ],
            &["link", "set", "sbxhost", "up"],
            &["-n", ns, "addr", "add", "10.203.0.2/30", "dev", "sbxbox"],
            &["-n", ns, "link", "set", "sbxbox", "up"],
            &["-n", ns, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let output = std::process::Command::new("ip")
                .args(step)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "ip {step:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // The sandboxes' namespace holds `lo` and the veth's other end, nothing else.
        allow_test_veth("sbxhost");
        Self { name }
    }
}

impl Drop for SandboxNet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", "sbxhost"])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// One sandbox: its directory, and where its Codex processes see it.
struct Box_ {
    dir: PathBuf,
    mount: PathBuf,
}

/// Codex with `args` inside the sandboxes' network namespace and a mount namespace of its own,
/// where `sandbox.dir` is bind-mounted on `sandbox.mount` (its `CODEX_HOME`) and the host's Codex
/// home is hidden under an empty tmpfs.
fn sandboxed_codex(
    lab: &Lab,
    net: &SandboxNet,
    sandbox: &Box_,
    url: &str,
    args: &[&str],
) -> Command {
    const MOUNT_THEN_RUN: &str =
        "mount --bind \"$1\" \"$2\" && mount -t tmpfs tmpfs \"$3\" && shift 3 && exec \"$@\"";
    let plain = lab.codex(args);
    let mut command = Command::new("ip");
    command.env_clear();
    for (name, value) in plain.as_std().get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    command
        .env("CODEX_HOME", &sandbox.mount)
        .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", url)
        .args(["netns", "exec", &net.name, "sh", "-c", MOUNT_THEN_RUN, "sh"])
        .arg(&sandbox.dir)
        .arg(&sandbox.mount)
        .arg(lab.home())
        .arg(lab.codex_bin())
        .args(args);
    captured(&mut command);
    command
}

/// Every distinct file content under the sandbox directories, read every 50 ms until stopped.
struct DirSampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashSet<String>>>,
    thread: std::thread::JoinHandle<usize>,
}

impl DirSampler {
    fn start(dirs: Vec<PathBuf>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let thread = std::thread::spawn({
            let (stop, seen) = (stop.clone(), seen.clone());
            move || {
                let mut samples = 0;
                while !stop.load(Ordering::Relaxed) {
                    for dir in &dirs {
                        for text in file_texts_up_to(dir, SAMPLED_BYTES) {
                            seen.lock().unwrap().insert(text);
                        }
                    }
                    samples += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                samples
            }
        });
        Self { stop, seen, thread }
    }

    fn finish(self) -> (usize, HashSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap();
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        (samples, seen)
    }
}

/// Files up to this size are read at every sample (auth.json and Codex's small state files);
/// larger ones (its logs and databases) at the end, by [`file_texts`] with no limit.
const SAMPLED_BYTES: u64 = 256 * 1024;

fn file_texts(dir: &Path) -> Vec<String> {
    file_texts_up_to(dir, u64::MAX)
}

fn file_texts_up_to(dir: &Path, limit: u64) -> Vec<String> {
    authstore_testkit::files::regular_files(dir, limit)
        .into_iter()
        .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned())
        .collect()
}

fn access_token_in(dir: &Path) -> Option<String> {
    let bytes = std::fs::read(dir.join("auth.json")).ok()?;
    let document: Value = serde_json::from_slice(&bytes).ok()?;
    document["tokens"]["access_token"]
        .as_str()
        .map(str::to_owned)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < BOUND, "not within {BOUND:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn describe(answer: &Answer) -> Option<String> {
    match answer {
        Answer::Token(_) => None,
        Answer::Failed(why) => Some(why.clone()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sandboxed_codex_gets_the_hosts_login_through_the_broker_and_never_its_refresh_token() {
    let mut lab = Lab::new().await;
    let managed = lab.configure_for_app_servers();
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    let net = SandboxNet::new();

    // The agent with the broker on every address of this namespace: its loopback for the host's
    // Codex, the veth for the sandboxes' (where it answers sandbox secrets only).
    let upstream = lab.sim.token_url();
    let agent = Agent::spawn_with(
        &lab,
        &[
            "-v",
            "--ahead",
            "600",
            "--broker",
            "--listen",
            "0.0.0.0:0",
            "--upstream",
            &upstream,
        ],
    );
    let url = agent.first("broker").await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let port = url
        .trim_end_matches("/oauth/token")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    lab.point_at(format!("http://127.0.0.1:{port}/oauth/token"));
    let sandbox_url = format!("http://{HOST_ADDRESS}:{port}/oauth/token");

    let mut boxes = Vec::new();
    for name in ["box-1", "box-2"] {
        let dir = lab.dir().join(name);
        let (output, _) = lab
            .run_authstore(&[
                "sandbox",
                "add",
                name,
                "--dir",
                dir.to_str().unwrap(),
                "--broker-url",
                &sandbox_url,
                "--json",
            ])
            .await;
        assert_success(&output);
        let added: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
        assert_eq!(
            added["env"]["CODEX_REFRESH_TOKEN_URL_OVERRIDE"],
            sandbox_url.as_str()
        );
        // Codex's other URLs in the sandbox: the broker's address too, which answers them with a
        // 404 at once (from the sandbox's namespace the authority is out of reach).
        let base = format!("http://{HOST_ADDRESS}:{port}");
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "chatgpt_base_url = \"{base}/backend-api/\"\n\
                 openai_base_url = \"{base}/backend-api/codex\"\n\n[analytics]\nenabled = false\n"
            ),
        )
        .unwrap();
        let mount = lab.dir().join(format!("mnt-{name}"));
        std::fs::create_dir_all(&mount).unwrap();
        boxes.push(Box_ { dir, mount });
    }
    let calls_at_start = lab.sim.refresh_calls();
    let sampler = DirSampler::start(boxes.iter().map(|b| b.dir.clone()).collect());
    let started = Instant::now();

    let mut host = AppServer::start(&lab, &managed, 0).await;
    let mut inside = Vec::new();
    for (i, sandbox) in boxes.iter().enumerate() {
        let command = sandboxed_codex(&lab, &net, sandbox, &sandbox_url, &["app-server"]);
        let mut command = command;
        command.env("CODEX_APP_SERVER_MANAGED_CONFIG_PATH", &managed);
        inside.push(AppServer::start_command(command, i + 1).await);
    }

    let mut calls_per_round = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..ROUNDS {
        let before = lab.sim.refresh_calls();
        let (host_answer, inside_answers) = tokio::join!(
            host.auth_status_refreshing(true),
            futures::future::join_all(inside.iter_mut().map(|s| s.auth_status_refreshing(true)))
        );
        calls_per_round.push(lab.sim.refresh_calls() - before);
        failures.extend(describe(&host_answer));
        failures.extend(inside_answers.iter().filter_map(describe));
        // The agent writes the host's new tokens into every sandbox.
        let current = token(&lab.disk(), "access_token");
        for sandbox in &boxes {
            eventually("the sandbox holds the host's current access token", || {
                access_token_in(&sandbox.dir).as_deref() == Some(current.as_str())
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A `codex exec` in each sandbox: its token is fresh, it sends no refresh.
    let before_exec = lab.sim.refresh_calls();
    let execs = futures::future::join_all(boxes.iter().map(|sandbox| {
        timed(sandboxed_codex(
            &lab,
            &net,
            sandbox,
            &sandbox_url,
            &["exec", "--skip-git-repo-check", "--color", "never", "hello"],
        ))
    }))
    .await;
    let exec_calls = lab.sim.refresh_calls() - before_exec;

    // box-1 removed while its Codex runs: the refresh it asks for is a clean "log in again" (the
    // first forced refresh may take the tokens the agent wrote there in the last round, without
    // asking); the host and box-2 keep working.
    let (output, _) = lab.run_authstore(&["sandbox", "remove", "box-1"]).await;
    assert_success(&output);
    let before = lab.sim.refresh_calls();
    let removed_first = inside[0].auth_status_refreshing(true).await;
    let removed_answer = inside[0].auth_status_refreshing(true).await;
    let removed_first_refused = matches!(removed_first, Answer::Failed(_));
    let other_answer = inside[1].auth_status_refreshing(true).await;
    let host_after = host.auth_status_refreshing(true).await;
    let after_removal_calls = lab.sim.refresh_calls() - before;

    // Another user logs in on the host while box-2's Codex runs: box-2 is logged out and never
    // gets that user's tokens, from the file or from the broker.
    let bob = lab.new_login(
        &authstore_simulator::Identity::new("acct-1", "user-bob"),
        FRESH,
    );
    lab.authstore_login(&bob).await;
    let bob_access = token(&bob, "access_token");
    let box2_after_bob = inside[1].auth_status_refreshing(true).await;
    let box2_got_bob = matches!(&box2_after_bob, Answer::Token(t) if *t == bob_access);
    let box2_logged_out = !boxes[1].dir.join("auth.json").exists();
    let (samples, mut seen) = sampler.finish();
    for sandbox in &boxes {
        seen.extend(file_texts(&sandbox.dir));
    }
    let took = started.elapsed();
    let host_stderr = host.stop().await;
    let mut inside_stderr = Vec::new();
    for server in inside {
        inside_stderr.push(server.stop().await);
    }
    let (_, events, agent_stderr) = agent.terminate().await;
    let stats = lab.sim.stats();
    let mut host_tokens = lab.sim.presented_refresh_tokens();
    host_tokens.push(token(&lab.disk(), "refresh_token"));
    host_tokens.push(token(&login, "refresh_token"));
    let bob_in_files = seen
        .iter()
        .filter(|text| text.contains(bob_access.as_str()))
        .count();
    let leaked_in_files = seen
        .iter()
        .filter(|text| host_tokens.iter().any(|t| text.contains(t.as_str())))
        .count();
    let events_text: String = events.iter().map(Value::to_string).collect();
    let logs = [&agent_stderr, &events_text, &host_stderr]
        .into_iter()
        .chain(inside_stderr.iter())
        .filter(|text| host_tokens.iter().any(|t| text.contains(t.as_str())))
        .count();
    let removed_is_login_again = matches!(removed_answer, Answer::Failed(_));
    let refused = agent_stderr
        .lines()
        .filter(|line| line.contains("refused a sandbox secret"))
        .count();
    println!(
        "figures: sandboxes with real Codex: {ROUNDS} rounds of forced refreshes (1 host app-server, \
         2 sandboxed) in {}ms; authority calls at set-up {calls_at_start}, per round {calls_per_round:?}, \
         by the sandboxed codex exec {exec_calls}, after box-1 was removed {after_removal_calls}; \
         failed answers {}; reuse {}, families revoked {}; {samples} samples of the sandbox \
         directories ({} distinct file contents), {leaked_in_files} holding a host refresh token; \
         logs holding one: {logs}; sandbox secrets the broker refused: {refused}; codex exec exit codes {:?}; box-1 after removal: {}; \
         another user's login on the host: box-2 logged out {box2_logged_out}, its Codex given that user's \
         token {box2_got_bob}, files holding it {bob_in_files}",
        millis(took),
        failures.len(),
        stats.reuse_rejections,
        stats.families_revoked,
        seen.len(),
        execs
            .iter()
            .map(|(o, _)| o.status.code())
            .collect::<Vec<_>>(),
        match (removed_first_refused, removed_is_login_again) {
            (true, _) => "refused at the first forced refresh",
            (false, true) =>
                "answered once from the file the agent wrote, then refused (log in again)",
            (false, false) => "still answered",
        },
    );
    assert!(failures.is_empty(), "failed answers: {failures:?}");
    assert!(
        calls_per_round.iter().all(|&c| c <= 1),
        "{calls_per_round:?}"
    );
    assert_eq!(exec_calls, 0, "the sandboxed codex exec refreshed");
    assert_eq!(stats.reuse_rejections, 0);
    assert_eq!(stats.families_revoked, 0);
    assert!(!lab.sim.is_family_revoked(family));
    assert!(samples > 10, "the sandbox directories were sampled");
    assert_eq!(
        leaked_in_files, 0,
        "a host refresh token in a sandbox directory"
    );
    assert_eq!(logs, 0, "a host refresh token in a log");
    assert!(
        removed_first_refused || removed_is_login_again,
        "the removed sandbox's Codex still got a token"
    );
    assert!(
        describe(&other_answer).is_none(),
        "box-2 after box-1's removal: {:?}",
        describe(&other_answer)
    );
    assert!(
        describe(&host_after).is_none(),
        "the host after box-1's removal: {:?}",
        describe(&host_after)
    );
    assert!(after_removal_calls <= 1);
    assert!(
        box2_logged_out,
        "box-2 kept a login after another user's login on the host"
    );
    assert!(!box2_got_bob, "box-2's Codex got another user's token");
    assert_eq!(
        bob_in_files, 0,
        "another user's token in a sandbox directory"
    );
}
