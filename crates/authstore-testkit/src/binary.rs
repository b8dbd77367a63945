//! Running the real binary against the embedded token authority: [`Env`], a [`Home`] beside a
//! running [`Simulator`], with the binary's command line and its environment.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime};

use authstore_simulator::{Identity, Simulator, SimulatorConfig};
use serde_json::Value;
use tokio::process::Command;

use crate::home::Home;

/// Whether the binary under test is this build's (not `AUTHSTORE_TEST_BINARY`'s): only then
/// does it have this build's features (the failpoints, say).
pub fn bin_is_this_build() -> bool {
    std::env::var_os("AUTHSTORE_TEST_BINARY").is_none_or(|path| path.is_empty())
}

/// The binary under test: this build's, or the one `AUTHSTORE_TEST_BINARY` names (CI points it
/// at the static musl build, so that the multi-process tests exercise that binary too).
///
/// This build's is the `authstore` beside the directory of the running test executable
/// (`target/PROFILE/deps/it-HASH` → `target/PROFILE/authstore`): Cargo builds a package's
/// binaries before its integration tests and benchmarks, and only their own package sees
/// `CARGO_BIN_EXE_authstore`, which this crate is not.
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var("AUTHSTORE_TEST_BINARY") {
        Ok(path) if !path.is_empty() => {
            assert!(
                std::path::Path::new(&path).is_file(),
                "AUTHSTORE_TEST_BINARY={path} is not a file"
            );
            path
        }
        _ => {
            let exe = std::env::current_exe().expect("the test executable's path");
            let dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("the test executable is in target/PROFILE/deps");
            let path = dir.join(format!("authstore{}", std::env::consts::EXE_SUFFIX));
            assert!(
                path.is_file(),
                "{} is not a file: run the tests with cargo test, which builds the binary first, \
                 or name one with AUTHSTORE_TEST_BINARY",
                path.display()
            );
            path.to_string_lossy().into_owned()
        }
    })
}
pub use crate::process::BOUND;

/// A temporary Codex home beside a running [`Simulator`], and the `authstore` binary run in it.
/// The specialised fixtures of the test targets build on it: the Codex interop suite's `Lab`
/// holds one, the PostgreSQL machines hold one for the authority and a [`Home`] per machine.
pub struct Env {
    home: Home,
    pub sim: Simulator,
    request_timeout: u64,
}

impl Env {
    /// A home of its own ([`Home::new`]) beside a new simulator.
    pub async fn new() -> Self {
        Self::in_home(Home::new()).await
    }

    /// `home` beside a new simulator.
    pub async fn in_home(home: Home) -> Self {
        Self {
            home,
            sim: Simulator::start(SimulatorConfig::default()).await.unwrap(),
            request_timeout: 5,
        }
    }

    /// The `--request-timeout` of every command, in seconds (5 unless set).
    pub fn with_request_timeout(mut self, seconds: u64) -> Self {
        self.request_timeout = seconds;
        self
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The temporary directory of the home (see [`Home::dir`]).
    pub fn dir(&self) -> &Path {
        self.home.dir()
    }

    pub fn auth_path(&self) -> PathBuf {
        self.home.auth_path()
    }

    /// A new login for `identity` (a new token family) whose access token lives `lifetime`, as
    /// a document; tokens the authority issues afterwards live an hour. Writes nothing.
    pub fn new_login(&self, identity: &Identity, lifetime: Duration) -> Value {
        self.sim.set_access_token_lifetime(lifetime);
        let document = self.sim.auth_json(identity);
        self.sim
            .set_access_token_lifetime(Duration::from_secs(3600));
        document
    }

    /// Writes a login for `identity` whose access token is already stale (60 s left, the
    /// refresh window being 5 minutes); tokens issued afterwards live an hour. Unknown fields are
    /// added to prove they survive. Returns the document.
    pub fn login_stale(&self, identity: &Identity) -> Value {
        let document =
            crate::with_unknown_fields(self.new_login(identity, Duration::from_secs(60)));
        self.home.write_auth(&document);
        #[cfg(unix)]
        std::fs::set_permissions(
            self.auth_path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        document
    }

    /// Writes `document` to `login.json` in the home's temporary directory, for
    /// `login --from`; returns its path.
    pub fn login_file(&self, document: &Value) -> PathBuf {
        let file = self.dir().join("login.json");
        std::fs::write(&file, serde_json::to_vec_pretty(document).unwrap()).unwrap();
        file
    }

    /// The binary with `args`, on this home, against this authority.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(self.home(), args)
    }

    /// The binary with `args`, on the Codex home `home`, against this authority: its
    /// environment without `CODEX_HOME` and `AUTHSTORE_LOG`, [`captured`].
    pub fn command_in(&self, home: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command
            .arg("--codex-home")
            .arg(home)
            .args(["--lock-timeout", "20", "--request-timeout"])
            .arg(self.request_timeout.to_string())
            .args(args)
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", self.sim.token_url())
            .env_remove("CODEX_HOME")
            .env_remove("AUTHSTORE_LOG");
        captured(&mut command);
        command
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.command(args)).await
    }

    /// `auth.json`, which must exist and parse.
    pub fn disk(&self) -> Value {
        self.home.disk()
    }

    /// Whole seconds the access token in `auth.json` has left (negative when expired).
    pub fn seconds_left(&self) -> i64 {
        let access = crate::token(&self.disk(), "access_token");
        let exp = authstore::document::access_token_expiry(&access).expect("exp");
        crate::epoch_secs(exp) as i64 - crate::epoch_secs(SystemTime::now()) as i64
    }
}

/// `command` with stdin empty, stdout and stderr piped, and killed when dropped: how the
/// processes a test reads are started (the binary's, Codex's).
pub fn captured(command: &mut Command) -> &mut Command {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
}

/// Runs `command` (an [`Env::command`]) to completion within [`BOUND`].
pub async fn run_bounded(command: Command) -> Output {
    crate::process::output_bounded(command).await
}

/// stdout as text, trimmed.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// stderr as text, trimmed.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// The failure message shows the exit code and stderr, which never holds a token.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asserts that no refresh token reached the authority twice.
pub fn assert_no_token_presented_twice(sim: &Simulator) {
    let presented = sim.presented_refresh_tokens();
    let mut unique = presented.clone();
    unique.sort();
    unique.dedup();
    assert!(
        unique.len() == presented.len(),
        "{} of {} presented refresh tokens were presented before",
        presented.len() - unique.len(),
        presented.len()
    );
    assert_eq!(sim.reuse_rejections(), 0);
}
