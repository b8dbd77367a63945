//! A throwaway PostgreSQL cluster: `initdb` and `pg_ctl` in a temporary directory, on a free
//! loopback port, trust authentication, TLS available with a test CA. Nothing listens beyond
//! 127.0.0.1.
//!
//! As root (here and in CI) the server runs as the `postgres` user (or `nobody` when there is
//! none), since `initdb` refuses root. Each cluster has a watchdog process that waits for its
//! standard input to close, then stops the server (`pg_ctl stop -m immediate`) and removes the
//! directory: dropping a [`Cluster`] closes it, and so does the test process ending in any way,
//! which is how the [`Cluster::shared`] one (never dropped) is cleaned up.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use crate::process::{run_bounded, wait_bounded};

/// Who runs the server: `None` when the tests do not run as root.
#[derive(Debug, Clone)]
struct ServerUser {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    user: Option<ServerUser>,
    /// Closing its stdin stops the server and removes `dir`.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// One cluster for the whole test binary, started on first use; tests isolate themselves
    /// with [`Cluster::create_database`].
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(Cluster::start)
    }

    /// A cluster of its own, for tests that stop or restart the server.
    pub fn start() -> Cluster {
        let bindir = bindir();
        let user = server_user();
        let dir = tempfile::Builder::new()
            .prefix("authstore-pg-")
            .tempdir()
            .expect("temporary directory")
            .keep();
        let mut cluster = Cluster {
            watchdog: Mutex::new(None),
            dir,
            bindir,
            port: 0,
            user,
        };
        cluster.start_watchdog();
        std::fs::create_dir(cluster.socket_dir()).unwrap();
        cluster.make_certificates();
        cluster.give_to_server_user(&cluster.dir.clone());
        cluster.as_server(
            "initdb",
            &[
                "-D",
                cluster.data_dir().to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let config = format!(
            "listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 100\n\
             ssl = on\n\
             ssl_cert_file = '{}'\n\
             ssl_key_file = '{}'\n\
             log_min_messages = warning\n",
            cluster.socket_dir().display(),
            cluster.dir.join("server.pem").display(),
            cluster.dir.join("server.key").display(),
        );
        let conf = cluster.data_dir().join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .unwrap();
        file.write_all(config.as_bytes()).unwrap();
        // A free port can be taken by someone else before the server binds it: try a few.
        for attempt in 1..=5 {
            cluster.port = free_port();
            if cluster.try_pg_ctl_start() {
                return cluster;
            }
            eprintln!(
                "postgres did not start on port {} (attempt {attempt}); log:\n{}",
                cluster.port,
                cluster.log_tail()
            );
        }
        panic!("could not start a test PostgreSQL cluster");
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test CA's certificate (PEM), which signed the server's certificate.
    pub fn ca_certificate(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Creates a fresh database named after `tag` and returns its name.
    pub fn create_database(&self, tag: &str) -> String {
        let name = format!(
            "t_{tag}_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        name
    }

    /// Runs `sql` in `database` with psql; returns its unaligned, tuples-only output, trimmed.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut command = Command::new(self.bindir.join("psql"));
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-c", sql]);
        // Nothing from the environment (PGPASSWORD, PGSSLMODE, ...) changes what psql does.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                command.env_remove(name);
            }
        }
        command
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGSSLMODE", "disable");
        let output = run_bounded(command);
        assert!(
            output.status.success(),
            "psql failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Stops the server (fast: sessions are ended, their transactions rolled back).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }

    /// Starts the server again after [`Cluster::stop`], on the same port.
    pub fn start_again(&self) {
        assert!(
            self.try_pg_ctl_start(),
            "restart failed:\n{}",
            self.log_tail()
        );
    }

    /// `pg_ctl restart -m fast`: sessions are ended, committed data stays.
    pub fn restart(&self) {
        let log = self.dir.join("server.log");
        self.pg_ctl(&["restart", "-m", "fast", "-l", log.to_str().unwrap()]);
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    fn try_pg_ctl_start(&self) -> bool {
        let log = self.dir.join("server.log");
        let options = format!("-p {}", self.port);
        let output = self.server_command(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        output.status.success()
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data_dir();
        let mut all = vec!["-D", data.to_str().unwrap(), "-w", "-t", "30"];
        all.extend_from_slice(args);
        let output = self.server_command("pg_ctl", &all);
        assert!(
            output.status.success(),
            "pg_ctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
    }

    fn as_server(&self, program: &str, args: &[&str]) {
        let output = self.server_command(program, args);
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs a server program, as the server user when running as root. Its output is read from
    /// files, not pipes: the server it starts would hold a pipe open.
    fn server_command(&self, program: &str, args: &[&str]) -> std::process::Output {
        let program = self.bindir.join(program);
        let mut command = match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", &user.name, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let out = self.dir.join("command.out");
        let stdout = std::fs::File::create(&out).unwrap();
        let stderr = stdout.try_clone().unwrap();
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut child = command.spawn().expect("server program starts");
        let status = wait_bounded(&mut child, crate::process::BOUND);
        let printed = std::fs::read(&out).unwrap_or_default();
        std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: printed,
        }
    }

    /// A CA and a server certificate for 127.0.0.1 signed by it (EC P-256, two days).
    fn make_certificates(&self) {
        let dir = &self.dir;
        let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                &path("ca.key"),
                "-out",
                &path("ca.pem"),
                "-days",
                "2",
            ],
            &["-subj", "/CN=authstore test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]);
        openssl(&[
            &["req"][..],
            &ec,
            &["-keyout", &path("server.key"), "-out", &path("server.csr")],
            &["-subj", "/CN=127.0.0.1"],
        ]);
        openssl(&[&[
            "x509",
            "-req",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-out",
            &path("server.pem"),
            "-days",
            "2",
            "-extfile",
            &path("server.ext"),
        ][..]]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }

    fn give_to_server_user(&self, path: &Path) {
        let Some(user) = &self.user else { return };
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                self.give_to_server_user(&entry.unwrap().path());
            }
        }
    }

    fn start_watchdog(&self) {
        let pg_ctl = self.bindir.join("pg_ctl");
        let runuser = match &self.user {
            Some(user) => format!("runuser -u {} -- ", user.name),
            None => String::new(),
        };
        let script = format!(
            "cat >/dev/null; \
             {runuser}'{pg_ctl}' -D '{data}' -m immediate -w -t 10 stop >/dev/null 2>&1; \
             rm -rf '{dir}'",
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
            dir = self.dir.display(),
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog starts");
        let stdin = child.stdin.take().unwrap();
        *self.watchdog.lock().unwrap() = Some((child, stdin));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let watchdog = self
            .watchdog
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((mut child, stdin)) = watchdog {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The directory of the server programs: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn bindir() -> PathBuf {
    if let Some(bin) = find_bindir() {
        return bin;
    }
    if install_server()
        && let Some(bin) = find_bindir()
    {
        return bin;
    }
    panic!(
        "PostgreSQL server programs not found (initdb); install them: apt-get install postgresql"
    )
}

fn find_bindir() -> Option<PathBuf> {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").is_file() {
            return Some(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin)
}

/// The script that installs the server package: `.ci/run` runs it before the tests, so that CI
/// never installs from a test.
const INSTALL_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/install-postgres.sh"
);

/// A newcomer's first `cargo test` on a fresh machine: as root with apt (as on this project's
/// machines), runs the same install script `.ci/run` runs, once, so that the README's test
/// command needs nothing installed by hand. Test binaries run at the same time take turns
/// through `flock(1)` (in the script). Returns whether it ran.
fn install_server() -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root || !Path::new("/usr/bin/apt-get").exists() || !Path::new(INSTALL_SCRIPT).is_file() {
        return false;
    }
    eprintln!("PostgreSQL server programs not found: running {INSTALL_SCRIPT}");
    let status = Command::new("timeout")
        .args(["900", "bash", INSTALL_SCRIPT])
        .status();
    status.is_ok_and(|s| s.success())
}

/// As root, the server runs as `postgres` (or `nobody`); otherwise as the current user.
fn server_user() -> Option<ServerUser> {
    let euid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    if euid != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let id = |flag: &str| -> Option<u32> {
            let output = Command::new("id").args([flag, name]).output().ok()?;
            if !output.status.success() {
                return None;
            }
            String::from_utf8_lossy(&output.stdout).trim().parse().ok()
        };
        if let (Some(uid), Some(gid)) = (id("-u"), id("-g")) {
            return Some(ServerUser {
                name: name.to_owned(),
                uid,
                gid,
            });
        }
    }
    panic!("running as root, and there is neither a postgres nor a nobody user to run the server");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn openssl(args: &[&[&str]]) {
    let mut command = Command::new("openssl");
    for part in args {
        command.args(*part);
    }
    let output = run_bounded(command);
    assert!(
        output.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
