//! Codex's commit against authstore's transaction (`auth.lock`): a Codex refresh that wants to
//! commit while authstore holds the transaction blocks on the lock (seen in /proc/locks) and
//! loses nothing, and one whose call was in flight while authstore wrote a newer login keeps
//! authstore's file. Calls are parked at the authority behind gates, so the order is certain.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use authstore::store::{FileStore, StoreOptions};
use authstore_testkit::alice;
use authstore_testkit::binary::{assert_no_token_presented_twice, assert_success, stdout};
use authstore_testkit::eventually;
use authstore_testkit::process::BOUND;
use authstore_testkit::process::wait_output_bounded;
use authstore_testkit::token;
use serde_json::json;

use crate::lab::*;

impl Lab {
    fn lock_inode(&self) -> u64 {
        std::fs::metadata(self.home().join("auth.lock"))
            .expect("auth.lock exists")
            .ino()
    }

    /// Holds each refresh request that presents a token of a family in `gates` at the authority,
    /// before the token is processed, until that family's gate opens.
    fn hold_families(&self, gates: HashMap<u64, Gate>) {
        self.sim.set_on_refresh(Some(Arc::new(move |event| {
            if let Some(gate) = event.family.and_then(|family| gates.get(&family)) {
                tokio::task::block_in_place(|| gate.wait());
            }
        })));
    }
}

/// Closed until opened. Dropping any handle opens it, so that a failing test never leaves a
/// request parked; waiting is bounded by [`BOUND`] anyway.
#[derive(Clone, Default)]
struct Gate(Arc<GateState>);

#[derive(Default)]
struct GateState {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.0.open.lock().unwrap() = true;
        self.0.changed.notify_all();
    }

    fn wait(&self) {
        let open = self.0.open.lock().unwrap();
        let _ = self
            .0
            .changed
            .wait_timeout_while(open, BOUND, |open| !*open);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// Whether process `pid` is blocked waiting for a flock on the file with inode `inode`, as the
/// kernel reports it in /proc/locks (`N: -> FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF`).
fn blocked_on_flock(pid: u32, inode: u64) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let pid = pid.to_string();
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"->")
            && fields.get(2) == Some(&"FLOCK")
            && fields.get(5) == Some(&pid.as_str())
            && fields
                .get(6)
                .and_then(|id| id.rsplit(':').next())
                .and_then(|id| id.parse::<u64>().ok())
                == Some(inode)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_codex_refresh_that_wants_to_commit_while_authstore_holds_the_transaction_waits_and_loses_nothing()
 {
    let lab = Lab::new().await;
    let login = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login).await;
    let spent_by_codex = token(&login, "refresh_token");
    let family = lab.sim.family_of(&spent_by_codex).unwrap();
    let before = std::fs::read(lab.auth_path()).unwrap();

    // authstore's transaction, as every authstore writer holds it: auth.lock, taken through the
    // library in this process. (An authstore refresh of the same stale token would spend it a
    // second time: that race is Codex's, which calls the endpoint before taking any lock.)
    let store = FileStore::new(lab.home(), StoreOptions::default());
    let transaction = store.begin().await.unwrap();
    let inode = lab.lock_inode();

    let sampler = Sampler::start(&lab.auth_path());
    let started = Instant::now();
    let mut codex = lab.codex(&["features", "list"]).spawn().unwrap();
    let pid = codex.id().unwrap();
    let blocked = eventually(BOUND, async || blocked_on_flock(pid, inode)).await;
    assert!(blocked, "Codex never waited for auth.lock");
    let blocked_after = started.elapsed();
    assert_eq!(
        lab.sim.refresh_calls(),
        1,
        "Codex calls the token endpoint before it takes the lock"
    );

    // Hold the transaction two more seconds: Codex keeps waiting and writes nothing.
    let hold = Duration::from_secs(2);
    let hold_started = Instant::now();
    while hold_started.elapsed() < hold {
        assert!(
            codex.try_wait().unwrap().is_none(),
            "Codex finished while authstore held auth.lock"
        );
        assert!(
            blocked_on_flock(pid, inode),
            "Codex stopped waiting for auth.lock while authstore held it"
        );
        assert!(
            std::fs::read(lab.auth_path()).unwrap() == before,
            "Codex wrote auth.json while authstore held auth.lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(transaction);
    let released = started.elapsed();

    let output = wait_output_bounded(codex).await;
    let finished = started.elapsed();
    assert_success(&output);
    let (_, torn) = sampler.finish();
    assert_eq!(torn, 0, "a reader saw a missing or torn auth.json");
    // Codex committed the tokens it had obtained: nothing lost, nothing spent twice.
    assert!(token(&lab.disk(), "refresh_token") != spent_by_codex);
    assert_current_token_on_disk(&lab, family);
    assert_eq!(lab.sim.refresh_calls(), 1);
    assert_no_token_presented_twice(&lab.sim);
    println!(
        "figures: Codex POSTed and blocked on auth.lock {}ms after start; lock released at {}ms; \
         Codex committed and exited at {}ms ({}ms after the release); 1 call, 0 reuse",
        millis(blocked_after),
        millis(released),
        millis(finished),
        millis(finished - released)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authstore_writing_while_a_codex_refresh_is_in_flight_makes_codex_keep_authstore_s_file() {
    let lab = Lab::new().await;
    // Login A, stale: Codex refreshes it. Login B of the same user, fresh: authstore installs it
    // with `login --from` while Codex's call is in flight, then `refresh --force`s it, holding its
    // transaction (auth.lock) when Codex wants to commit A's new tokens. Both calls are parked at
    // the authority until the test opens their gates, so the order is certain.
    let login_a = lab.new_login(&alice(), STALE);
    lab.authstore_login(&login_a).await;
    let family_a = lab
        .sim
        .family_of(&token(&login_a, "refresh_token"))
        .unwrap();
    let login_b = lab.new_login(&alice(), FRESH);
    let family_b = lab
        .sim
        .family_of(&token(&login_b, "refresh_token"))
        .unwrap();
    let (gate_a, gate_b) = (Gate::default(), Gate::default());
    lab.hold_families(HashMap::from([
        (family_a, gate_a.clone()),
        (family_b, gate_b.clone()),
    ]));

    let sampler = Sampler::start(&lab.auth_path());
    let started = Instant::now();
    let codex = lab.codex(&["features", "list"]).spawn().unwrap();
    let codex_pid = codex.id().unwrap();
    assert!(
        eventually(BOUND, async || lab.sim.refresh_calls() == 1).await,
        "Codex never called the token endpoint"
    );

    lab.authstore_login(&login_b).await;
    let mut refresh = lab.authstore(&["refresh", "--force"]).spawn().unwrap();
    assert!(
        eventually(BOUND, async || lab.sim.refresh_calls() == 2).await,
        "authstore refresh --force never called the token endpoint"
    );
    let logged_in = std::fs::read(lab.auth_path()).unwrap();

    // Codex gets its answer and wants to commit: it waits for authstore's transaction.
    gate_a.open();
    let inode = lab.lock_inode();
    let blocked = eventually(BOUND, async || blocked_on_flock(codex_pid, inode)).await;
    assert!(blocked, "Codex did not wait for auth.lock");
    let blocked_at = started.elapsed();
    assert!(
        refresh.try_wait().unwrap().is_none(),
        "authstore's refresh ended before its answer came"
    );
    assert!(
        std::fs::read(lab.auth_path()).unwrap() == logged_in,
        "auth.json changed while authstore held auth.lock"
    );

    gate_b.open();
    let refreshed = wait_output_bounded(refresh).await;
    let authstore_done = started.elapsed();
    assert_success(&refreshed);
    assert!(stdout(&refreshed).starts_with("refreshed"));
    let codex_output = wait_output_bounded(codex).await;
    let codex_done = started.elapsed();
    assert_success(&codex_output);
    let (_, torn) = sampler.finish();
    assert_eq!(torn, 0, "a reader saw a missing or torn auth.json");

    // Codex re-read auth.json under the lock, saw authstore's newer login, and did not write:
    // the file holds B's current tokens, with authstore's unknown fields.
    let disk = lab.disk();
    assert_current_token_on_disk(&lab, family_b);
    assert_eq!(disk["x_custom"], json!({"kept": true}));
    assert_no_token_presented_twice(&lab.sim);
    assert_eq!(
        lab.calls_by_client(),
        BTreeMap::from([("authstore", 1), ("codex", 1)])
    );
    assert!(!lab.sim.is_family_revoked(family_a) && !lab.sim.is_family_revoked(family_b));
    println!(
        "figures: Codex's call in flight, authstore login --from and refresh --force of a newer \
         login; Codex got its answer and blocked on auth.lock behind authstore at {}ms; authstore \
         done at {}ms; Codex done at {}ms ({}ms later) and kept authstore's file (its own new \
         tokens for the older login discarded); 2 calls, 0 reuse",
        millis(blocked_at),
        millis(authstore_done),
        millis(codex_done),
        millis(codex_done - authstore_done)
    );
}
