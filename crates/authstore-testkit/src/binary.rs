//! Running the real binary against the embedded token authority.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use authstore_simulator::{Identity, Simulator, SimulatorConfig};
use serde_json::{Value, json};
use tokio::process::Command;

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

pub struct Env {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
}

impl Env {
    pub async fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            sim: Simulator::start(SimulatorConfig::default()).await.unwrap(),
        }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn auth_path(&self) -> PathBuf {
        self.home().join("auth.json")
    }

    /// Writes a login for `identity` whose access token is already stale (60 s left, the
    /// refresh window being 5 minutes); tokens issued afterwards live an hour. Unknown fields are
    /// added to prove they survive. Returns the document.
    pub fn login_stale(&self, identity: &Identity) -> Value {
        self.sim.set_access_token_lifetime(Duration::from_secs(60));
        let mut document = self.sim.auth_json(identity);
        self.sim
            .set_access_token_lifetime(Duration::from_secs(3600));
        document["x_custom"] = json!({"kept": true});
        document["tokens"]["x_token_extra"] = json!("kept");
        crate::write_auth(self.home(), &document);
        #[cfg(unix)]
        std::fs::set_permissions(
            self.auth_path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        document
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command
            .arg("--codex-home")
            .arg(self.home())
            .args(["--lock-timeout", "20", "--request-timeout", "5"])
            .args(args)
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", self.sim.token_url())
            .env_remove("CODEX_HOME")
            .env_remove("AUTHSTORE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        run_bounded(self.command(args)).await
    }

    pub fn disk(&self) -> Value {
        crate::read_auth(self.home()).expect("auth.json exists and parses")
    }
}

/// Runs `command` (an [`Env::command`]) to completion within [`BOUND`].
pub async fn run_bounded(command: Command) -> Output {
    crate::process::output_bounded(command).await
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
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
