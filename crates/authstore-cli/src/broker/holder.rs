//! Who holds a loopback port: for `status`, when the token URL answers but not as this home's
//! broker (on a shared machine, another user's process could hold the broker's port while no
//! broker does, and receive the refresh tokens Codex sends there).
//!
//! Linux: the listening socket's owner (uid) and inode from `/proc/net/tcp` and `tcp6`, then the
//! process whose descriptor is that socket (found only among processes this user may inspect).
//! Verified on Linux by the `broker` tests. Elsewhere: not looked up (compiled only); `status`
//! then says only that the URL is not a broker.

/// "pid P (uid U)" or "a process of uid U" for the process listening on TCP `port`, if found.
#[cfg(target_os = "linux")]
pub(super) fn describe(port: u16) -> Option<String> {
    let (uid, inode) = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .find_map(|table| listener(&table, port))?;
    let socket = format!("socket:[{inode}]");
    let pid = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|target| target.as_os_str() == socket.as_str())
                })
                .then_some(pid)
        });
    Some(match pid {
        Some(pid) => format!("pid {pid} (uid {uid})"),
        None => format!("a process of uid {uid}"),
    })
}

/// The uid and inode of the socket listening on `port` in one `/proc/net/tcp*` table.
#[cfg(target_os = "linux")]
fn listener(table: &str, port: u16) -> Option<(u32, u64)> {
    const LISTEN: &str = "0A";
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = fields.get(1)?;
        let state = fields.get(3)?;
        let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        if local_port != port || *state != LISTEN {
            return None;
        }
        Some((fields.get(7)?.parse().ok()?, fields.get(9)?.parse().ok()?))
    })
}

#[cfg(not(target_os = "linux"))]
pub(super) fn describe(_port: u16) -> Option<String> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_holder_of_a_listening_port_is_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = describe(port).expect("the listener is found");
        assert!(
            holder.starts_with(&format!("pid {} ", std::process::id())),
            "{holder}"
        );
        drop(listener);
        assert_eq!(describe(port), None);
    }
}
