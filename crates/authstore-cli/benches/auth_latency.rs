//! `AuthManager::auth()` on a fresh cached token, against re-reading and parsing `auth.json` on
//! every call (what a process without a cache does), and against cloning an `Arc` in memory (the
//! physical limit of handing out a shared snapshot). Also `auth()` without the directory watch
//! (one `stat` per call), the fallback where no watch can be set up.
//!
//! `cargo bench --bench auth_latency` (add `-- --quick` for fewer batches).
// Unix only (processes, CLOCK_MONOTONIC, flock, a PostgreSQL cluster); elsewhere empty.
#![cfg_attr(not(unix), no_main)]
#![cfg(unix)]

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use authstore::authority::AuthorityConfig;
use authstore::document::{AuthDocument, Freshness};
use authstore::{AuthManager, ManagerOptions};
use serde_json::json;

fn main() {
    let Some(options) = common::options("auth_latency") else {
        return;
    };
    common::print_machine();
    let batches = if options.quick { 15 } else { 60 };
    let home = common::scratch_dir("auth-latency-");
    let path = home.path().join("auth.json");
    std::fs::write(&path, common::realistic_document().to_json()).expect("auth.json written");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let options_for = |watch: bool| {
        ManagerOptions::default()
            // Never contacted: the token is fresh for a year.
            .authority(AuthorityConfig::default().token_url("http://127.0.0.1:9/oauth/token"))
            .watch(watch)
    };
    let watched = AuthManager::new(home.path(), options_for(true)).expect("a manager");
    let unwatched = AuthManager::new(home.path(), options_for(false)).expect("a manager");
    let snapshot = runtime.block_on(async {
        unwatched.auth().await.expect("fresh credentials");
        watched.auth().await.expect("fresh credentials")
    });
    assert!(
        watched.is_watching(),
        "the directory watch could not be set up"
    );
    let freshness = Freshness::default();

    // Each measurement: ns per operation over a batch, repeated; batches are interleaved so
    // that a slow moment of the machine hits every variant alike.
    let mut arc = Vec::new();
    let mut auth = Vec::new();
    let mut auth_stat = Vec::new();
    let mut reread = Vec::new();
    for _ in 0..batches {
        arc.push(per_op(200_000, || {
            black_box(Arc::clone(black_box(&snapshot)));
        }));
        auth.push(runtime.block_on(async {
            per_op_async(200_000, || async {
                black_box(watched.auth().await.expect("fresh"));
            })
            .await
        }));
        auth_stat.push(runtime.block_on(async {
            per_op_async(20_000, || async {
                black_box(unwatched.auth().await.expect("fresh"));
            })
            .await
        }));
        reread.push(per_op(2_000, || {
            let bytes = std::fs::read(black_box(&path)).expect("auth.json reads");
            let document = AuthDocument::parse(&bytes).expect("auth.json parses");
            black_box(document.is_stale(SystemTime::now(), &freshness));
            black_box(document);
        }));
    }
    let stats = watched.stats();
    assert_eq!(stats.disk_reads, 1, "the fast path never read the disk");

    let arc = common::Summary::of(&arc);
    let auth = common::Summary::of(&auth);
    let auth_stat = common::Summary::of(&auth_stat);
    let reread = common::Summary::of(&reread);
    let rows = vec![
        vec!["operation", "median", "p10", "p90", "vs auth()"],
        vec![
            "Arc clone (physical limit)",
            &common::nanos(arc.p50),
            &common::nanos(arc.p10),
            &common::nanos(arc.p90),
            &format!("{:.1}x faster", auth.p50 / arc.p50),
        ],
        vec![
            "auth(), fresh token (watch)",
            &common::nanos(auth.p50),
            &common::nanos(auth.p10),
            &common::nanos(auth.p90),
            "1x",
        ],
        vec![
            "auth(), no watch (stat per call)",
            &common::nanos(auth_stat.p50),
            &common::nanos(auth_stat.p10),
            &common::nanos(auth_stat.p90),
            &format!("{:.1}x slower", auth_stat.p50 / auth.p50),
        ],
        vec![
            "re-read + parse auth.json (baseline)",
            &common::nanos(reread.p50),
            &common::nanos(reread.p10),
            &common::nanos(reread.p90),
            &format!("{:.0}x slower", reread.p50 / auth.p50),
        ],
    ]
    .into_iter()
    .map(|r| r.into_iter().map(str::to_owned).collect())
    .collect::<Vec<Vec<String>>>();
    println!();
    common::print_table(&rows);
    let speedup = reread.p50 / auth.p50;
    println!(
        "\nauth() is {speedup:.0}x faster than re-read + parse (target: at least 100x): {}",
        if speedup >= 100.0 { "met" } else { "MISSED" }
    );
    println!(
        "an Arc clone is {:.1}x faster than auth() (the physical limit)",
        auth.p50 / arc.p50
    );
    common::write_results(
        "auth_latency",
        options,
        json!({
            "unit": "ns per call",
            "document_bytes": std::fs::metadata(&path).map_or(0, |m| m.len()),
            "arc_clone": arc.to_json(),
            "auth_watch": auth.to_json(),
            "auth_stat": auth_stat.to_json(),
            "reread_parse": reread.to_json(),
            "speedup_vs_reread": speedup,
            "arc_vs_auth": auth.p50 / arc.p50,
            "target_met": speedup >= 100.0,
        }),
    );
}

fn per_op(iterations: u32, mut op: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..iterations {
        op();
    }
    started.elapsed().as_nanos() as f64 / f64::from(iterations)
}

async fn per_op_async<F: Future<Output = ()>>(iterations: u32, mut op: impl FnMut() -> F) -> f64 {
    let started = Instant::now();
    for _ in 0..iterations {
        op().await;
    }
    started.elapsed().as_nanos() as f64 / f64::from(iterations)
}
