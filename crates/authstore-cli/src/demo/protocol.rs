//! The worker protocol: how a parent (`authstore demo`, the multi-process benchmarks) starts a
//! `demo-worker` process, what they say to each other on stdio, and what the worker reports.
//!
//! 1. The parent starts `authstore [global options] demo-worker ARGS`, with ARGS from
//!    [`Launch::to_args`]; the worker's command line is parsed by the same [`Launch`].
//! 2. Once its session is set up, the worker prints [`FromWorker::Ready`].
//! 3. It starts when it reads [`ToWorker::Go`] on stdin.
//! 4. At the end it prints [`FromWorker::Report`] and exits 0.
//!
//! Every message is one line of JSON, tagged by its `message` field (`{"message":"ready"}`).
//! Reading is strict: a missing, renamed or unknown field, an unknown message or a message that
//! is not JSON is a [`ProtocolError`], never a zero. No field has a serde default, so a report
//! written by another version of the worker fails loudly instead of reading as "no calls". No
//! message ever holds a token: the report is counts, times and a failure message (authstore's
//! messages never contain a token), and a [`ProtocolError`] does not repeat the values it read.
//!
//! # Why it is public
//!
//! The multi-process benchmarks and the demo's tests start workers of the real binary and read
//! their reports, so they need these types; they use them from this crate
//! (`authstore_cli::demo::protocol`), and the two sides cannot drift. It is the command line's
//! wire format with its own workers, not the library's API: the `authstore` library crate does
//! not export it.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use super::histogram::Histogram;

/// How the sessions of one run share `auth.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Baseline: refresh from the process's own cached copy; no re-read, no lock.
    Naive,
    /// Baseline: re-read and adopt compatible newer auth before refreshing; no lock.
    Reread,
    /// authstore: the cross-process refresh transaction.
    Coordinated,
}

impl Strategy {
    /// All of them, in the order the demo runs them.
    pub const ALL: [Strategy; 3] = [Strategy::Naive, Strategy::Reread, Strategy::Coordinated];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Reread => "reread",
            Strategy::Coordinated => "coordinated",
        }
    }
}

/// What a worker does once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Ask for credentials in a loop for the duration (the demo).
    Loop,
    /// Ask once (the amplification benchmark).
    Once,
    /// Obtain new tokens `count` times (the throughput benchmark).
    Force,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Loop => "loop",
            Mode::Once => "once",
            Mode::Force => "force",
        }
    }
}

/// The arguments of `demo-worker` (after the global options, which the parent adds itself):
/// parsed by the worker, rendered by the parent with [`Launch::to_args`].
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Launch {
    /// How the session shares auth.json
    #[arg(long, value_enum)]
    pub strategy: Strategy,

    /// What the session does once started
    #[arg(long, value_enum, default_value_t = Mode::Loop)]
    pub mode: Mode,

    /// Seconds the loop runs (--mode loop)
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,

    /// Forced refreshes to make (--mode force)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: u64,

    /// How long before expiry tokens count as stale
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub refresh_window_ms: u64,

    /// Shortest pause between two requests (--mode loop)
    #[arg(long, value_name = "MICROS", default_value_t = 1000)]
    pub pause_min_us: u64,

    /// Longest pause between two requests (--mode loop)
    #[arg(long, value_name = "MICROS", default_value_t = 5000)]
    pub pause_max_us: u64,

    /// Coordinated sessions notice changes by one `stat` per call instead of a directory watch
    #[arg(long)]
    pub no_watch: bool,

    /// Where to log in again after a permanent failure (the authority's /sim/login); without
    /// it, a session forced to log in again stops asking
    #[arg(long, value_name = "URL")]
    pub login_url: Option<String>,
}

impl Launch {
    /// The arguments with their command-line defaults, for `strategy` and `mode`.
    pub fn new(strategy: Strategy, mode: Mode) -> Self {
        Self {
            strategy,
            mode,
            duration: 10.0,
            count: 1,
            refresh_window_ms: 500,
            pause_min_us: 1000,
            pause_max_us: 5000,
            no_watch: false,
            login_url: None,
        }
    }

    /// The command line that [`Launch`] parses back into `self`: the subcommand and every
    /// argument, explicitly.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "demo-worker".to_owned(),
            format!("--strategy={}", self.strategy.name()),
            format!("--mode={}", self.mode.name()),
            format!("--duration={}", self.duration),
            format!("--count={}", self.count),
            format!("--refresh-window-ms={}", self.refresh_window_ms),
            format!("--pause-min-us={}", self.pause_min_us),
            format!("--pause-max-us={}", self.pause_max_us),
        ];
        if self.no_watch {
            args.push("--no-watch".to_owned());
        }
        if let Some(url) = &self.login_url {
            args.push(format!("--login-url={url}"));
        }
        args
    }
}

/// What the parent says to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToWorker {
    /// Start now. (A variant without fields would let serde ignore unknown ones.)
    Go {},
}

/// What a worker says to its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case", deny_unknown_fields)]
pub enum FromWorker {
    /// The session is set up; waiting for [`ToWorker::Go`].
    Ready {},
    /// The work is done; the worker exits next.
    Report(WorkerReport),
}

/// What a worker did. Counts and times only: never a token. Every field is required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerReport {
    pub pid: u32,
    /// Requests answered with credentials.
    pub served: u64,
    /// Requests that failed, for any reason.
    pub failed: u64,
    /// Failures that mean "log in again".
    pub permanent_failures: u64,
    /// Of those, `refresh_token_reused` answers that were not recovered.
    pub reused: u64,
    /// Times this session had to log in again.
    pub forced_relogins: u64,
    /// Temporary failures (network, lock deadline).
    pub transient_failures: u64,
    /// Anything else (I/O errors, ...).
    pub other_errors: u64,
    /// The first failure message, for diagnosis (messages never hold a token). Required like
    /// every other field: `null` when there was none (`deserialize_with` turns off serde's
    /// "missing `Option` is `None`").
    #[serde(deserialize_with = "Option::deserialize")]
    pub first_error: Option<String>,
    /// Successful refreshes this session made.
    pub refreshed: u64,
    /// Newer credentials adopted from disk instead of refreshing.
    pub adopted: u64,
    /// Whether the last request ended with fresh credentials.
    pub fresh_at_end: bool,
    /// Wall-clock time the start signal was read (ns since the Unix epoch).
    pub go_at_unix_ns: u64,
    /// Wall-clock time the work ended (ns since the Unix epoch).
    pub done_at_unix_ns: u64,
    /// The latency of every served request.
    pub latency: Histogram,
}

/// A line that is not the message expected from the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

impl ToWorker {
    /// The message as one line of JSON, without the newline.
    pub fn encode(&self) -> String {
        encode(self)
    }

    /// Reads one line.
    ///
    /// # Errors
    /// [`ProtocolError`] when the line is not a message to a worker.
    pub fn decode(line: &str) -> Result<Self, ProtocolError> {
        decode(line)
    }
}

impl FromWorker {
    /// The message as one line of JSON, without the newline.
    pub fn encode(&self) -> String {
        encode(self)
    }

    /// Reads one line.
    ///
    /// # Errors
    /// [`ProtocolError`] when the line is not a message from a worker, for example a report
    /// with a field missing or renamed.
    pub fn decode(line: &str) -> Result<Self, ProtocolError> {
        decode(line)
    }

    /// What the message is, for errors ("expected ready, got a report").
    pub fn kind(&self) -> &'static str {
        match self {
            FromWorker::Ready {} => "ready",
            FromWorker::Report(_) => "a report",
        }
    }
}

fn encode<T: Serialize>(message: &T) -> String {
    // Enums of plain fields, numbers and strings: serializing into a String cannot fail.
    serde_json::to_string(message).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, ProtocolError> {
    serde_json::from_str(line.trim_end()).map_err(|error| ProtocolError(redact(&error.to_string())))
}

/// serde_json's message without the values it quotes (`invalid type: string "..."`): field and
/// variant names, which it quotes with backticks, stay.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;
    use serde_json::{Value, json};

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(subcommand)]
        worker: Worker,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Worker {
        DemoWorker(Launch),
    }

    fn parse(args: &[String]) -> Launch {
        let Worker::DemoWorker(launch) =
            Command::try_parse_from(std::iter::once("authstore".to_owned()).chain(args.to_vec()))
                .expect("the arguments parse")
                .worker;
        launch
    }

    fn report() -> WorkerReport {
        let mut latency = Histogram::default();
        latency.record(Duration::from_micros(42));
        WorkerReport {
            pid: 7,
            served: 12,
            failed: 3,
            permanent_failures: 2,
            reused: 1,
            forced_relogins: 2,
            transient_failures: 1,
            other_errors: 0,
            first_error: Some("re-login required (Reused)".into()),
            refreshed: 4,
            adopted: 5,
            fresh_at_end: true,
            go_at_unix_ns: 1_000,
            done_at_unix_ns: 2_000,
            latency,
        }
    }

    fn report_value() -> Value {
        serde_json::from_str(&FromWorker::Report(report()).encode()).unwrap()
    }

    #[test]
    fn the_launch_arguments_parse_back_into_themselves() {
        let defaults = Launch::new(Strategy::Reread, Mode::Once);
        assert_eq!(
            parse(&[
                "demo-worker".into(),
                "--strategy=reread".into(),
                "--mode=once".into()
            ]),
            defaults,
            "Launch::new states the command-line defaults"
        );
        assert_eq!(parse(&defaults.to_args()), defaults);
        let launch = Launch {
            duration: 2.75,
            count: 9,
            refresh_window_ms: 300_000,
            pause_min_us: 3,
            pause_max_us: 4,
            no_watch: true,
            login_url: Some("http://127.0.0.1:9/sim/login".into()),
            ..Launch::new(Strategy::Coordinated, Mode::Force)
        };
        assert_eq!(parse(&launch.to_args()), launch);
    }

    #[test]
    fn messages_are_one_tagged_json_line_each_and_read_back() {
        assert_eq!(ToWorker::Go {}.encode(), r#"{"message":"go"}"#);
        assert_eq!(FromWorker::Ready {}.encode(), r#"{"message":"ready"}"#);
        assert_eq!(
            ToWorker::decode("{\"message\":\"go\"}\n"),
            Ok(ToWorker::Go {})
        );
        let line = FromWorker::Report(report()).encode();
        assert!(!line.contains('\n'));
        assert_eq!(FromWorker::decode(&line), Ok(FromWorker::Report(report())));
        assert_eq!(
            FromWorker::decode(&FromWorker::Ready {}.encode()),
            Ok(FromWorker::Ready {})
        );
    }

    #[test]
    fn a_missing_or_renamed_field_is_an_error_not_a_zero() {
        for field in [
            "served",
            "forced_relogins",
            "fresh_at_end",
            "latency",
            "first_error",
        ] {
            let mut value = report_value();
            let taken = value.as_object_mut().unwrap().remove(field).unwrap();
            let missing = FromWorker::decode(&value.to_string())
                .unwrap_err()
                .to_string();
            assert!(
                missing.contains(&format!("missing field `{field}`")),
                "{missing}"
            );

            value[format!("{field}_renamed")] = taken;
            let renamed = FromWorker::decode(&value.to_string())
                .unwrap_err()
                .to_string();
            assert!(renamed.contains(&format!("`{field}_renamed`")), "{renamed}");
        }
    }

    #[test]
    fn unknown_fields_and_messages_and_other_lines_are_errors() {
        let mut value = report_value();
        value["tokens_spent"] = json!(1);
        assert!(FromWorker::decode(&value.to_string()).is_err());
        assert!(FromWorker::decode(r#"{"message":"ready","extra":1}"#).is_err());
        assert!(FromWorker::decode(r#"{"message":"go"}"#).is_err());
        assert!(ToWorker::decode(r#"{"message":"ready"}"#).is_err());
        for line in ["ready", "go", "", "{}", "null"] {
            assert!(FromWorker::decode(line).is_err(), "{line:?}");
            assert!(ToWorker::decode(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn errors_do_not_repeat_the_values_they_read() {
        let mut value = report_value();
        value["served"] = json!("eyJhbGciOiJub25lIn0.secret.x");
        let error = FromWorker::decode(&value.to_string())
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid type"), "{error}");
        assert!(!error.contains("eyJ"), "the value was repeated");
        assert!(!error.contains("secret"), "the value was repeated");
    }
}
