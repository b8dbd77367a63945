//! The command line's tests: one test target, one module per topic (compiled and linked once).
//! Each runs the real `authstore` binary as separate processes against a real HTTP token
//! authority (the embedded simulator) or a real PostgreSQL server; the fixtures are
//! `authstore-testkit`'s (`binary::Env`: a temporary Codex home beside a running authority, and the
//! binary's command line in it). Two modules specialise them for themselves: `postgres_machines`
//! (`Machines`: an `Env` and a testkit `Home` per machine) and `agent_service` (`Sandbox`: a
//! temporary user whose service managers are stand-ins, the testkit's binary and bounded runs).
//! `AUTHSTORE_TEST_BINARY` runs them against another build of the binary (CI: the static musl
//! one).

mod agent;
mod agent_service;
mod agent_standby;
mod agent_wake;
mod broker;
mod cli_processes;
mod completions;
mod crash_points;
mod demo;
mod hardening;
mod keyring;
mod postgres_machines;
mod sandbox;
mod secrets_file;
mod token_formats;
mod token_rejected;
