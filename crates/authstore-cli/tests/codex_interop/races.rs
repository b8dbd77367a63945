//! Many processes at once on one home: Codex processes racing on a stale token spend it
//! repeatedly (Codex calls the endpoint before taking any lock) unless authstore refreshed it
//! first, and mixed rounds of Codex and authstore processes never deadlock, never tear the file,
//! and never have one authstore process present a token another one spent.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use authstore_testkit::alice;
use authstore_testkit::binary::{assert_no_token_presented_twice, assert_success, stdout};
use authstore_testkit::process::BOUND;
use authstore_testkit::token;

use crate::lab::*;

impl Lab {
    /// The first refresh request after the first `since` that presented a token already
    /// presented: (who spent it first, who presented it again). That is the reuse, which
    /// revokes the family; later repeats only meet the revoked family. Every token's first
    /// presentation succeeds while its family is not revoked: tokens come only from the authority.
    fn first_reuse(&self, since: usize) -> Option<(&'static str, &'static str)> {
        let mut first: HashMap<String, &'static str> = HashMap::new();
        for (index, event) in self.sim.refresh_events().into_iter().enumerate() {
            let presenter = sender(&event.client_id);
            match first.get(&event.refresh_token) {
                Some(&spender) if index >= since => return Some((spender, presenter)),
                Some(_) => {}
                None => {
                    first.insert(event.refresh_token, presenter);
                }
            }
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn codex_processes_racing_on_a_stale_token_spend_it_repeatedly_unless_authstore_kept_it_fresh()
 {
    const CODEX_PROCESSES: usize = 6;
    // Without authstore: Codex's own race (it calls the endpoint before taking any lock).
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    let alone = codex_burst(&lab, CODEX_PROCESSES).await;
    // Each Codex that read the stale file before the first commit calls the endpoint with the
    // same token: one succeeds, the others are refused (the first as reused, which revokes the
    // family under this authority, the rest as invalidated).
    assert!(alone.calls >= 1);
    assert_eq!(alone.successes, 1, "exactly one refresh succeeds");
    assert_eq!(alone.rejected, alone.calls - 1);
    let revoked = lab.sim.is_family_revoked(family);
    assert_eq!(revoked, alone.reuse > 0);
    println!(
        "figures: {CODEX_PROCESSES} codex features list at once on one stale token, no authstore: \
         {} calls, 1 success, {} refused as reused, {} as invalidated, family revoked: {revoked}; \
         {}",
        alone.calls,
        alone.reuse,
        alone.rejected - alone.reuse,
        summary(&alone.durations)
    );

    // With authstore having refreshed the token first (what a keep-fresh agent does): Codex
    // finds fresh tokens and makes no call at all.
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
    let (refresh, _) = lab.run_authstore(&["refresh"]).await;
    assert_success(&refresh);
    assert!(stdout(&refresh).starts_with("refreshed"));
    let kept_fresh = codex_burst(&lab, CODEX_PROCESSES).await;
    assert_eq!(
        kept_fresh.calls, 0,
        "Codex refreshed tokens authstore kept fresh"
    );
    assert_current_token_on_disk(&lab, family);
    assert_no_token_presented_twice(&lab.sim);
    println!(
        "figures: the same after `authstore refresh`: {} calls, {} reuse; {}",
        kept_fresh.calls,
        kept_fresh.reuse,
        summary(&kept_fresh.durations)
    );
}

enum Who {
    Codex,
    Authstore,
}

/// One round: `codex features list` and `authstore token` / `refresh --force` processes started
/// together on one home; returns (who, exit code, duration) per process.
async fn mixed_round(
    lab: &Lab,
    codex: usize,
    tokens: usize,
    forced: usize,
) -> Vec<(Who, i32, Duration)> {
    let mut commands = Vec::new();
    for i in 0..codex.max(tokens).max(forced) {
        if i < codex {
            commands.push((Who::Codex, lab.codex(&["features", "list"])));
        }
        if i < tokens {
            commands.push((Who::Authstore, lab.authstore(&["token"])));
        }
        if i < forced {
            commands.push((Who::Authstore, lab.authstore(&["refresh", "--force"])));
        }
    }
    let runs = commands.into_iter().map(|(who, command)| async move {
        let (output, took) = timed(command).await;
        (who, output.status.code().unwrap_or(-1), took)
    });
    futures::future::join_all(runs).await
}

/// One [`mixed_round`] of 3 `codex features list`, 2 `authstore token` and 2 `authstore refresh
/// --force`, which must finish within the bound (no deadlock), with a [`Sampler`] reading
/// auth.json meanwhile: the results, and the sampler's reads and failed reads.
async fn sampled_round(lab: &Lab) -> (Vec<(Who, i32, Duration)>, u64, u64) {
    let sampler = Sampler::start(&lab.auth_path());
    let results = tokio::time::timeout(BOUND, mixed_round(lab, 3, 2, 2))
        .await
        .expect("a round finished within the bound: no deadlock");
    let (reads, failures) = sampler.finish();
    (results, reads, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn neither_deadlocks_the_other_when_codex_and_authstore_processes_run_together() {
    const ROUNDS: usize = 8;
    let lab = Lab::new().await;
    let mut codex_times = Vec::new();
    let mut authstore_times = Vec::new();
    let mut authstore_exits: BTreeMap<i32, usize> = BTreeMap::new();
    let (mut reads, mut torn) = (0, 0);
    let mut revoked_rounds = 0;
    let mut reuse_pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();

    // Stale rounds: every token the authority issues lives 60 s, so every process refreshes.
    for round in 0..ROUNDS {
        let login = lab.new_login(&alice(), STALE);
        lab.authstore_login(&login).await;
        let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
        lab.sim.set_access_token_lifetime(STALE);
        let before = (lab.sim.refresh_calls(), lab.sim.reuse_rejections());
        let events_before = lab.sim.refresh_events().len();
        let (results, r, t) = sampled_round(&lab).await;
        (reads, torn) = (reads + r, torn + t);
        lab.sim.set_access_token_lifetime(FRESH);
        for (who, code, took) in results {
            match who {
                Who::Codex => {
                    assert_eq!(code, 0, "codex features list failed");
                    codex_times.push(took);
                }
                Who::Authstore => {
                    // 4: re-login required, when Codex's unlocked refresh got the family revoked.
                    assert!(
                        code == 0 || code == 4,
                        "authstore exited {code} (round {round})"
                    );
                    *authstore_exits.entry(code).or_default() += 1;
                    authstore_times.push(took);
                }
            }
        }
        let disk = lab.disk();
        assert_eq!(
            lab.sim.family_of(&token(&disk, "refresh_token")),
            Some(family)
        );
        revoked_rounds += usize::from(lab.sim.is_family_revoked(family));
        let reuse = lab.first_reuse(events_before);
        // authstore processes exclude each other: only Codex, which calls the endpoint before
        // taking any lock, can be on one side of a reuse.
        assert!(
            reuse != Some(("authstore", "authstore")),
            "an authstore process presented a token another authstore process had spent"
        );
        if let Some(pair) = reuse {
            *reuse_pairs.entry(pair).or_default() += 1;
        }
        println!(
            "figures: stale round {round}: {} calls by client {:?}, {} reuse (spent by, presented \
             again by: {reuse:?}), family revoked: {}",
            lab.sim.refresh_calls() - before.0,
            lab.calls_by_client_since(events_before),
            lab.sim.reuse_rejections() - before.1,
            lab.sim.is_family_revoked(family),
        );
    }
    let stale_reuse = lab.sim.reuse_rejections();
    let stale_calls = lab.calls_by_client();

    // Kept-fresh rounds: authstore refreshed first; then the same mix, tokens living an hour.
    let reuse_before = lab.sim.reuse_rejections();
    let codex_calls_before = stale_calls.get("codex").copied().unwrap_or(0);
    for round in 0..ROUNDS {
        let login = lab.new_login(&alice(), STALE);
        lab.authstore_login(&login).await;
        let family = lab.sim.family_of(&token(&login, "refresh_token")).unwrap();
        let (refresh, _) = lab.run_authstore(&["refresh"]).await;
        assert_success(&refresh);
        let (results, r, t) = sampled_round(&lab).await;
        (reads, torn) = (reads + r, torn + t);
        for (who, code, took) in results {
            assert_eq!(code, 0, "a process failed in kept-fresh round {round}");
            match who {
                Who::Codex => codex_times.push(took),
                Who::Authstore => authstore_times.push(took),
            }
        }
        assert_current_token_on_disk(&lab, family);
    }
    let codex_calls_fresh =
        lab.calls_by_client().get("codex").copied().unwrap_or(0) - codex_calls_before;
    assert_eq!(
        codex_calls_fresh, 0,
        "Codex refreshed although authstore kept the tokens fresh"
    );
    assert_eq!(
        lab.sim.reuse_rejections(),
        reuse_before,
        "a token was reused although authstore kept the tokens fresh"
    );
    assert_eq!(torn, 0, "a reader saw a missing or torn auth.json");

    println!(
        "figures: {ROUNDS} stale rounds (3 codex + 2 token + 2 refresh --force each): calls by \
         client {stale_calls:?}, {stale_reuse} reuse (spent by, presented again by: \
         {reuse_pairs:?}), {revoked_rounds} of {ROUNDS} families revoked, authstore exits \
         {authstore_exits:?}"
    );
    println!(
        "figures: {ROUNDS} kept-fresh rounds: 0 Codex calls, 0 reuse; auth.json read {reads} \
         times during all rounds, never torn"
    );
    println!("figures: codex features list {}", summary(&codex_times));
    println!(
        "figures: authstore token/refresh {}",
        summary(&authstore_times)
    );
}
