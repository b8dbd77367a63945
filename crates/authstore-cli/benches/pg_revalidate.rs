//! How a long-lived manager on a PostgreSQL store learns that the row changed: the cost of one
//! revalidation (once per poll interval, 1 s by default) when nothing changed.
//!
//! - `document` (the baseline): `SELECT document ... WHERE key = $1`, the whole row's document,
//!   as every revalidation fetched it before the store remembered what it read;
//! - `generation`: `SELECT generation ... WHERE key = $1`, the statement a revalidation now
//!   sends while the row is unchanged;
//! - `PgStore::read, unchanged`: the library path itself (the generation query, then the
//!   remembered document cloned), what `AuthManager` pays per revalidation.
//!
//! The three alternate iteration by iteration on one connection each, against a throwaway
//! cluster on loopback (the server on the same machine: the round trip is the floor, and the
//! document's transfer and parsing are what differ). A changed row costs one more round trip
//! than before (the generation, then the document), once per change.
//!
//! `cargo bench --features postgres --bench pg_revalidate` (add `-- --quick` for fewer
//! iterations). Needs the PostgreSQL server programs, like the tests.
// Unix only (processes, CLOCK_MONOTONIC, flock, a PostgreSQL cluster); elsewhere empty.
#![cfg_attr(not(unix), no_main)]
#![cfg(unix)]

mod common;

use authstore_testkit::postgres as pg;

use std::time::Instant;

use authstore::document::AuthDocument;
use authstore::store::postgres::{PgOptions, PgStore};
use serde_json::json;

const KEY: &str = "default";

fn main() {
    let Some(options) = common::options("pg_revalidate") else {
        return;
    };
    let iterations = if options.quick { 300 } else { 3000 };
    common::print_machine();
    let cluster = pg::Cluster::start();
    let database = cluster.create_database("revalidate");
    let url = cluster.url(&database);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let document = common::realistic_document();
    let bytes = document.to_json().len();

    let results = runtime.block_on(async {
        let store = PgStore::connect(&url, KEY, PgOptions::default())
            .await
            .expect("the store connects");
        let mut transaction = store.begin().await.expect("the row lock");
        transaction.write(&document).await.expect("the write");
        transaction.commit().await.expect("the commit");
        // The first read fetches the document and remembers it with the generation.
        assert_eq!(store.read().await.expect("a read"), Some(document.clone()));

        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("a raw connection");
        tokio::spawn(connection);
        let by_document = client
            .prepare("SELECT document FROM authstore_credentials WHERE key = $1")
            .await
            .expect("prepared");
        let by_generation = client
            .prepare("SELECT generation FROM authstore_credentials WHERE key = $1")
            .await
            .expect("prepared");

        let mut samples: [Vec<f64>; 3] = Default::default();
        for i in 0..iterations + 50 {
            let started = Instant::now();
            let row = client.query_one(&by_document, &[&KEY]).await.expect("row");
            let text: String = row.get(0);
            let parsed = AuthDocument::parse(text.as_bytes()).expect("parses");
            let document_ns = elapsed_ns(started);
            std::hint::black_box(parsed);

            let started = Instant::now();
            let row = client
                .query_one(&by_generation, &[&KEY])
                .await
                .expect("row");
            let generation: i64 = row.get(0);
            let generation_ns = elapsed_ns(started);
            std::hint::black_box(generation);

            let started = Instant::now();
            let read = store.read().await.expect("a read");
            let store_ns = elapsed_ns(started);
            std::hint::black_box(read);

            // The first iterations warm the connections and the server's caches.
            if i >= 50 {
                samples[0].push(document_ns);
                samples[1].push(generation_ns);
                samples[2].push(store_ns);
            }
        }
        samples
    });

    let [document_ns, generation_ns, store_ns] = results.map(|s| common::Summary::of(&s));
    let mut rows = vec![vec![
        "one revalidation, row unchanged".to_owned(),
        "median".to_owned(),
        "p10".to_owned(),
        "p90".to_owned(),
        "p99".to_owned(),
        "vs document".to_owned(),
    ]];
    for (name, summary) in [
        ("SELECT document + parse (baseline)", document_ns),
        ("SELECT generation", generation_ns),
        ("PgStore::read, unchanged", store_ns),
    ] {
        rows.push(vec![
            name.to_owned(),
            common::nanos(summary.p50),
            common::nanos(summary.p10),
            common::nanos(summary.p90),
            common::nanos(summary.p99),
            format!("{:.2}x", summary.p50 / document_ns.p50),
        ]);
    }
    println!(
        "\n{iterations} revalidations per variant, alternating; a {bytes}-byte document; \
         PostgreSQL on 127.0.0.1:{}\n",
        cluster.port()
    );
    common::print_table(&rows);
    common::write_results(
        "pg_revalidate",
        options,
        json!({
            "iterations": iterations,
            "document_bytes": bytes,
            "variants": {
                "document": document_ns.to_json(),
                "generation": generation_ns.to_json(),
                "store_read_unchanged": store_ns.to_json(),
            },
            "ratio_store_read_to_document": store_ns.p50 / document_ns.p50,
        }),
    );
    cluster.stop();
}

fn elapsed_ns(started: Instant) -> f64 {
    started.elapsed().as_nanos() as f64
}
