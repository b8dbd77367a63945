//! An `authstore agent` as a real process of the real binary, read event by event (`--json`),
//! and `status --json` as other processes see it.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::binary::{BOUND, Env, assert_success};

pub struct Agent {
    pub child: Child,
    pub pid: u32,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Agent {
    /// Starts `command` (an `agent` command line) with stdout read line by line.
    pub fn spawn(mut command: Command) -> Self {
        command.stderr(Stdio::null());
        let mut child = command.spawn().expect("the agent starts");
        let pid = child.id().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, pid, lines }
    }

    /// `authstore agent --json --ahead AHEAD` on `env`'s home.
    pub fn start(env: &Env, ahead: &str) -> Self {
        Self::spawn(env.command(&["agent", "--json", "--ahead", ahead]))
    }

    /// The next line, within `within`; `None` when the agent closed stdout.
    pub async fn next_line_within(&mut self, within: Duration) -> Option<String> {
        tokio::time::timeout(within, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no agent output within {within:?}"))
            .unwrap()
    }

    /// The next `--json` event.
    pub async fn next_event(&mut self) -> Value {
        let line = self
            .next_line_within(BOUND)
            .await
            .expect("the agent is running");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON event: {line}"))
    }

    /// Reads events until one named `event`, returns it.
    pub async fn wait_for(&mut self, event: &str) -> Value {
        loop {
            let value = self.next_event().await;
            if value["event"] == event {
                return value;
            }
        }
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe { libc::kill(self.pid as i32, signal) };
    }

    /// Sends `signal` and waits (bounded) for the process to end; returns its status.
    pub async fn end(&mut self, signal: i32) -> std::process::ExitStatus {
        self.signal(signal);
        tokio::time::timeout(BOUND, self.child.wait())
            .await
            .expect("the agent ends in time")
            .unwrap()
    }
}

/// `status --json`, as another process sees the home.
pub async fn status_json(env: &Env) -> Value {
    let output = env.run(&["status", "--json"]).await;
    assert_success(&output);
    serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
}

/// The pid `status --json` names as the home's agent, if any.
pub async fn reported_agent_pid(env: &Env) -> Option<u64> {
    let status = status_json(env).await;
    match &status["agent"] {
        Value::Null => None,
        agent => Some(agent["pid"].as_u64().expect("agent.pid is a number")),
    }
}
