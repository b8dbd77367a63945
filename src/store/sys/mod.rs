//! Platform differences, behind one set of function signatures per platform.
//!
//! Linux is what the whole test suite runs on. macOS shares the Unix module (with
//! `F_FULLFSYNC` for durability) and is compiled and linted for, not run. The Windows module has
//! the same signatures; it is compiled and linted for `x86_64-pc-windows-gnu`, and the
//! platform-neutral tests (`tests/it/store_platform.rs` among them) run against it under Wine
//! (`scripts/wine-tests.sh`), which is not Windows: NTFS, real sharing modes and ACLs are not
//! what Wine emulates on ext4. See the file store's module documentation for each platform's
//! choices.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
