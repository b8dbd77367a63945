//! Sandboxes: access-only Codex homes that a host home feeds (SPEC §9), for containers, VMs and
//! per-task sandboxes that share one login without ever holding its refresh token.
//!
//! # Protocol
//!
//! * A sandbox is a directory (0700) whose `auth.json` (0600) is the host's login with one
//!   change: its `refresh_token` is the sandbox's own secret, [`SECRET_PREFIX`] followed by 256
//!   random bits (base64url). Codex accepts it as a ChatGPT login; when Codex inside refreshes,
//!   it presents the secret to the broker, which answers with the host's current access and id
//!   tokens and the same secret. The host's refresh token never enters the directory.
//! * The host home's registry, `authstore-sandboxes.json` (0600), lists each sandbox's name, its
//!   directory, the SHA-256 of its secret, the SHA-256 of the account and user it was made for,
//!   and when. Never a secret: whoever can read the registry learns no way in. A sandbox that was
//!   logged out (its `auth.json` removed, because the host logged out or another account or user
//!   logged in) keeps its entry with no secret until it is added again or removed. A removed
//!   sandbox has no entry: its secret is refused from then on.
//! * Writers of the registry serialise on `authstore-sandboxes.lock` (taken after `auth.lock`
//!   when both are held, never the other way round); it is replaced durably and atomically, so
//!   readers take no lock. A sandbox's `auth.json` is written like any Codex home's: under that
//!   directory's own `auth.lock` and `auth.json.lock`, which Codex inside takes too, durably and
//!   atomically (a temporary file in the directory, then a rename; never across a bind mount).
//! * Only the sandbox's own identity is ever written into it: [`Registry::keep_fresh`] logs a
//!   sandbox out instead when the host now holds another account's or user's login.
//!
//! # Errors
//!
//! A registry that cannot be parsed is an [`ErrorKind::InvalidFile`](crate::ErrorKind) naming
//! its path, never silently replaced: it lists the sandboxes whose directories hold secrets.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::document::{AuthDocument, format_timestamp};
use crate::error::{Error, Result};
use crate::rotations::{identity_digest, token_digest};
use crate::secret::Secret;
use crate::store::file::{FileStore, StoreOptions, Visibility, lock, write_file_durably};

/// The registry, in the host's Codex home.
pub const REGISTRY_FILE: &str = "authstore-sandboxes.json";
/// The lock its writers take, beside it.
pub const REGISTRY_LOCK_FILE: &str = "authstore-sandboxes.lock";
/// What every sandbox secret starts with, so that a reader knows what it is looking at.
pub const SECRET_PREFIX: &str = "authstore-sandbox-";
/// Where sandboxes go when no directory is given: `<home>/sandboxes/<name>`.
pub const DEFAULT_PARENT: &str = "sandboxes";
/// The most sandboxes one home feeds.
pub const MAX_SANDBOXES: usize = 256;
/// The longest name.
pub const MAX_NAME_LEN: usize = 64;
/// Random bytes in a secret: 256 bits.
const SECRET_BYTES: usize = 32;
/// How long a writer waits for another writer of the registry, or for a sandbox's `auth.lock`.
const LOCK_DEADLINE: Duration = Duration::from_secs(10);

/// One registered sandbox, as the registry holds it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// Its name, unique in the host home.
    pub name: String,
    /// Its directory (absolute), the `CODEX_HOME` of the Codex processes in it.
    pub dir: PathBuf,
    /// SHA-256 of its secret, hex; `None` once it was logged out.
    secret: Option<String>,
    /// SHA-256 of the account and user it was made for.
    identity: Option<String>,
    /// When it was added, milliseconds since the Unix epoch.
    pub created_at: u64,
}

impl Sandbox {
    /// Whether it holds a login (it was not logged out since it was added).
    pub fn is_logged_in(&self) -> bool {
        self.secret.is_some()
    }

    /// Its `auth.json`.
    pub fn auth_path(&self) -> PathBuf {
        self.dir.join(crate::store::file::AUTH_FILE)
    }

    fn holds(&self, secret_digest: &str) -> bool {
        self.secret.as_deref() == Some(secret_digest)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    version: u32,
    sandboxes: Vec<Sandbox>,
}

/// What [`Registry::keep_fresh`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FreshnessReport {
    /// Sandboxes whose `auth.json` now holds the host's current tokens (written this time).
    pub written: Vec<String>,
    /// Sandboxes that already held them.
    pub current: Vec<String>,
    /// Sandboxes logged out: the host holds another identity's login, or none.
    pub logged_out: Vec<String>,
    /// Sandboxes left alone: their `auth.json` is gone (Codex logged out inside) or holds
    /// another refresh token than their secret; or it could not be written (with why).
    pub skipped: Vec<(String, String)>,
}

/// The sandbox registry of one host Codex home.
#[derive(Debug, Clone)]
pub struct Registry {
    home: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
}

impl Registry {
    /// The registry of the Codex home `home`.
    pub fn in_home(home: &Path) -> Self {
        Self {
            home: home.to_path_buf(),
            path: home.join(REGISTRY_FILE),
            lock_path: home.join(REGISTRY_LOCK_FILE),
        }
    }

    /// The registry's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every registered sandbox, in the order they were added; none when there is no registry.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidFile`](crate::ErrorKind::InvalidFile) when the registry cannot be
    /// parsed; [`ErrorKind::Io`](crate::ErrorKind::Io) when it cannot be read.
    pub fn list(&self) -> Result<Vec<Sandbox>> {
        Ok(self.read()?.sandboxes)
    }

    /// The logged-in sandbox whose secret `presented` is, if any. A registry that cannot be
    /// read knows none.
    pub fn find(&self, presented: &Secret) -> Option<Sandbox> {
        if !is_sandbox_secret(presented) {
            return None;
        }
        let digest = token_digest(presented);
        match self.read() {
            Ok(contents) => contents.sandboxes.into_iter().find(|s| s.holds(&digest)),
            Err(error) => {
                tracing::warn!(error = %error.report(), "cannot read the sandbox registry");
                None
            }
        }
    }

    /// Whether `sandbox` was made for the login `host` holds: the same account and user.
    pub fn is_for(sandbox: &Sandbox, host: &AuthDocument) -> bool {
        sandbox.identity.is_some() && sandbox.identity == identity_digest(&host.identity())
    }

    /// Adds the sandbox `name` (or logs a logged-out one in again) for the login `host` holds:
    /// creates its directory (`dir`, else `<home>/sandboxes/<name>`; 0700), registers it, and
    /// writes its `auth.json`. Returns it and its secret, which is nowhere else but in that file.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a bad name, a name that
    /// is taken, a directory that is the host home or already holds another Codex login, a host
    /// with no ChatGPT login; [`ErrorKind::Io`](crate::ErrorKind::Io) naming the path that could
    /// not be made or written. On an error nothing is registered.
    pub async fn add(
        &self,
        name: &str,
        dir: Option<&Path>,
        host: &AuthDocument,
        now: SystemTime,
    ) -> Result<(Sandbox, Secret)> {
        validate_name(name)?;
        let identity = identity_digest(&host.identity()).filter(|_| host.refresh_token().is_some());
        let Some(identity) = identity else {
            return Err(Error::invalid_input(
                "the host holds no ChatGPT login with an account or user id: log in first",
            ));
        };
        let _lock = lock::acquire_transaction_lock(&self.lock_path, LOCK_DEADLINE).await?;
        let mut contents = self.read()?;
        let existing = contents.sandboxes.iter().position(|s| s.name == name);
        let dir = match (existing.map(|i| &contents.sandboxes[i]), dir) {
            (Some(sandbox), _) if sandbox.is_logged_in() => {
                return Err(Error::invalid_input(format!(
                    "a sandbox named {name} exists ({}); `authstore sandbox remove {name}` first",
                    sandbox.dir.display()
                )));
            }
            (Some(sandbox), None) => sandbox.dir.clone(),
            (Some(sandbox), Some(asked)) if absolute(asked)? != sandbox.dir => {
                return Err(Error::invalid_input(format!(
                    "the sandbox {name} is in {}; remove it first to move it to {}",
                    sandbox.dir.display(),
                    asked.display()
                )));
            }
            (_, Some(asked)) => absolute(asked)?,
            (None, None) => self.home.join(DEFAULT_PARENT).join(name),
        };
        if existing.is_none() {
            if contents.sandboxes.len() >= MAX_SANDBOXES {
                return Err(Error::invalid_input(format!(
                    "{} already lists {MAX_SANDBOXES} sandboxes; remove one first",
                    self.path.display()
                )));
            }
            if let Some(other) = contents.sandboxes.iter().find(|s| s.dir == dir) {
                return Err(Error::invalid_input(format!(
                    "{} is already the sandbox {}",
                    dir.display(),
                    other.name
                )));
            }
        }
        // Checked before anything is made or changed: the directory may be someone's.
        if same_dir(&dir, &self.home) {
            return Err(Error::invalid_input(format!(
                "{} is the host's own Codex home; give a sandbox a directory of its own",
                dir.display()
            )));
        }
        let sandbox_store = sandbox_store(&dir);
        if dir.is_dir() {
            let held = sandbox_store.read().await?;
            if held.is_some_and(|held| held.refresh_token().is_none_or(|t| !is_sandbox_secret(t))) {
                return Err(Error::invalid_input(format!(
                    "{} holds a Codex login of its own; choose another directory",
                    sandbox_store.auth_path().display()
                )));
            }
        }
        make_private_dir(&dir)?;
        let secret = new_secret()?;
        let sandbox = Sandbox {
            name: name.to_owned(),
            dir,
            secret: Some(token_digest(&secret)),
            identity: Some(identity),
            created_at: millis(now),
        };
        // The file first: a registry entry whose file could not be written would be a sandbox
        // that was never usable.
        write_login(&sandbox_store, host, &secret, now).await?;
        match existing {
            Some(i) => contents.sandboxes[i] = sandbox.clone(),
            None => contents.sandboxes.push(sandbox.clone()),
        }
        if let Err(error) = self.write(&contents) {
            let _ = remove_login(&sandbox_store).await;
            return Err(error);
        }
        Ok((sandbox, secret))
    }

    /// Removes the sandbox `name` from the registry: from then on its secret is refused (the
    /// broker answers `invalid_grant`, and Codex inside says to log in again at its next
    /// refresh). Its directory and `auth.json` are left as they are: Codex compares the file with
    /// what it holds before it refreshes, and a file that vanished or changed under it would be
    /// taken instead of asking, so the running Codex would never hear of the removal. The file
    /// holds no refresh token of the host's, only an access token the sandbox already had, which
    /// nothing can take back before it expires. Returns it, or `None` when there is no such
    /// sandbox.
    ///
    /// # Errors
    /// As [`Registry::list`]; [`ErrorKind::Io`](crate::ErrorKind::Io) when the registry cannot
    /// be written.
    pub async fn remove(&self, name: &str) -> Result<Option<Sandbox>> {
        self.remove_where(|s| s.name == name).await
    }

    /// Removes the sandbox whose secret `presented` is (Codex's logout inside it revokes it, and
    /// removes its own `auth.json`): what [`Registry::remove`] does. Returns it, or `None` when no sandbox holds that secret.
    ///
    /// # Errors
    /// As [`Registry::remove`].
    pub async fn revoke(&self, presented: &Secret) -> Result<Option<Sandbox>> {
        if !is_sandbox_secret(presented) {
            return Ok(None);
        }
        let digest = token_digest(presented);
        self.remove_where(|s| s.holds(&digest)).await
    }

    async fn remove_where(&self, which: impl Fn(&Sandbox) -> bool) -> Result<Option<Sandbox>> {
        let _lock = lock::acquire_transaction_lock(&self.lock_path, LOCK_DEADLINE).await?;
        let mut contents = self.read()?;
        let Some(index) = contents.sandboxes.iter().position(which) else {
            return Ok(None);
        };
        let sandbox = contents.sandboxes.remove(index);
        self.write(&contents)?;
        Ok(Some(sandbox))
    }

    /// Brings every logged-in sandbox in line with the login `host` holds (`None`: logged out):
    /// a sandbox of the same account and user gets the host's current access and id tokens (its
    /// secret kept, `last_refresh` now) unless it holds them already; any other sandbox is logged
    /// out (its `auth.json` removed, its entry kept without a secret). A sandbox whose `auth.json`
    /// is gone or holds another refresh token than its secret is left alone.
    ///
    /// # Errors
    /// As [`Registry::list`], and when the registry cannot be written; a sandbox that cannot be
    /// written is reported in [`FreshnessReport::skipped`] and the others are still served.
    pub async fn keep_fresh(
        &self,
        host: Option<&AuthDocument>,
        now: SystemTime,
    ) -> Result<FreshnessReport> {
        let mut report = FreshnessReport::default();
        if !self.path.exists() {
            return Ok(report);
        }
        let _lock = lock::acquire_transaction_lock(&self.lock_path, LOCK_DEADLINE).await?;
        let mut contents = self.read()?;
        let mut changed = false;
        for sandbox in contents.sandboxes.iter_mut().filter(|s| s.is_logged_in()) {
            let store = sandbox_store(&sandbox.dir);
            let host = host.filter(|host| Self::is_for(sandbox, host));
            let Some(host) = host else {
                match remove_login(&store).await {
                    Ok(_) => {
                        sandbox.secret = None;
                        changed = true;
                        report.logged_out.push(sandbox.name.clone());
                    }
                    Err(error) => report
                        .skipped
                        .push((sandbox.name.clone(), error.to_string())),
                }
                continue;
            };
            match refresh_one(sandbox, &store, host, now).await {
                Ok(true) => report.written.push(sandbox.name.clone()),
                Ok(false) => report.current.push(sandbox.name.clone()),
                Err(why) => report.skipped.push((sandbox.name.clone(), why)),
            }
        }
        if changed {
            self.write(&contents)?;
        }
        Ok(report)
    }

    fn read(&self) -> Result<Contents> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::invalid_file(
                    self.path.as_path(),
                    format!(
                        "not a sandbox registry ({e}); move it away to start a new one (the \
                         sandboxes it lists keep their files)"
                    ),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Contents::default()),
            Err(error) => Err(Error::io("read", &self.path, error)),
        }
    }

    fn write(&self, contents: &Contents) -> Result<()> {
        let contents = Contents {
            version: 1,
            sandboxes: contents.sandboxes.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&contents).map_err(|e| {
            Error::invalid_input(format!("cannot encode the sandbox registry: {e}"))
        })?;
        write_file_durably(&self.path, &bytes, Visibility::Private)
    }
}

/// Whether `token` is a sandbox secret (by its prefix).
pub fn is_sandbox_secret(token: &Secret) -> bool {
    token.expose().starts_with(SECRET_PREFIX)
}

/// The login a sandbox holds: `host`'s, with `secret` in place of the refresh token and
/// `last_refresh` at `now`.
pub fn sandbox_login(host: &AuthDocument, secret: &Secret, now: SystemTime) -> AuthDocument {
    let mut login = host.clone();
    if let Some(tokens) = login.tokens.as_mut() {
        tokens.refresh_token = secret.clone();
    }
    login.last_refresh = Some(format_timestamp(now));
    login
}

/// Writes `sandbox`'s `auth.json` from `host` when it does not hold `host`'s access token yet;
/// returns whether it wrote. The secret is the one the file holds, checked against the registry.
async fn refresh_one(
    sandbox: &Sandbox,
    store: &FileStore,
    host: &AuthDocument,
    now: SystemTime,
) -> std::result::Result<bool, String> {
    let mut transaction = store.begin().await.map_err(|e| e.to_string())?;
    let held = transaction.read().await.map_err(|e| e.to_string())?;
    let Some(held) = held else {
        return Err("no auth.json: Codex logged out inside".to_owned());
    };
    let Some(secret) = held
        .refresh_token()
        .filter(|t| sandbox.holds(&token_digest(t)))
    else {
        return Err("its auth.json holds another refresh token than its secret".to_owned());
    };
    if held.access_token() == host.access_token()
        && held.tokens.as_ref().map(|t| &t.id_token) == host.tokens.as_ref().map(|t| &t.id_token)
    {
        return Ok(false);
    }
    let secret = secret.clone();
    transaction
        .write(&sandbox_login(host, &secret, now))
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

async fn write_login(
    store: &FileStore,
    host: &AuthDocument,
    secret: &Secret,
    now: SystemTime,
) -> Result<()> {
    let mut transaction = store.begin().await?;
    transaction.write(&sandbox_login(host, secret, now)).await
}

async fn remove_login(store: &FileStore) -> Result<bool> {
    if !store.home().is_dir() {
        return Ok(false);
    }
    let mut transaction = store.begin().await?;
    transaction.remove().await
}

fn sandbox_store(dir: &Path) -> FileStore {
    FileStore::new(dir, StoreOptions::default().lock_deadline(LOCK_DEADLINE))
}

fn new_secret() -> Result<Secret> {
    let mut bytes = [0u8; SECRET_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::invalid_input("the system's random number generator failed"))?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(Secret::new(format!("{SECRET_PREFIX}{encoded}")))
}

/// Checks a sandbox name: what a user types and a path segment, 1 to 64 of `A-Z a-z 0-9 . _ -`,
/// not starting with `.` or `-`.
///
/// # Errors
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) saying what a name may be.
pub fn validate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "{name:?} is not a sandbox name: 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-', \
             not starting with '.' or '-'"
        )))
    }
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    std::path::absolute(dir).map_err(|e| Error::io("resolve", dir, e))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Creates `dir` (and its parents) and makes it 0700 on Unix: a sandbox's directory holds a
/// login.
fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create the directory", dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("make the directory private (0700)", dir, e))?;
    }
    Ok(())
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}
