//! Bounded waits: no test waits on another process without a bound, and a process past its
//! bound is killed and fails the test (a hang otherwise shows as a suite that never ends).

use std::borrow::BorrowMut;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// No command a test runs may take longer than this.
pub const BOUND: Duration = Duration::from_secs(60);

/// Runs `command` (a `Command` or a `&mut Command`) to completion within [`BOUND`], stdin
/// empty, its output captured.
pub fn run_bounded(mut command: impl BorrowMut<Command>) -> Output {
    let child = command
        .borrow_mut()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    finish_bounded(child)
}

/// Waits for `child` (its stdout and stderr piped) within [`BOUND`] and collects its output.
pub fn finish_bounded(mut child: Child) -> Output {
    // Read the pipes on threads so that a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buffer);
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buffer);
        buffer
    });
    let status = wait_bounded(&mut child, BOUND);
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Waits for `child`, killing it (and failing the test) past `timeout`.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a child process did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `command` to completion within [`BOUND`] (its pipes as the command set them).
pub async fn output_bounded(mut command: tokio::process::Command) -> Output {
    tokio::time::timeout(BOUND, command.output())
        .await
        .expect("the process finished within the bound (a hang otherwise)")
        .expect("the process started")
}

/// Waits for `child` within [`BOUND`] and collects its output.
pub async fn wait_output_bounded(child: tokio::process::Child) -> Output {
    tokio::time::timeout(BOUND, child.wait_with_output())
        .await
        .expect("the process finished within the bound (a hang otherwise)")
        .expect("wait for the process")
}
