//! The durable write: `Transaction::write` (what authstore does to commit new tokens: take
//! `auth.json.lock`, serialize, temp file created exclusively with mode 0600, write, fsync,
//! rename over `auth.json`, fsync the directory, release) against the bare system-call
//! sequence (open a temp file, write, fsync, rename, open and fsync the directory): the
//! physical limit. Both run in a directory on the same filesystem as the target directory, and
//! alternate, so that a slow moment of the disk hits both alike.
//!
//! `cargo bench --bench durable_write` (add `-- --quick` for fewer iterations).
// Unix only (processes, CLOCK_MONOTONIC, flock, a PostgreSQL cluster); elsewhere empty.
#![cfg_attr(not(unix), no_main)]
#![cfg(unix)]

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use authstore::document::{AuthDocument, unsigned_jwt};
use authstore::store::{FileStore, StoreOptions};
use serde_json::json;

fn main() {
    let Some(options) = common::options("durable_write") else {
        return;
    };
    common::print_machine();
    let iterations = if options.quick { 60 } else { 400 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let document = document();
    let bytes = document.to_json();

    let ours_dir = common::scratch_dir("write-authstore-");
    let bare_dir = common::scratch_dir("write-bare-");
    let store = FileStore::new(ours_dir.path(), StoreOptions::default());
    let mut transaction = runtime.block_on(store.begin()).expect("auth.lock");

    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for i in 0..iterations + 10 {
        let started = Instant::now();
        runtime
            .block_on(transaction.write(&document))
            .expect("the durable write");
        let ours_ns = started.elapsed().as_nanos() as f64;

        let started = Instant::now();
        bare_write(bare_dir.path(), &bytes).expect("the bare sequence");
        let bare_ns = started.elapsed().as_nanos() as f64;
        if i >= 10 {
            ours.push(ours_ns);
            bare.push(bare_ns);
        }
    }
    drop(transaction);
    assert_eq!(
        fs::read(ours_dir.path().join("auth.json")).expect("written"),
        fs::read(bare_dir.path().join("auth.json")).expect("written"),
        "both wrote the same bytes"
    );

    let ours = common::Summary::of(&ours);
    let bare = common::Summary::of(&bare);
    let mut table = vec![
        ["durable write", "median", "p10", "p90", "p99", "mean"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for (name, s) in [
        ("bare syscalls (baseline)", bare),
        ("authstore Transaction::write", ours),
    ] {
        table.push(vec![
            name.to_owned(),
            common::nanos(s.p50),
            common::nanos(s.p10),
            common::nanos(s.p90),
            common::nanos(s.p99),
            common::nanos(s.mean),
        ]);
    }
    println!(
        "\n{iterations} writes of {} bytes each, alternating\n",
        bytes.len()
    );
    common::print_table(&table);
    let ratio = ours.p50 / bare.p50;
    println!(
        "\nauthstore / bare sequence (medians): {ratio:.2}x, means: {:.2}x (target: at most 1.2x): {}",
        ours.mean / bare.mean,
        if ratio <= 1.2 { "met" } else { "MISSED" }
    );
    common::write_results(
        "durable_write",
        options,
        json!({
            "unit": "ns per write",
            "iterations": iterations,
            "bytes": bytes.len(),
            "bare": bare.to_json(),
            "authstore": ours.to_json(),
            "ratio_p50": ratio,
            "ratio_mean": ours.mean / bare.mean,
            "target_met": ratio <= 1.2,
        }),
    );
}

/// The physical limit: the five steps, nothing else.
fn bare_write(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(".auth.json.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, dir.join("auth.json"))?;
    File::open(dir)?.sync_all()
}

/// A document of realistic size (about 2 KiB, as Codex's).
fn document() -> AuthDocument {
    let claims = json!({
        "exp": 4_102_444_800u64, "iat": 1_767_225_600u64, "email": "someone@example.com",
        "https://api.openai.com/auth": {
            "chatgpt_account_id": "3f0b2c9e-5a41-4d7e-9b1a-2c6d8e4f7a10",
            "chatgpt_user_id": "user-Zk4vQx8rT2mN6pL9sW1yB3cD", "chatgpt_plan_type": "plus",
            "organizations": [{"id": "org-7hJk2LmN4pQr6StU8vWx", "is_default": true, "role": "owner"}],
        },
        "scp": ["openid", "profile", "email", "offline_access"],
        "sub": "google-oauth2|104857392016485739201",
    });
    let value = json!({
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": unsigned_jwt(&claims),
            "access_token": unsigned_jwt(&claims),
            "refresh_token": format!("rt_{}", "x".repeat(60)),
            "account_id": "3f0b2c9e-5a41-4d7e-9b1a-2c6d8e4f7a10",
        },
        "last_refresh": "2026-11-29T14:00:00.000000Z",
    });
    AuthDocument::parse(value.to_string().as_bytes()).expect("the fixture parses")
}
