//! `authstore broker` as the token endpoint of real Codex processes
//! (`CODEX_REFRESH_TOKEN_URL_OVERRIDE`), its upstream the authority that revokes the family on
//! reuse (issue 17).
//!
//! The refreshes the agent cannot pre-empt: `codex exec` processes on the login's stale token
//! started together with [`EDITORS`] app-servers (each refreshes a stale token as it starts), then
//! rounds in which every app-server asks `getAuthStatus {includeToken: true, refreshToken: true}`
//! at once (which makes Codex refresh however fresh its token). Through the broker the start and
//! each round cost at most one authority call; straight to the authority the same run revokes the
//! family (the control).
//!
//! Codex 0.171.0 drops the tokens of a refresh during which auth.json changed ("Account
//! credentials changed during refresh"), which it does when the broker refreshed and stored
//! them: that round's answers carry the token from before the round (issued by the authority,
//! not the newest), and its next forced refresh takes the newer tokens from auth.json without a
//! request. The editor-race demo's third column, Codex
//! with the broker over token lifetimes, is in [`crate::editors`].
//!
//! Then `authstore token` processes pointed at the same broker beside Codex processes on one
//! stale token: one authority call, and none of them waits for its own lock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use authstore_testkit::alice;
use authstore_testkit::binary::{assert_no_token_presented_twice, stdout};
use authstore_testkit::process::BOUND;
use authstore_testkit::token;

use crate::editors::{Answer, AppServer};
use crate::lab::*;

/// App-servers (editor windows) on the one home.
const EDITORS: usize = 3;
/// Rounds of forced refreshes.
const ROUNDS: usize = 4;
/// `codex exec` processes started on the login's stale token with the app-servers.
const EXECS: usize = 2;
/// Between two rounds: an editor asks again a few seconds later.
const ROUND_PAUSE: Duration = Duration::from_secs(2);

/// `codex exec` with a prompt. The authority has no model endpoint, so the turn itself fails
/// after Codex obtained its token; what is looked at is the token it obtained.
pub(crate) const EXEC: &[&str] = &["exec", "--skip-git-repo-check", "--color", "never", "hello"];

/// What the rounds did.
struct ForcedRun {
    /// Authority refresh calls while the app-servers started (one after another), beside the
    /// `codex exec` on the stale token.
    startup_calls: u64,
    /// Authority refresh calls in each round.
    calls_per_round: Vec<u64>,
    /// Authority refresh calls by Codex itself (its `client_id`, not the broker's).
    codex_calls: usize,
    answered: usize,
    /// Failed answers, described (no token), with their counts.
    failures: BTreeMap<String, usize>,
    /// Answers whose access token is not one the authority issued: the one auth.json held
    /// before the first round, or one it held after a round (what the broker obtained, stored
    /// through the transaction).
    not_the_authoritys: usize,
    /// Answers with the access token auth.json held before the round when the round stored a
    /// newer one, by round: Codex 0.171.0 drops the tokens of a refresh during which auth.json
    /// changed ("Account credentials changed during refresh"), which it did when the broker
    /// refreshed and stored them, and answers with the token it had.
    previous_per_round: Vec<usize>,
    /// What the `codex exec` processes wrote to stderr (redacted, equal lines counted together).
    exec_stderr: BTreeMap<String, usize>,
    /// Rounds after which auth.json did not hold the family's current refresh token.
    rounds_off_the_current_token: usize,
    /// Exit codes of the `codex exec` processes, and how long they ran.
    execs: Vec<(Option<i32>, Duration)>,
    reuse: u64,
    revoked: bool,
    took: Duration,
}

impl ForcedRun {
    fn figures(&self, label: &str) -> String {
        format!(
            "figures: forced refreshes {label}: {EDITORS} app-servers, {ROUNDS} rounds in {}ms, \
             {EXECS} codex exec on the stale token from the start: {} authority calls at start-up, then per round \
             {:?} ({} by Codex itself in all), {} answered, {} failed {:?}, {} with a token the authority did not issue, \
             answers with the token from before the round, by round {:?}; rounds after which \
             auth.json was not on the current token: {}; reuse {}, family revoked: {}; codex \
             exec exit codes and times {:?}, stderr {:?}",
            millis(self.took),
            self.startup_calls,
            self.calls_per_round,
            self.codex_calls,
            self.answered,
            self.failures.values().sum::<usize>(),
            self.failures,
            self.not_the_authoritys,
            self.previous_per_round,
            self.rounds_off_the_current_token,
            self.reuse,
            self.revoked,
            self.execs
                .iter()
                .map(|(code, took)| (*code, millis(*took)))
                .collect::<Vec<_>>(),
            self.exec_stderr,
        )
    }
}

/// Logs in with a stale token (its successors live an hour), starts the broker if asked, then
/// [`EXECS`] `codex exec` on that stale token together with the app-servers (each of which
/// refreshes a stale token as it starts), and, while the `codex exec` still run, [`ROUNDS`]
/// rounds in which every app-server forces a refresh at once.
async fn forced_refresh_rounds(through_broker: bool) -> (Lab, ForcedRun, Option<Broker>) {
    let mut lab = Lab::new().await;
    let managed = lab.configure_for_app_servers();
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    let broker = if through_broker {
        Some(lab.start_broker().await)
    } else {
        None
    };
    let stale_access = token(&lab.disk(), "access_token");

    let started = Instant::now();
    let exec_runs = futures::future::join_all((0..EXECS).map(|_| lab.run_codex(EXEC)));
    let session = async {
        let mut editors = Vec::new();
        for editor in 0..EDITORS {
            editors.push(AppServer::start(&lab, &managed, editor).await);
        }
        let startup_calls = lab.sim.refresh_calls();
        let mut calls_per_round = Vec::new();
        let mut answers_per_round = Vec::new();
        let mut disk_after_round = Vec::new();
        for _ in 0..ROUNDS {
            let before = lab.sim.refresh_calls();
            let previous = token(&lab.disk(), "access_token");
            let forced = futures::future::join_all(
                editors
                    .iter_mut()
                    .map(|editor| editor.auth_status_refreshing(true)),
            );
            let answers = tokio::time::timeout(BOUND, forced)
                .await
                .expect("a round finished within the bound");
            calls_per_round.push(lab.sim.refresh_calls() - before);
            answers_per_round.push((previous, answers));
            let on_disk = lab.disk();
            let current = lab.sim.current_refresh_token(family).as_deref()
                == on_disk["tokens"]["refresh_token"].as_str();
            disk_after_round.push((on_disk, current));
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        for editor in editors {
            editor.stop().await;
        }
        (
            startup_calls,
            calls_per_round,
            answers_per_round,
            disk_after_round,
        )
    };
    let (exec_outputs, (startup_calls, calls_per_round, answers_per_round, disk_after_round)) =
        tokio::time::timeout(BOUND * 2, futures::future::join(exec_runs, session))
            .await
            .expect("the run finished within the bound");
    let took = started.elapsed();

    // What the home held before the first round, then what it held after each.
    let mut issued = vec![stale_access];
    let mut answered = 0;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut answered_tokens = Vec::new();
    let mut previous_per_round = Vec::new();
    let mut rounds_off_the_current_token = 0;
    for ((previous, answers), (on_disk, current)) in
        answers_per_round.into_iter().zip(&disk_after_round)
    {
        issued.push(previous.clone());
        issued.push(token(on_disk, "access_token"));
        if !current {
            rounds_off_the_current_token += 1;
        }
        let mut previous_answers = 0;
        for answer in answers {
            match answer {
                Answer::Token(access) => {
                    answered += 1;
                    if access == previous && access != token(on_disk, "access_token") {
                        previous_answers += 1;
                    }
                    answered_tokens.push(access);
                }
                Answer::Failed(described) => *failures.entry(described).or_default() += 1,
            }
        }
        previous_per_round.push(previous_answers);
    }
    let mut execs = Vec::new();
    let mut exec_stderr: BTreeMap<String, usize> = BTreeMap::new();
    for (output, took) in exec_outputs {
        execs.push((output.status.code(), took));
        let text = String::from_utf8_lossy(&output.stderr);
        for line in redacted(&lab, &text, &answered_tokens).lines() {
            // Without its timestamp, so that equal lines count together.
            let line = match line.split_once(' ') {
                Some((first, rest)) if first.ends_with('Z') && first.starts_with("20") => rest,
                _ => line,
            };
            *exec_stderr
                .entry(line.chars().take(160).collect())
                .or_default() += 1;
        }
    }
    let codex_calls = lab
        .sim
        .refresh_events()
        .iter()
        .filter(|event| sender(&event.client_id) == "codex")
        .count();
    let run = ForcedRun {
        startup_calls,
        calls_per_round,
        codex_calls,
        answered,
        failures,
        not_the_authoritys: answered_tokens
            .iter()
            .filter(|access| !issued.contains(access))
            .count(),
        previous_per_round,
        rounds_off_the_current_token,
        execs,
        exec_stderr,
        reuse: lab.sim.reuse_rejections(),
        revoked: lab.sim.is_family_revoked(family),
        took,
    };
    (lab, run, broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forced_refreshes_of_three_app_servers_and_codex_exec_through_the_broker_make_one_authority_call_per_round()
 {
    let (lab, run, broker) = forced_refresh_rounds(true).await;
    let broker_stderr = broker.expect("the broker runs").stop().await;
    println!("{}", run.figures("through the broker"));
    assert!(
        run.startup_calls <= 1,
        "{} authority calls while the app-servers started beside codex exec on one stale token",
        run.startup_calls
    );
    assert!(
        run.calls_per_round.iter().all(|&calls| calls <= 1),
        "authority calls per round of forced refreshes: {:?}",
        run.calls_per_round
    );
    assert_eq!(run.codex_calls, 0, "Codex called the authority directly");
    assert_no_token_presented_twice(&lab.sim);
    assert!(!run.revoked, "the family was revoked");
    assert_eq!(
        run.failures.values().sum::<usize>(),
        0,
        "editor requests failed: {:?}",
        run.failures
    );
    assert_eq!(run.answered, EDITORS * ROUNDS);
    assert_eq!(
        run.not_the_authoritys, 0,
        "editors were answered with tokens the authority did not issue"
    );
    assert_eq!(
        run.rounds_off_the_current_token, 0,
        "auth.json was not on the authority's current refresh token after a round"
    );
    let family = lab.sim.family_of(&token(&lab.disk(), "refresh_token"));
    assert_current_token_on_disk(
        &lab,
        family.expect("auth.json holds a token of the authority"),
    );
    assert_no_refresh_failure_in(&run.exec_stderr);
    assert_no_token_in(&lab, &broker_stderr, "the broker's stderr");
}

/// Asserts that `codex exec` reported no failed refresh. (Its turn fails: the authority has no
/// model endpoint; that is the "Reconnecting" and 404 lines.)
pub(crate) fn assert_no_refresh_failure_in(exec_stderr: &BTreeMap<String, usize>) {
    let failed: Vec<&String> = exec_stderr
        .keys()
        .filter(|line| {
            [
                "Failed to refresh token",
                "refresh_token",
                "log in again",
                "401",
            ]
            .iter()
            .any(|mark| line.contains(mark))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "codex exec reported a failed refresh: {failed:?}"
    );
}

/// The control: the same rounds with Codex pointed straight at the authority. The app-servers
/// present one refresh token at once, the authority sees it again, and revokes the family.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forced_refreshes_of_three_app_servers_straight_to_the_authority_revoke_the_family() {
    let (_lab, run, _) = forced_refresh_rounds(false).await;
    println!("{}", run.figures("straight to the authority"));
    assert!(
        run.calls_per_round[0] > 1,
        "the first round made {} authority calls: the app-servers did not race",
        run.calls_per_round[0]
    );
    assert!(run.reuse >= 1, "the authority refused no token as reused");
    assert!(run.revoked, "the family survived the reuse");
    assert!(
        run.failures.values().sum::<usize>() >= 1,
        "no editor request failed"
    );
}

/// Processes of the lock-timeout test: `authstore token`, each with a lock timeout shorter than
/// its request timeout, so that one waiting on the broker while the broker waits on that
/// process's own lock would fail with exit 5 instead of succeeding late.
const AUTHSTORE_TOKENS: usize = 16;
/// `codex features list` processes beside them.
const CODEX_LISTS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authstore_token_processes_through_the_broker_beside_codex_on_one_stale_token_make_one_authority_call()
 {
    let mut lab = Lab::new().await;
    lab.configure_for_app_servers();
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let broker = lab.start_broker().await;

    // Everyone at once on the stale token: `codex exec`, `codex features list` (one refresh on
    // a stale token), and authstore. (App-servers are left out: each refreshes as it starts, one
    // after another, so the token would no longer be stale when the others run.)
    let execs = futures::future::join_all((0..EXECS).map(|_| lab.run_codex(EXEC)));
    let lists =
        futures::future::join_all((0..CODEX_LISTS).map(|_| lab.run_codex(&["features", "list"])));
    let tokens = futures::future::join_all(
        (0..AUTHSTORE_TOKENS).map(|_| lab.run_authstore(&["--lock-timeout", "5", "token"])),
    );
    let (execs, lists, tokens) =
        tokio::time::timeout(BOUND, futures::future::join3(execs, lists, tokens))
            .await
            .expect("everyone finished within the bound");
    let broker_stderr = broker.stop().await;

    let on_disk = lab.disk();
    let access = token(&on_disk, "access_token");
    let exit_codes: Vec<Option<i32>> = tokens
        .iter()
        .map(|(output, _)| output.status.code())
        .collect();
    println!(
        "figures: {AUTHSTORE_TOKENS} authstore token, {CODEX_LISTS} codex features list, {EXECS} codex exec \
         on one stale token through the broker: {} authority calls ({:?}), reuse {}; authstore \
         exit codes {exit_codes:?}, times {}; codex exec exit codes {:?}",
        lab.sim.refresh_calls(),
        lab.calls_by_client(),
        lab.sim.reuse_rejections(),
        summary(&tokens.iter().map(|(_, took)| *took).collect::<Vec<_>>()),
        execs
            .iter()
            .map(|(output, _)| output.status.code())
            .collect::<Vec<_>>(),
    );
    for (output, _) in &tokens {
        assert!(
            output.status.success(),
            "authstore token exited {:?} (5: it waited for its lock until the timeout): {}",
            output.status.code(),
            redacted(&lab, &String::from_utf8_lossy(&output.stderr), &[])
        );
        assert!(
            stdout(output) == access,
            "authstore token printed another token than auth.json's"
        );
    }
    for (output, _) in &lists {
        assert!(
            output.status.success(),
            "codex features list exited {:?}: {}",
            output.status.code(),
            redacted(&lab, &String::from_utf8_lossy(&output.stderr), &[])
        );
    }
    assert_eq!(lab.sim.refresh_calls(), 1, "{:?}", lab.calls_by_client());
    assert_no_token_presented_twice(&lab.sim);
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    assert!(!lab.sim.is_family_revoked(family));
    assert_current_token_on_disk(&lab, family);
    assert_no_token_in(&lab, &broker_stderr, "the broker's stderr");
}
