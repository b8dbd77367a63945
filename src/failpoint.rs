//! Test-only fault injection, compiled in only with the `failpoints` feature.
//!
//! `AUTHSTORE_FAILPOINT=<name>` makes the named point act: the write steps (`after-create`,
//! `after-write`, `after-fsync`, `after-rename`, `after-dir-fsync`) kill the process with
//! SIGKILL, as a crash would; `lock-unsupported` makes locking fail as on a filesystem without
//! lock support. Without the feature every point compiles to nothing.

/// The environment variable naming the active failpoint.
#[cfg(feature = "failpoints")]
const ENV: &str = "AUTHSTORE_FAILPOINT";

/// Whether the named failpoint is active.
#[cfg(feature = "failpoints")]
pub(crate) fn active(name: &str) -> bool {
    std::env::var(ENV).is_ok_and(|wanted| wanted == name)
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn active(_name: &str) -> bool {
    false
}

/// Kills the process at the named step of a write when that failpoint is active.
#[inline]
pub(crate) fn crash_at(step: &str) {
    if active(step) {
        #[cfg(unix)]
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}
