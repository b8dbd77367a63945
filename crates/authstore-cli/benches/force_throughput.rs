//! Forced-refresh throughput with N contending processes against the serial limit. The same
//! number of forced refreshes (`AuthManager::force_refresh`, each a whole transaction: lock,
//! re-read, token request, durable write) is made by one process back to back (the serial
//! limit), then split over N processes of the real binary that contend for the lock. Every
//! run also checks exactly-once spending: as many token-endpoint calls as refreshes, every
//! presented refresh token distinct, no reuse.
//!
//! `cargo bench --bench force_throughput` (add `-- --quick` for fewer refreshes and runs).
// Unix only (processes, CLOCK_MONOTONIC, flock, a PostgreSQL cluster); elsewhere empty.
#![cfg_attr(not(unix), no_main)]
#![cfg(unix)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use authstore_simulator::{Identity, Simulator, SimulatorConfig};
use common::protocol::{Launch, Mode, Strategy};
use serde_json::{Value, json};

fn main() {
    let Some(options) = common::options("force_throughput") else {
        return;
    };
    common::print_machine();
    let total: usize = if options.quick { 96 } else { 480 };
    let sizes: &[usize] = if options.quick {
        &[1, 4, 16]
    } else {
        &[1, 2, 4, 8, 16]
    };
    // Diagnostic: the same without the directory watch (one stat per call instead), to show what
    // the watch's wake-ups cost when many processes share the directory.
    let diagnostic: &[usize] = &[1, 16];
    let configurations: Vec<(usize, bool)> = sizes
        .iter()
        .map(|&n| (n, true))
        .chain(diagnostic.iter().map(|&n| (n, false)))
        .collect();
    let repeats = if options.quick { 1 } else { 3 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the token authority");
    let logs = common::scratch_dir("force-logs-");
    println!(
        "{total} forced refreshes per run, split over N processes; {repeats} run(s), medians\n"
    );

    // Repetitions are interleaved, so that a slow moment of the machine hits every row alike.
    let mut runs: Vec<Vec<Value>> = vec![Vec::new(); configurations.len()];
    for _ in 0..repeats {
        for (i, &(n, watch)) in configurations.iter().enumerate() {
            runs[i].push(run_once(&runtime, n, watch, total, logs.path()));
        }
    }
    let mut results: Vec<Value> = configurations
        .iter()
        .zip(runs)
        .map(|(&(n, watch), runs)| {
            let per_second: Vec<f64> = runs
                .iter()
                .filter_map(|r| r["per_second"].as_f64())
                .collect();
            json!({
                "processes": n,
                "watch": watch,
                "refreshes": total,
                "per_second": common::Summary::of(&per_second).p50,
                "runs": runs,
            })
        })
        .collect();
    let serial_of = |results: &[Value], watch: bool| {
        results
            .iter()
            .find(|r| r["processes"] == 1 && r["watch"] == watch)
            .and_then(|r| r["per_second"].as_f64())
            .unwrap_or(f64::NAN)
    };
    let serial = serial_of(&results, true);
    let serial_stat = serial_of(&results, false);
    let mut table = vec![
        [
            "processes",
            "refreshes",
            "refreshes/s",
            "vs serial",
            "per refresh",
            "endpoint calls",
            "reused",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for result in &mut results {
        let watch = result["watch"] == true;
        let rate = result["per_second"].as_f64().unwrap_or(f64::NAN);
        let limit = if watch { serial } else { serial_stat };
        result["vs_serial"] = json!(rate / limit);
        let runs = result["runs"].as_array().cloned().unwrap_or_default();
        let calls: u64 = runs
            .iter()
            .filter_map(|r| r["calls"].as_u64())
            .max()
            .unwrap_or(0);
        let reused: u64 = runs
            .iter()
            .filter_map(|r| r["reuse_rejections"].as_u64())
            .sum();
        let n = result["processes"].as_u64().unwrap_or(0);
        let mut label = if n == 1 {
            "1 (serial limit)".to_owned()
        } else {
            n.to_string()
        };
        if !watch {
            label.push_str(", no watch");
        }
        table.push(vec![
            label,
            total.to_string(),
            format!("{rate:.0}"),
            format!("{:.0}%", 100.0 * rate / limit),
            common::nanos(1e9 / rate),
            calls.to_string(),
            reused.to_string(),
        ]);
    }
    common::print_table(&table);
    println!("(\"no watch\": diagnostic rows, coordinated sessions that stat auth.json per call)");
    let ratio_of = |watch: bool| {
        results
            .iter()
            .find(|r| r["processes"] == 16 && r["watch"] == watch)
            .and_then(|r| r["vs_serial"].as_f64())
    };
    let at_16 = ratio_of(true);
    if let Some(ratio) = at_16 {
        println!(
            "\n16 processes reach {:.0}% of the serial limit (target: at least 90%): {}",
            100.0 * ratio,
            if ratio >= 0.9 { "met" } else { "MISSED" }
        );
    }
    common::write_results(
        "force_throughput",
        options,
        json!({
            "refreshes_per_run": total,
            "serial_per_second": serial,
            "by_processes": results,
            "ratio_at_16": at_16,
            "ratio_at_16_without_watch": ratio_of(false),
            "target_met": at_16.map(|r| r >= 0.9),
        }),
    );
}

fn run_once(
    runtime: &tokio::runtime::Runtime,
    n: usize,
    watch: bool,
    total: usize,
    logs: &std::path::Path,
) -> Value {
    let simulator = runtime
        .block_on(Simulator::start(SimulatorConfig {
            family_revocation: true,
            access_token_lifetime: Duration::from_secs(3600),
            ..SimulatorConfig::default()
        }))
        .expect("the token authority starts");
    let home = common::scratch_dir("force-home-");
    let login = simulator.auth_json(&Identity::new("acct-bench", "user-bench"));
    std::fs::write(home.path().join("auth.json"), login.to_string()).expect("login written");
    let launch = Launch {
        count: (total / n) as u64,
        no_watch: !watch,
        ..Launch::new(Strategy::Coordinated, Mode::Force)
    };
    let (go, reports) = common::run_workers(n, home.path(), &simulator.token_url(), &launch, logs);
    let stats = simulator.stats();
    let presented = simulator.presented_refresh_tokens();
    runtime.block_on(simulator.shutdown());

    let distinct: HashSet<&String> = presented.iter().collect();
    let refreshes = common::sum(&reports, |r| r.served);
    assert_eq!(
        common::sum(&reports, |r| r.failed),
        0,
        "a forced refresh failed"
    );
    assert_eq!(refreshes as usize, total, "every forced refresh was made");
    assert_eq!(stats.refresh_calls as usize, total, "one call per refresh");
    assert_eq!(
        distinct.len(),
        presented.len(),
        "every refresh token spent once"
    );
    assert_eq!(stats.reuse_rejections, 0);
    let end = reports
        .iter()
        .map(|r| r.done_at_unix_ns)
        .max()
        .unwrap_or(go);
    let seconds = end.saturating_sub(go) as f64 / 1e9;
    json!({
        "seconds": seconds,
        "per_second": total as f64 / seconds,
        "calls": stats.refresh_calls,
        "reuse_rejections": stats.reuse_rejections,
    })
}
