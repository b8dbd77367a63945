//! Where credentials are kept, and the one transaction every change to them goes through.

pub mod file;
#[cfg(feature = "postgres")]
pub mod postgres;
mod sys;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use file::{
    AUTH_FILE, FileStore, StoreOptions, TRANSACTION_LOCK_FILE, Transaction, WRITE_LOCK_FILE,
};

/// The Codex home: `explicit` when given, else `CODEX_HOME` when set and non-empty (it must name
/// an existing directory), else `~/.codex`.
///
/// # Errors
/// [`Error::InvalidInput`] when `CODEX_HOME` names something that is not a directory, or when
/// there is no home directory to default to.
pub fn resolve_codex_home(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    match std::env::var_os("CODEX_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_dir() {
                Ok(dir)
            } else {
                Err(Error::invalid_input(format!(
                    "CODEX_HOME={} is not an existing directory; create it or unset CODEX_HOME",
                    dir.display()
                )))
            }
        }
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| PathBuf::from(home).join(".codex"))
            .ok_or_else(|| {
                Error::invalid_input("neither CODEX_HOME nor HOME is set; pass --codex-home DIR")
            }),
    }
}
