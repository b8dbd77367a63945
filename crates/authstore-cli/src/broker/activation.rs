//! Socket activation: the listening socket a service manager passes the broker, so that the
//! token endpoint's port is held by the service manager for the whole session (systemd's
//! `.socket` units, launchd's `Sockets`), whether the broker is running or not.
//!
//! systemd's protocol (`sd_listen_fds(3)`): `LISTEN_PID` is this process's pid and
//! `LISTEN_FDS` the number of descriptors passed, from 3 on. The broker takes the first, which
//! must be a listening TCP socket. Verified on Linux with `systemd-socket-activate` (the
//! command line's `broker` tests).
//!
//! launchd hands out the sockets of a job's `Sockets` dictionary through
//! `launch_activate_socket(3)` (libSystem, macOS 10.10+), by the dictionary's key: the broker
//! asks for `Broker`, the key `agent install --broker` writes. A non-zero answer (ESRCH: not
//! started by launchd; ENOENT: the job has no such socket) means none was passed, and the broker
//! binds its address itself. The macOS branch is compiled and linted only (no macOS here).
//! Windows has no socket activation: the broker binds.

use authstore::error::Error;
use tokio::net::TcpListener;

/// The first descriptor a service manager passes.
#[cfg(all(unix, not(target_os = "macos")))]
const FIRST_PASSED_FD: i32 = 3;

/// The listening socket the service manager passed this process, if it passed one.
///
/// # Errors
/// The variables say a socket was passed, but descriptor 3 is not a listening TCP socket.
#[cfg(all(unix, not(target_os = "macos")))]
pub(super) fn passed_listener() -> Result<Option<TcpListener>, Error> {
    use std::os::fd::FromRawFd;
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|count| count.parse::<u32>().ok())
        .unwrap_or(0);
    if !for_us || count == 0 {
        return Ok(None);
    }
    let refused = |why: String| {
        Error::invalid_input(format!(
            "the service manager passed descriptor {FIRST_PASSED_FD} (LISTEN_FDS={count}), but {why}: \
             the broker's socket unit must be a ListenStream= TCP address"
        ))
    };
    // SAFETY: LISTEN_PID names this process, so descriptor 3 was passed to it to own, and
    // nothing else in the process uses it: it is taken once, at start.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(FIRST_PASSED_FD) };
    if let Err(error) = listener.local_addr() {
        // Not a TCP socket: give the descriptor back untouched rather than close it.
        std::mem::forget(listener);
        return Err(refused(format!("it is not a TCP socket ({error})")));
    }
    listener
        .set_nonblocking(true)
        .map_err(|error| refused(format!("it cannot be made non-blocking ({error})")))?;
    TcpListener::from_std(listener)
        .map(Some)
        .map_err(|error| refused(format!("it cannot be used ({error})")))
}

/// The key of the broker's socket in the LaunchAgent's `Sockets` dictionary.
#[cfg(target_os = "macos")]
pub(crate) const LAUNCHD_SOCKET_NAME: &str = "Broker";

/// The listening socket launchd passed this job under [`LAUNCHD_SOCKET_NAME`], if it passed one.
///
/// # Errors
/// launchd passed a descriptor that is not a usable TCP socket.
#[cfg(target_os = "macos")]
pub(super) fn passed_listener() -> Result<Option<TcpListener>, Error> {
    use std::ffi::{CString, c_char, c_int};
    use std::os::fd::FromRawFd;

    unsafe extern "C" {
        fn launch_activate_socket(
            name: *const c_char,
            fds: *mut *mut c_int,
            cnt: *mut usize,
        ) -> c_int;
    }

    let name = CString::new(LAUNCHD_SOCKET_NAME).expect("the socket name has no NUL");
    let mut fds: *mut c_int = std::ptr::null_mut();
    let mut count: usize = 0;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; `fds` and `count` are
    // valid out-pointers. On success launchd gives an array of `count` descriptors that the
    // caller owns and frees.
    let result = unsafe { launch_activate_socket(name.as_ptr(), &raw mut fds, &raw mut count) };
    if result != 0 || fds.is_null() {
        return Ok(None);
    }
    // SAFETY: on success `fds` points to `count` descriptors.
    let passed: Vec<c_int> = unsafe { std::slice::from_raw_parts(fds, count) }.to_vec();
    // SAFETY: the array was allocated by launchd with malloc and is this process's to free.
    unsafe { libc::free(fds.cast()) };
    let Some((&first, rest)) = passed.split_first() else {
        return Ok(None);
    };
    // One socket per `Sockets` entry of one address; any further one (a second address family)
    // is closed rather than leaked.
    for &extra in rest {
        // SAFETY: launchd passed the descriptor for this process to own.
        drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(extra) });
    }
    let refused = |why: String| {
        Error::invalid_input(format!(
            "launchd passed the socket {LAUNCHD_SOCKET_NAME:?}, but {why}: the LaunchAgent's \
             Sockets entry must be a stream (TCP) address"
        ))
    };
    // SAFETY: launchd passed the descriptor for this process to own; it is taken once, at start.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(first) };
    if let Err(error) = listener.local_addr() {
        return Err(refused(format!("it is not a TCP socket ({error})")));
    }
    listener
        .set_nonblocking(true)
        .map_err(|error| refused(format!("it cannot be made non-blocking ({error})")))?;
    TcpListener::from_std(listener)
        .map(Some)
        .map_err(|error| refused(format!("it cannot be used ({error})")))
}

#[cfg(not(unix))]
pub(super) fn passed_listener() -> Result<Option<TcpListener>, Error> {
    Ok(None)
}
