//! The editor scenario (issue 11): every editor window (VS Code, Windsurf, JetBrains, the Claude
//! Code plugin) runs its own `codex app-server` on the one Codex home, and asks it for the token
//! over JSON lines on stdio: `initialize`, `initialized`, then `getAuthStatus` with
//! `includeToken`, which makes Codex 0.171.0 refresh a token that has fewer than 300 s left
//! (its own window) before answering.
//!
//! Here [`EDITORS`] real app-servers share one home, and the test asks all of them at once, round
//! after round, over [`LIFETIMES`] token lifetimes as Codex lives them (tokens live
//! [`EDITOR_TOKEN_LIFETIME`], so Codex's window opens 7 s after each refresh; nothing sleeps to
//! make a token stale). The authority revokes the family when a spent token comes back.
//!
//! - Without the agent, each window in which the token turns stale is a race between the
//!   app-servers (Codex calls the token endpoint before taking any lock): measured below.
//! - With `authstore agent --ahead` [`EDITOR_AGENT_AHEAD_SECS`] beside them, the agent refreshes
//!   before Codex's window opens and the app-servers adopt its tokens from `auth.json`: no Codex
//!   call, every request answered with a token, no refresh token presented twice.
//!
//! Every request Codex makes goes to the embedded authority: `chatgpt_base_url` and
//! `openai_base_url` in `$CODEX_HOME/config.toml` point at it (without `openai_base_url`,
//! 0.171.0 resolves `chatgpt.com` at start-up to fetch its model list),
//! `CODEX_APP_SERVER_MANAGED_CONFIG_PATH` names an empty file, analytics are off, and the suite
//! runs in a loopback-only network namespace. The authority's request log shows what Codex asked
//! of it; one test also runs an app-server under `strace -f` (when the machine has strace) and
//! checks that every socket address it named, DNS servers included, was the authority's.
//!
//! Each run prints one `editor-race-row` line, which `scripts/editor-race-demo.sh` turns into a
//! table.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use authstore_testkit::alice;
use authstore_testkit::binary::assert_no_token_presented_twice;
use authstore_testkit::eventually;
use authstore_testkit::process::BOUND;
use authstore_testkit::token;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::lab::*;

/// App-servers (editor windows) on the one home.
const EDITORS: usize = 3;
/// Access tokens live a little longer than Codex's 300 s window: Codex finds each new token stale
/// 7 s (up to 8 s: the authority rounds `exp` up to a whole second) after it was issued.
const EDITOR_TOKEN_LIFETIME: Duration = Duration::from_secs(307);
/// The agent refreshes when fewer than this many seconds are left: 3 s before Codex would.
const EDITOR_AGENT_AHEAD_SECS: u64 = 303;
/// Token lifetimes, as Codex lives them, that each run covers.
const LIFETIMES: u32 = 3;
/// Between two rounds of requests (an editor asks again a moment later).
const ROUND_PAUSE: Duration = Duration::from_millis(250);

/// Codex's lifetime of a token: from its issue until Codex's 300 s window opens.
fn codex_lifetime() -> Duration {
    EDITOR_TOKEN_LIFETIME - Duration::from_secs(300)
}

/// One editor window's `codex app-server`, spoken to over JSON lines on stdio.
pub struct AppServer {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    next_id: u64,
}

/// What `getAuthStatus` answered.
pub enum Answer {
    /// `authToken` was a string: the token the editor would use.
    Token(String),
    /// No token (`authToken` null, e.g. after a refused refresh) or an error response,
    /// described without any token.
    Failed(String),
}

impl Lab {
    /// Points every URL of Codex's at this authority and turns analytics off; returns the path
    /// of the (empty) managed configuration file.
    pub fn configure_for_app_servers(&self) -> PathBuf {
        let base = self.sim.base_url();
        let config = format!(
            "chatgpt_base_url = \"{base}/backend-api/\"\n\
             openai_base_url = \"{base}/backend-api/codex\"\n\
             \n\
             [analytics]\n\
             enabled = false\n"
        );
        std::fs::write(self.home().join("config.toml"), config).unwrap();
        let managed = self.dir().join("managed_config.toml");
        std::fs::write(&managed, "").unwrap();
        managed
    }
}

/// `codex app-server` as the editors start it, with every URL of Codex's on this authority.
fn app_server_command(lab: &Lab, managed_config: &Path) -> Command {
    let mut command = lab.codex(&["app-server"]);
    command.env("CODEX_APP_SERVER_MANAGED_CONFIG_PATH", managed_config);
    command
}

/// `command` run under `strace -f`, which writes every `connect`, `sendto` and `sendmsg` of the
/// process and its threads and children to `trace`; same environment, same stdio.
fn traced(strace: &Path, command: &Command, trace: &Path) -> Command {
    let inner = command.as_std();
    let mut traced = Command::new(strace);
    traced.env_clear();
    for (name, value) in inner.get_envs() {
        if let Some(value) = value {
            traced.env(name, value);
        }
    }
    traced
        .args(["-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o"])
        .arg(trace)
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    traced
}

/// The socket addresses of the internet families (`AF_INET`, `AF_INET6`) in an strace log, one
/// per system call that named one, as strace prints them.
fn internet_addresses(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter_map(|line| {
            let start = line
                .find("{sa_family=AF_INET,")
                .or_else(|| line.find("{sa_family=AF_INET6,"))?;
            let end = start + line[start..].find('}')?;
            Some(line[start..=end].to_owned())
        })
        .collect()
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

impl AppServer {
    /// Starts `codex app-server` and completes the editor's handshake.
    pub async fn start(lab: &Lab, managed_config: &Path, editor: usize) -> Self {
        Self::start_command(app_server_command(lab, managed_config), editor).await
    }

    pub async fn start_command(mut command: Command, editor: usize) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .spawn()
            .expect("start codex app-server");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        let mut server = Self {
            child,
            stdin,
            stdout,
            stderr,
            next_id: 0,
        };
        let initialized = server
            .request(
                "initialize",
                json!({"clientInfo": {"name": format!("editor-{editor}"), "version": "1.0.0"}}),
            )
            .await;
        assert!(
            initialized.get("result").is_some(),
            "initialize failed: {initialized}"
        );
        server.send(&json!({"method": "initialized"})).await;
        server
    }

    async fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the app-server");
        self.stdin
            .flush()
            .await
            .expect("flush the app-server's stdin");
    }

    /// Sends a request and returns its response, skipping notifications (bounded).
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"id": id, "method": method, "params": params}))
            .await;
        let response = tokio::time::timeout(BOUND, async {
            loop {
                let line = self
                    .stdout
                    .next_line()
                    .await
                    .expect("read the app-server's stdout")
                    .expect("the app-server closed its stdout before answering");
                let message: Value =
                    serde_json::from_str(&line).expect("the app-server writes JSON lines");
                if message["id"] == json!(id) {
                    return message;
                }
            }
        })
        .await;
        response.unwrap_or_else(|_| panic!("the app-server answered {method} within the bound"))
    }

    /// `getAuthStatus` as editors ask it: with the token, without forcing a refresh.
    async fn auth_status(&mut self) -> Answer {
        self.auth_status_refreshing(false).await
    }

    /// `getAuthStatus` with the token; `refresh_token` makes Codex refresh before answering,
    /// however fresh its token.
    pub async fn auth_status_refreshing(&mut self, refresh_token: bool) -> Answer {
        let response = self
            .request(
                "getAuthStatus",
                json!({"includeToken": true, "refreshToken": refresh_token}),
            )
            .await;
        match response["result"]["authToken"].as_str() {
            Some(token) => Answer::Token(token.to_owned()),
            None => {
                // Without the id (so that equal answers count together) and any token.
                let mut described = response.clone();
                if let Some(response) = described.as_object_mut() {
                    response.remove("id");
                }
                if let Some(result) = described["result"].as_object_mut() {
                    result.remove("authToken");
                }
                Answer::Failed(described.to_string())
            }
        }
    }

    /// Closes stdin (the editor window closes) and waits, bounded; returns stderr.
    pub async fn stop(self) -> String {
        let Self {
            mut child,
            stdin,
            stderr,
            ..
        } = self;
        drop(stdin);
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        tokio::time::timeout(BOUND, stderr)
            .await
            .expect("the app-server's stderr closed")
            .unwrap()
    }
}

/// What one run of the scenario did.
struct EditorRun {
    rounds: usize,
    answered: usize,
    failed: usize,
    /// Failed answers, described (no token), with their counts.
    failures: BTreeMap<String, usize>,
    /// Token-endpoint calls by Codex (`client_id` is not authstore's).
    codex_calls: usize,
    /// Token-endpoint calls by the agent or the broker (authstore's `client_id`).
    authstore_calls: usize,
    /// Refresh tokens Codex presented more than once (the race's mark).
    codex_tokens_presented_again: usize,
    reuse: u64,
    /// The login's family was revoked: the user must log in again.
    relogin: bool,
    /// Distinct access tokens each editor was answered with.
    distinct_tokens: Vec<usize>,
    /// The least time left on any token an editor was answered with, in seconds.
    lowest_left: f64,
    /// Requests Codex made of the authority besides the token endpoint, by target path.
    other_requests: BTreeMap<String, usize>,
    stderr_lines: BTreeMap<String, usize>,
    took: Duration,
}

impl EditorRun {
    fn row(&self, label: &str) -> String {
        format!(
            "editor-race-row\t{label}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.codex_calls,
            self.reuse,
            self.answered,
            self.failed,
            if self.relogin { "yes" } else { "no" },
            self.codex_calls + self.authstore_calls,
        )
    }

    fn figures(&self, label: &str) -> String {
        format!(
            "figures: editors {label}: {EDITORS} app-servers, {} rounds in {}ms (tokens live {}s, \
             {LIFETIMES} Codex lifetimes): {} answered, {} failed {:?}; token endpoint: {} Codex \
             calls, {} agent or broker calls, {} Codex refresh tokens presented again, {} reuse, family \
             revoked: {}; distinct tokens per editor {:?}; lowest {:.1}s left on an answered \
             token; other requests to the authority {:?}; app-server stderr {:?}",
            self.rounds,
            millis(self.took),
            EDITOR_TOKEN_LIFETIME.as_secs(),
            self.answered,
            self.failed,
            self.failures,
            self.codex_calls,
            self.authstore_calls,
            self.codex_tokens_presented_again,
            self.reuse,
            self.relogin,
            self.distinct_tokens,
            self.lowest_left,
            self.other_requests,
            self.stderr_lines,
        )
    }
}

/// What runs beside the app-servers.
#[derive(Clone, Copy, PartialEq)]
enum Beside {
    Nothing,
    /// `authstore agent`, refreshing ahead of Codex's window.
    Agent,
    /// `authstore broker`, Codex's token endpoint.
    Broker,
}

/// Logs in with short-lived tokens, starts the app-servers (and the agent or the broker), asks
/// all of them for the token at once, round after round, for [`LIFETIMES`] Codex lifetimes of
/// the login's token, then stops everything (the broker is returned running) and counts.
async fn editors_over_token_lifetimes(
    beside: Beside,
) -> (Lab, EditorRun, Option<Agent>, Option<Broker>) {
    let mut lab = Lab::new().await;
    let managed = lab.configure_for_app_servers();
    let login = lab.new_login(&alice(), EDITOR_TOKEN_LIFETIME);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    lab.sim.set_access_token_lifetime(EDITOR_TOKEN_LIFETIME);
    let login_expiry = expiry_of(&token(&login, "access_token"));

    let broker = match beside {
        Beside::Broker => Some(lab.start_broker().await),
        _ => None,
    };
    let agent = (beside == Beside::Agent).then(|| Agent::spawn(&lab, EDITOR_AGENT_AHEAD_SECS));
    if let Some(agent) = &agent {
        assert!(
            eventually(BOUND, async || agent.count("started") == 1).await,
            "the agent never reported `started`"
        );
    }
    // One window after another, as a user opens them.
    let mut editors = Vec::new();
    for editor in 0..EDITORS {
        editors.push(AppServer::start(&lab, &managed, editor).await);
    }

    // The run ends LIFETIMES Codex lifetimes after the login's token was issued (its expiry
    // minus its lifetime), plus one round.
    let issued = login_expiry - EDITOR_TOKEN_LIFETIME;
    let end = issued + codex_lifetime() * LIFETIMES + ROUND_PAUSE;
    let started = Instant::now();
    let mut answers: Vec<Vec<Answer>> = (0..EDITORS).map(|_| Vec::new()).collect();
    let mut rounds = 0;
    let mut lowest_left = f64::MAX;
    while SystemTime::now() < end {
        let round = futures::future::join_all(editors.iter_mut().map(AppServer::auth_status));
        let round = tokio::time::timeout(BOUND, round)
            .await
            .expect("a round of requests finished within the bound");
        let now = SystemTime::now();
        for (editor, answer) in round.into_iter().enumerate() {
            if let Answer::Token(access) = &answer {
                let left = match expiry_of(access).duration_since(now) {
                    Ok(left) => left.as_secs_f64(),
                    Err(past) => -past.duration().as_secs_f64(),
                };
                lowest_left = lowest_left.min(left);
            }
            answers[editor].push(answer);
        }
        rounds += 1;
        tokio::time::sleep(ROUND_PAUSE).await;
    }
    let took = started.elapsed();

    let mut stderr_lines: BTreeMap<String, usize> = BTreeMap::new();
    for editor in editors {
        for line in editor.stop().await.lines() {
            // Without its timestamp and colours, so that equal lines count together.
            let line = line.rsplit("\u{1b}[0m ").next().unwrap_or(line);
            *stderr_lines
                .entry(line.chars().take(160).collect())
                .or_default() += 1;
        }
    }

    let events = lab.sim.refresh_events();
    let codex_events: Vec<_> = events
        .iter()
        .filter(|event| sender(&event.client_id) == "codex")
        .collect();
    let mut presented: HashMap<&str, usize> = HashMap::new();
    for event in &codex_events {
        *presented.entry(event.refresh_token.as_str()).or_default() += 1;
    }
    let other_requests = requests_besides_the_token_endpoint(&lab);
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut answered = 0;
    for answer in answers.iter().flatten() {
        match answer {
            Answer::Token(_) => answered += 1,
            Answer::Failed(described) => *failures.entry(described.clone()).or_default() += 1,
        }
    }
    let run = EditorRun {
        rounds,
        answered,
        failed: failures.values().sum(),
        failures,
        codex_calls: codex_events.len(),
        authstore_calls: events.len() - codex_events.len(),
        codex_tokens_presented_again: presented.values().filter(|&&count| count > 1).count(),
        reuse: lab.sim.reuse_rejections(),
        relogin: lab.sim.is_family_revoked(family),
        distinct_tokens: answers
            .iter()
            .map(|answers| {
                let mut tokens: Vec<&str> = answers
                    .iter()
                    .filter_map(|answer| match answer {
                        Answer::Token(access) => Some(access.as_str()),
                        Answer::Failed(_) => None,
                    })
                    .collect();
                tokens.sort();
                tokens.dedup();
                tokens.len()
            })
            .collect(),
        lowest_left,
        other_requests,
        stderr_lines,
        took,
    };
    (lab, run, agent, broker)
}

/// The requests the authority's log holds besides `POST /oauth/token`, as `METHOD path`
/// (without the query string), with their counts.
fn requests_besides_the_token_endpoint(lab: &Lab) -> BTreeMap<String, usize> {
    let mut requests: BTreeMap<String, usize> = BTreeMap::new();
    for (method, target) in lab.sim.requests() {
        let path = target.split('?').next().unwrap_or_default();
        if (method.as_str(), path) != ("POST", "/oauth/token") {
            *requests.entry(format!("{method} {path}")).or_default() += 1;
        }
    }
    requests
}

/// The requests an app-server makes at start-up of `chatgpt_base_url` and `openai_base_url`
/// reached this authority, one model-list fetch per app-server included (the one that goes to
/// `chatgpt.com` unless `openai_base_url` is set), and nothing else was asked of it.
fn assert_codex_asked_only_this_authority(run: &EditorRun) {
    for request in run.other_requests.keys() {
        assert!(
            request.starts_with("GET /backend-api/"),
            "Codex asked the authority for something unexpected: {request}"
        );
    }
    assert!(
        run.other_requests
            .get("GET /backend-api/codex/models")
            .is_some_and(|&count| count >= EDITORS),
        "not every app-server fetched its model list from this authority: {:?}",
        run.other_requests
    );
}

/// Measured with Codex 0.171.0, eleven runs out of eleven: at the first stale moment all three
/// app-servers call the token endpoint with the login's refresh token (one succeeds, one is refused
/// as reused, which revokes the family, one as invalidated); at the next, the three call with the
/// successor, which the revocation killed; then every request fails (6 calls, 1 reuse, 74 to 77 of
/// about 250 requests failed). The assertions keep to what the race must show, not those exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn editor_app_servers_without_the_agent_race_for_a_stale_token_and_lose_the_login() {
    let (lab, run, _, _) = editors_over_token_lifetimes(Beside::Nothing).await;
    println!("{}", run.figures("without the agent"));
    println!("{}", run.row("without agent"));
    assert_codex_asked_only_this_authority(&run);
    assert_eq!(run.authstore_calls, 0);
    // The race: more than one app-server spent the same stale refresh token.
    assert!(
        run.codex_tokens_presented_again >= 1 && run.codex_calls >= 2,
        "no refresh token was presented twice ({} Codex calls): the app-servers did not race",
        run.codex_calls
    );
    assert!(run.reuse >= 1, "the authority refused no token as reused");
    assert!(run.relogin, "the family survived the reuse");
    // The editors see it: requests answered without a token, each from the same cause.
    assert!(run.failed >= 1, "no editor request failed");
    assert!(
        run.failures
            .keys()
            .all(|failure| failure.contains("\"authMethod\":\"chatgpt\"")),
        "failed answers of another kind: {:?}",
        run.failures
    );
    // And the user must log in again: the token on disk is refused.
    let on_disk = token(&lab.disk(), "refresh_token");
    assert!(
        lab.sim.refresh(&on_disk).is_err(),
        "the refresh token on disk still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn editor_app_servers_beside_the_agent_make_no_token_call_and_every_request_gets_a_token() {
    let (lab, run, agent, _) = editors_over_token_lifetimes(Beside::Agent).await;
    let agent = agent.expect("the agent runs");
    let (agent_status, agent_events, agent_stderr) = agent.terminate().await;
    let agent_refreshes = agent_events
        .iter()
        .filter(|event| event["event"] == "refreshed")
        .count();
    println!("{}", run.figures("beside the agent"));
    println!("{}", run.row("with agent"));
    println!("figures: agent refreshes {agent_refreshes}; agent stderr {agent_stderr:?}");
    assert_codex_asked_only_this_authority(&run);
    // Every call came from the agent, by both ways of telling: the client_id Codex sends, and
    // the agent's own `refreshed` events.
    assert_eq!(run.codex_calls, 0, "Codex called the token endpoint");
    assert_eq!(
        run.authstore_calls, agent_refreshes,
        "token-endpoint calls the agent did not report"
    );
    assert!(
        agent_refreshes >= LIFETIMES as usize,
        "the agent refreshed {agent_refreshes} times over {LIFETIMES} token lifetimes"
    );
    assert_no_token_presented_twice(&lab.sim);
    assert!(!run.relogin, "the family was revoked");
    let family = lab.sim.family_of(&token(&lab.disk(), "refresh_token"));
    assert_current_token_on_disk(
        &lab,
        family.expect("auth.json holds a token of the authority"),
    );
    // Every editor request was answered with a token, and each app-server moved on to the
    // agent's tokens, read from disk (it made no call of its own): the login's, then one more
    // at least per Codex lifetime that ended during the run.
    assert!(run.rounds >= 1);
    assert_eq!(run.failed, 0, "editor requests failed: {:?}", run.failures);
    for (editor, &distinct) in run.distinct_tokens.iter().enumerate() {
        assert!(
            distinct >= LIFETIMES as usize,
            "editor {editor} was answered with {distinct} distinct tokens over {LIFETIMES} token \
             lifetimes: it did not adopt the agent's"
        );
    }
    assert!(
        run.lowest_left > 0.0,
        "an editor was answered with an expired token"
    );
    assert!(
        agent_status.success(),
        "the agent did not stop cleanly on SIGTERM: {agent_status}; stderr: {agent_stderr}"
    );
}

/// The app-servers' token endpoint is `authstore broker` (`CODEX_REFRESH_TOKEN_URL_OVERRIDE`):
/// in each window in which the token turns stale the three race as before, but the broker
/// answers the first with one authority call and the others (who present the token it just
/// rotated) with its successor, so the family survives and every request gets a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn editor_app_servers_through_the_broker_make_one_authority_call_per_window_and_every_request_gets_a_token()
 {
    let (lab, run, _, broker) = editors_over_token_lifetimes(Beside::Broker).await;
    let broker_stderr = broker.expect("the broker runs").stop().await;
    println!("{}", run.figures("through the broker"));
    println!("{}", run.row("with broker"));
    assert_codex_asked_only_this_authority(&run);
    // Codex never reached the authority itself: every call came from the broker.
    assert_eq!(run.codex_calls, 0, "Codex called the authority directly");
    // One call per window: the login's token turns stale once, then each successor once (the
    // last maybe after the run ended).
    assert!(
        (1..=LIFETIMES as usize).contains(&run.authstore_calls),
        "{} authority calls over {LIFETIMES} Codex lifetimes",
        run.authstore_calls
    );
    assert_no_token_presented_twice(&lab.sim);
    assert!(!run.relogin, "the family was revoked");
    let family = lab.sim.family_of(&token(&lab.disk(), "refresh_token"));
    assert_current_token_on_disk(
        &lab,
        family.expect("auth.json holds a token of the authority"),
    );
    assert!(run.rounds >= 1);
    assert_eq!(run.failed, 0, "editor requests failed: {:?}", run.failures);
    for (editor, &distinct) in run.distinct_tokens.iter().enumerate() {
        assert!(
            distinct >= 2,
            "editor {editor} was answered with {distinct} distinct tokens: it never got the \
             broker's"
        );
    }
    assert!(
        run.lowest_left > 0.0,
        "an editor was answered with an expired token"
    );
    assert_no_token_in(&lab, &broker_stderr, "the broker's stderr");
}

/// One app-server, traced with strace when the machine has it: on a stale token it refreshes at
/// this authority, and every socket address it or any of its threads named in `connect`,
/// `sendto` or `sendmsg` is this authority's (no DNS query, no other host, not even attempted).
/// Without strace the attempts are not observed, which the output says; the rest still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_editor_app_server_asks_nothing_of_anyone_but_the_local_authority() {
    let lab = Lab::new().await;
    let managed = lab.configure_for_app_servers();
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let trace = lab.dir().join("app-server.strace");
    let strace = find_on_path("strace");
    let command = app_server_command(&lab, &managed);
    let command = match &strace {
        Some(strace) => traced(strace, &command, &trace),
        None => command,
    };

    let mut server = AppServer::start_command(command, 0).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(server.auth_status().await);
    }
    // The model list is fetched in the background at start-up: wait for it (bounded) before
    // the window closes.
    let models_fetched = eventually(BOUND, async || {
        lab.sim
            .requests()
            .iter()
            .any(|(_, target)| target.starts_with("/backend-api/codex/models"))
    })
    .await;
    let stderr = server.stop().await;
    for answer in &answers {
        if let Answer::Failed(described) = answer {
            panic!("getAuthStatus answered no token: {described}; stderr: {stderr}");
        }
    }
    // The stale token was refreshed here, once, with the refresh token authstore wrote.
    assert_eq!(lab.calls_by_client(), BTreeMap::from([("codex", 1)]));
    assert!(lab.sim.presented_refresh_tokens() == [token(&login, "refresh_token")]);
    let other_requests = requests_besides_the_token_endpoint(&lab);
    for request in other_requests.keys() {
        assert!(
            request.starts_with("GET /backend-api/"),
            "Codex asked the authority for something unexpected: {request}"
        );
    }

    if strace.is_some() {
        assert_reached_only(&lab, &trace);
    } else {
        println!(
            "figures: strace is not on PATH: the app-server's connection attempts were not \
             observed"
        );
    }
    assert!(
        models_fetched && other_requests.contains_key("GET /backend-api/codex/models"),
        "the app-server fetched its model list elsewhere: {other_requests:?}"
    );
    println!("figures: one app-server: requests to the authority {other_requests:?}");
}

/// Asserts that every internet socket address in the strace log is the authority's.
fn assert_reached_only(lab: &Lab, trace: &Path) {
    let addresses = internet_addresses(&std::fs::read_to_string(trace).expect("strace wrote"));
    let authority = format!(
        "{{sa_family=AF_INET, sin_port=htons({}), sin_addr=inet_addr(\"127.0.0.1\")}}",
        lab.sim.addr().port()
    );
    assert!(
        !addresses.is_empty(),
        "strace saw no internet socket address at all, though Codex reached the authority"
    );
    let elsewhere: Vec<&String> = addresses.iter().filter(|a| **a != authority).collect();
    assert!(
        elsewhere.is_empty(),
        "the app-server tried to reach something else than the authority: {elsewhere:?}"
    );
    println!(
        "figures: one app-server under strace: {} system calls named an internet address, all \
         the authority's",
        addresses.len()
    );
}
