//! Platform differences, behind one set of function signatures per platform.
//!
//! Unix (Linux, macOS) is what the test suite runs on. The Windows module compiles to the same
//! signatures and is written with care, but is not exercised here (it is compile-checked for
//! `x86_64-pc-windows-gnu`).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
