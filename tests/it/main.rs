//! The library's tests: one test target, one module per topic (compiled and linked once).
//!
//! The multi-process tests re-execute this test executable as their workers, naming the worker
//! test by its full path (`store_processes::worker_entry`).

mod answers;
mod document_properties;
mod manager_scenarios;
mod postgres_store;
mod store_platform;
mod store_processes;
