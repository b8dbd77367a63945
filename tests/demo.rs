#![cfg(feature = "simulator")]
//! `authstore demo` end to end, small: real worker processes of the real binary under the three
//! strategies. Asserts correctness from the `--json` figures, never timings.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_authstore");

fn figures<'a>(summary: &'a Value, strategy: &str) -> &'a Value {
    summary["strategies"]
        .as_array()
        .expect("a strategies array")
        .iter()
        .find(|f| f["strategy"] == strategy)
        .unwrap_or_else(|| panic!("no figures for {strategy}"))
}

fn count(figures: &Value, field: &str) -> u64 {
    figures[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {figures}"))
}

#[test]
fn coordinated_sessions_spend_each_refresh_token_once_and_are_never_forced_to_log_in_again() {
    let started = Instant::now();
    let output = Command::new(BIN)
        .args([
            "demo",
            "--processes",
            "3",
            "--duration",
            "3",
            "--token-lifetime",
            "1",
            "--json",
        ])
        .env_remove("CODEX_HOME")
        .env_remove("AUTHSTORE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the demo starts");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the demo is bounded"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status.code()
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["processes"], 3);

    let coordinated = figures(&summary, "coordinated");
    assert_eq!(count(coordinated, "reuse_rejections"), 0);
    assert_eq!(count(coordinated, "rejected_refreshes"), 0);
    assert_eq!(count(coordinated, "families_revoked"), 0);
    assert_eq!(count(coordinated, "forced_relogins"), 0);
    assert_eq!(count(coordinated, "sessions_forced_to_log_in"), 0);
    assert_eq!(count(coordinated, "sessions"), 3);
    assert!(count(coordinated, "requests_served") > 0);
    assert_eq!(count(coordinated, "requests_failed"), 0);
    let epochs = count(coordinated, "expiry_epochs");
    let calls = count(coordinated, "token_endpoint_calls");
    assert!(epochs >= 1, "a 1 s token expires during a 3 s run");
    assert!(
        calls <= epochs + 1,
        "at most one token-endpoint call per expiry (+1 at the boundary): {calls} calls, {epochs} expiries"
    );
    assert_eq!(count(coordinated, "successful_refreshes"), calls);

    // The baselines ran the same workload and report the same figures.
    for strategy in ["naive", "reread"] {
        let baseline = figures(&summary, strategy);
        assert_eq!(count(baseline, "sessions"), 3);
        assert!(count(baseline, "token_endpoint_calls") >= 1);
        assert!(baseline["latency_us"]["p99"].is_number());
    }

    // Counts and settings only: no token ever reaches the output.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for text in [&*stdout, &*stderr] {
        assert!(!text.contains("rt_"), "a refresh token leaked: {text}");
        assert!(!text.contains("eyJ"), "a JWT leaked: {text}");
    }
}

#[test]
fn the_demo_refuses_bad_settings_with_a_usage_error() {
    for args in [
        &["demo", "--processes", "0"][..],
        &["demo", "--token-lifetime", "0"],
        &["demo", "--duration", "-1"],
        &["demo", "--duration", "0"],
    ] {
        let output = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the demo starts");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn the_hidden_worker_never_runs_on_the_users_home_or_against_a_remote_authority() {
    let home = tempfile::tempdir().expect("a temporary home");
    let cases: [(&[&str], Option<&str>); 3] = [
        (&["demo-worker", "--strategy", "naive"], None),
        (
            &[
                "--codex-home",
                "HOME",
                "demo-worker",
                "--strategy",
                "coordinated",
            ],
            Some("https://auth.example.com/oauth/token"),
        ),
        (
            &[
                "--codex-home",
                "HOME",
                "demo-worker",
                "--strategy",
                "naive",
                "--login-url",
                "http://192.0.2.1/sim/login",
            ],
            Some("http://127.0.0.1:9/oauth/token"),
        ),
    ];
    for (args, token_url) in cases {
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "HOME" {
                    home.path().to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .stdin(Stdio::null())
            .env_remove("CODEX_HOME");
        match token_url {
            Some(url) => command.env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", url),
            None => command.env_remove("CODEX_REFRESH_TOKEN_URL_OVERRIDE"),
        };
        let output = command.output().expect("the worker starts");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}: it never got ready");
    }
}
