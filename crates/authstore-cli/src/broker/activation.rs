//! Socket activation: the listening socket a service manager passes the broker, so that the
//! token endpoint's port is held by the service manager for the whole session (systemd's
//! `.socket` units, launchd's `Sockets`), whether the broker is running or not.
//!
//! systemd's protocol (`sd_listen_fds(3)`): `LISTEN_PID` is this process's pid and
//! `LISTEN_FDS` the number of descriptors passed, from 3 on. The broker takes the first, which
//! must be a listening TCP socket. Verified on Linux with `systemd-socket-activate` (the
//! command line's `broker` tests). launchd hands its sockets out through
//! `launch_activate_socket`, which is not wired here: on macOS the broker binds its address
//! itself (compiled and linted only). Windows has no socket activation: the broker binds.

use authstore::error::Error;
use tokio::net::TcpListener;

/// The first descriptor a service manager passes.
#[cfg(unix)]
const FIRST_PASSED_FD: i32 = 3;

/// The listening socket the service manager passed this process, if it passed one.
///
/// # Errors
/// The variables say a socket was passed, but descriptor 3 is not a listening TCP socket.
#[cfg(unix)]
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

#[cfg(not(unix))]
pub(super) fn passed_listener() -> Result<Option<TcpListener>, Error> {
    Ok(None)
}
