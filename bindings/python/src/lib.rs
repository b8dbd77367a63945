//! `authstore._native`: the Python package's extension module (PyO3, abi3 for CPython 3.9 and
//! newer). The Python-facing names are documented in `python/authstore/__init__.pyi`.
//!
//! - [`manager`]: `AuthManager` and `Credentials` over the library's [`authstore::AuthManager`],
//!   each manager with a tokio runtime of its own; every blocking call releases the GIL;
//! - [`watch`]: the iterator of `watch --json` events;
//! - [`errors`]: the exception classes and how library errors map to them;
//! - the `authstore` command: the command-line crate's [`authstore_cli::main_from`], so that
//!   the wheel's `authstore` command is the same program as the Rust binary.
//!
//! Verified by the pytest suite in `tests/` (Linux). Not verified here: macOS and Windows wheels
//! (the code is the same; nothing in this crate is platform-specific).

use std::ffi::OsString;
use std::path::PathBuf;

use pyo3::prelude::*;

mod errors;
mod manager;
mod watch;

/// Runs the `authstore` command line with `argv` (the program name first) and returns its exit
/// code. `executable` names the program that runs it (the console script), for the commands
/// that start more processes of themselves (the demo's workers): under Python, this process's
/// executable is the interpreter.
#[pyfunction]
#[pyo3(signature = (argv, executable=None))]
fn run_cli(py: Python<'_>, argv: Vec<OsString>, executable: Option<PathBuf>) -> u8 {
    if let Some(executable) = executable {
        authstore_cli::set_own_executable(executable);
    }
    py.detach(|| authstore_cli::main_from(argv))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_class::<manager::AuthManager>()?;
    m.add_class::<manager::Credentials>()?;
    m.add_class::<watch::Watch>()?;
    errors::register(m)?;
    m.add("HAS_POSTGRES", cfg!(feature = "postgres"))?;
    m.add("HAS_KEYRING", cfg!(feature = "keyring"))?;
    Ok(())
}
