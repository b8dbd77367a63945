//! One-shot commands of the real binary started behind a gate: what a machine runs
//! (`authstore ... token`), N of them released at one moment, timed until each has answered.
//!
//! Unlike the long-lived [`super::Worker`] sessions (which are set up before the start signal),
//! the exec of the binary, its start-up and whatever it connects to are inside the timing. Each
//! process is first a tiny shell that prints `ready` and waits for a line on stdin; the start
//! signal makes it `exec` the binary, so only the shell's own start-up stays outside.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Read by the shell, then `exec`: `$0` is the binary, `$@` its arguments.
const GATE: &str = "echo ready; read go; exec \"$0\" \"$@\"";

/// What one gated command did.
#[derive(Debug)]
pub struct Outcome {
    /// From the start signal to its first line on stdout (`None`: it printed nothing).
    pub answered_after: Option<Duration>,
    /// From the start signal to its exit.
    pub exited_after: Duration,
    pub status: ExitStatus,
    /// Its first line on stdout, trimmed. Kept in memory only (it may be a token).
    pub first_line: String,
    /// Its stderr (never a token in authstore's messages).
    pub stderr: String,
}

impl Outcome {
    /// Answered with a line and exited 0.
    pub fn succeeded(&self) -> bool {
        self.status.success() && self.answered_after.is_some()
    }
}

struct Gated {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_path: PathBuf,
}

/// Runs one command per entry of `commands` (the binary's arguments), all with the environment
/// `env` added (and `CODEX_HOME`, `AUTHSTORE_*` and `PG*` removed): waits until every gate is
/// ready, opens them all, and waits for every process to exit. Stderr goes to files in `logs`.
pub fn run(
    binary: &Path,
    commands: &[Vec<OsString>],
    env: &[(&str, &str)],
    logs: &Path,
) -> Vec<Outcome> {
    let mut gated: Vec<Gated> = commands
        .iter()
        .enumerate()
        .map(|(i, args)| spawn(binary, args, env, logs, i))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for process in &mut gated {
        let mut line = String::new();
        let read = process.stdout.read_line(&mut line).unwrap_or(0);
        assert!(
            read > 0 && line.trim() == "ready",
            "a gated process did not get ready"
        );
        assert!(
            Instant::now() < deadline,
            "gated processes took too long to start"
        );
    }
    let mut stdins = Vec::with_capacity(gated.len());
    let mut threads = Vec::with_capacity(gated.len());
    for process in gated {
        let Gated {
            mut child,
            stdin,
            mut stdout,
            stderr_path,
        } = process;
        stdins.push(stdin);
        threads.push(std::thread::spawn(move || {
            let mut line = String::new();
            let read = stdout.read_line(&mut line).unwrap_or(0);
            let answered_at = (read > 0).then(Instant::now);
            let mut rest = Vec::new();
            let _ = stdout.read_to_end(&mut rest);
            let status = child.wait().expect("a gated process can be waited for");
            let exited_at = Instant::now();
            let mut stderr = String::new();
            if let Ok(mut file) = File::open(&stderr_path) {
                let _ = file.read_to_string(&mut stderr);
            }
            let _ = fs::remove_file(&stderr_path);
            (
                answered_at,
                exited_at,
                status,
                line.trim().to_owned(),
                stderr,
            )
        }));
    }
    // Every reader thread is waiting on its process's stdout; open the gates.
    let go = Instant::now();
    for mut stdin in stdins {
        let _ = stdin.write_all(b"go\n").and_then(|()| stdin.flush());
    }
    threads
        .into_iter()
        .map(|thread| {
            let (answered_at, exited_at, status, first_line, stderr) =
                thread.join().expect("a reader thread does not panic");
            Outcome {
                answered_after: answered_at.map(|at: Instant| at.saturating_duration_since(go)),
                exited_after: exited_at.saturating_duration_since(go),
                status,
                first_line,
                stderr,
            }
        })
        .collect()
}

fn spawn(binary: &Path, args: &[OsString], env: &[(&str, &str)], logs: &Path, i: usize) -> Gated {
    let stderr_path = logs.join(format!("gated-{}-{i}.log", std::process::id()));
    let stderr = File::create(&stderr_path).expect("a log file can be created");
    let mut command = Command::new("sh");
    command.arg("-c").arg(GATE).arg(binary).args(args);
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("PG") || name_text.starts_with("AUTHSTORE_") {
            command.env_remove(&name);
        }
    }
    command.env_remove("CODEX_HOME");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("sh starts");
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    Gated {
        child,
        stdin,
        stdout,
        stderr_path,
    }
}
