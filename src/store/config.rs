//! Opening a store from one configuration: the Codex home, an optional shared store, the waits.
//!
//! Every front-end describes the same things (the command line with its global options, the
//! Python package with its `AuthManager` arguments, `authstore agent install` with the options
//! it writes into a service definition), so they are read here once: one grammar for a shared
//! store's URL ([`StoreUrl`]), one place that derives the shared store's idle timeout from the
//! token request timeout, one way to make the manager and the read-only store.
//!
//! ```no_run
//! # async fn demo() -> authstore::Result<()> {
//! use std::time::Duration;
//! use authstore::store::{StoreConfig, StoreUrl};
//!
//! let config = StoreConfig::new(authstore::store::resolve_codex_home(None)?)
//!     .lock_timeout(Duration::from_secs(30))
//!     .shared(Some(StoreUrl::parse("postgres://authstore@db.example.com/auth")?));
//! let manager = config.manager(Default::default()).await?;
//! # let _ = manager;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::authority::AuthorityConfig;
use crate::error::{Error, Result};
use crate::manager::{AuthManager, ManagerOptions};
use crate::store::credentials::{self, CredentialsChoice, CredentialsStore};
use crate::store::{FileStore, Store, StoreOptions};

/// How long a shared store's idle connection may hold its lock beyond the token request timeout:
/// longer than a refresh can take, so that only a hung holder is cut off.
const IDLE_BEYOND_REQUEST: Duration = Duration::from_secs(10);

/// The URL of a shared credential store: `postgres://...` or `postgresql://...` (libpq's URL
/// form). Checked when it is made, so that every front-end accepts the same URLs and refuses
/// the same ones, before anything is written or connected. `Debug` never shows it (it may hold
/// a password); [`StoreUrl::as_str`] does, for the connection and for a service definition.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(String);

impl StoreUrl {
    /// `url`, trimmed, if it is a store URL.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if url.chars().any(char::is_control) {
                return Err(Error::invalid_input(
                    "the store URL contains a control character (a line break?); give it on one line",
                ));
            }
            Ok(Self(url.to_owned()))
        } else {
            // Not echoed: a mistyped URL may still hold a password.
            Err(Error::invalid_input(
                "the store URL must start with postgres:// or postgresql://",
            ))
        }
    }

    /// The store URL in the file at `path`: its first line, trimmed (a file keeps a password
    /// out of command lines and service definitions). The file is opened once, and its mode is
    /// judged on that open handle: the file whose URL is used is the file whose permissions are
    /// reported, even if the path is replaced meanwhile. `exposed` is called, before the URL is
    /// judged, when other users may read the file (Unix: any group or other permission bit), for
    /// the caller to warn in its own way.
    pub fn read_file(path: &Path, exposed: impl FnOnce()) -> Result<Self> {
        use std::io::Read;
        let unreadable = |error: std::io::Error| {
            let what = match error.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_owned(),
                _ => format!("cannot be read ({error})"),
            };
            Error::invalid_input(format!(
                "the store file {} {what}; write the store URL into it (one line, mode 0600)",
                path.display()
            ))
        };
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(unreadable)?;
        #[cfg(unix)]
        if file.metadata().is_ok_and(|metadata| {
            use std::os::unix::fs::PermissionsExt;
            metadata.permissions().mode() & 0o077 != 0
        }) {
            exposed();
        }
        #[cfg(not(unix))]
        let _ = exposed;
        let line = text.lines().next().map(str::trim).unwrap_or_default();
        if line.is_empty() {
            return Err(Error::invalid_input(format!(
                "the store file {} is empty; write the store URL into it (one line)",
                path.display()
            )));
        }
        Self::parse(line).map_err(|error| {
            Error::invalid_input(format!("the store file {}: {error}", path.display()))
        })
    }

    /// The URL itself, password and all: for connecting, and for the files that keep it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the URL holds, or may hold, a password: a `user:password@`, or anything that
    /// could name a `password` parameter. Conservative: a URL that merely might is treated as
    /// secret too (kept out of service definitions).
    pub fn may_hold_password(&self) -> bool {
        may_hold_password(&self.0)
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreUrl(..)")
    }
}

/// [`StoreUrl::may_hold_password`], on any connection string (libpq's key=value form too).
pub(crate) fn may_hold_password(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.contains("pass") || lower.contains('%') {
        return true;
    }
    match url.split_once("://") {
        Some((_, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            authority
                .rsplit_once('@')
                .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        }
        // A key=value connection string without "password" in it.
        None => false,
    }
}

/// Where the credentials are and how long to wait for them: a Codex home, optionally a shared
/// store mirrored into it, the lock and request timeouts. Every setter states its default.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    home: PathBuf,
    shared: Option<StoreUrl>,
    key: String,
    lock_timeout: Duration,
    request_timeout: Duration,
    unlocked: bool,
    token_url: Option<String>,
    client_id: Option<String>,
    credentials: Option<(CredentialsStore, String)>,
}

impl StoreConfig {
    /// The file store of the Codex home `home`, with the default waits.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            shared: None,
            key: "default".to_owned(),
            lock_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(20),
            unlocked: false,
            token_url: None,
            client_id: None,
            credentials: None,
        }
    }

    /// The home's store whatever its `config.toml` says, and how the caller was told so (for
    /// messages: `--credentials-store`, an environment variable). Default `None`: as Codex
    /// chooses ([`credentials::choose`]). Ignored with a [`shared`](Self::shared) store, whose
    /// local copy is always `auth.json`.
    pub fn credentials_store(mut self, store: Option<(CredentialsStore, String)>) -> Self {
        self.credentials = store;
        self
    }

    /// The store the home's login is in, and why.
    ///
    /// # Errors
    /// A `config.toml` that cannot be read or parsed
    /// ([`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput), naming it).
    pub fn credentials(&self) -> Result<CredentialsChoice> {
        credentials::choose(&self.home, self.credentials.clone())
    }

    /// A shared store whose login the home mirrors (default: none).
    pub fn shared(mut self, url: Option<StoreUrl>) -> Self {
        self.shared = url;
        self
    }

    /// The credential's key in the shared store (default `default`).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// How long to wait for another process's transaction (default 60 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How long to wait for the token endpoint (default 20 s); a shared store's idle timeout
    /// is 10 s longer, so that only a hung lock holder is cut off.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Run without the file locks (default off; unsafe with concurrent processes).
    pub fn unlocked(mut self, unlocked: bool) -> Self {
        self.unlocked = unlocked;
        self
    }

    /// The token endpoint of this configuration's managers, whatever the environment says
    /// (default `None`: `CODEX_REFRESH_TOKEN_URL_OVERRIDE` when set, else Codex's endpoint; see
    /// [`AuthorityConfig::from_env`]). So that one process can hold managers on different
    /// endpoints (a test authority and the real one, two tenants). Checked by
    /// [`StoreConfig::manager`] ([`check_token_url`](crate::authority::check_token_url)).
    pub fn token_url(mut self, url: Option<String>) -> Self {
        self.token_url = url;
        self
    }

    /// The OAuth client id of this configuration's managers, whatever the environment says
    /// (default `None`: `CODEX_APP_SERVER_LOGIN_CLIENT_ID` when set, else Codex's). Checked by
    /// [`StoreConfig::manager`]: it must be non-empty, without whitespace or control
    /// characters.
    pub fn client_id(mut self, id: Option<String>) -> Self {
        self.client_id = id;
        self
    }

    /// The Codex home.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The shared store's URL, if there is one.
    pub fn shared_url(&self) -> Option<&StoreUrl> {
        self.shared.as_ref()
    }

    /// The credential's key in the shared store.
    pub fn store_key(&self) -> &str {
        &self.key
    }

    /// The file store's options.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions::default()
            .lock_deadline(self.lock_timeout)
            .unlocked(self.unlocked)
    }

    /// The token endpoint with the request timeout: the configured [`token_url`](Self::token_url)
    /// and [`client_id`](Self::client_id) where given, else the environment's, as Codex reads
    /// it.
    pub fn authority(&self) -> AuthorityConfig {
        let mut authority = AuthorityConfig::from_env().request_timeout(self.request_timeout);
        if let Some(url) = &self.token_url {
            authority = authority.token_url(url.clone());
        }
        if let Some(id) = &self.client_id {
            authority = authority.client_id(id.clone());
        }
        authority
    }

    /// Checks the explicitly configured token endpoint and client id (the environment's are
    /// used as they are, as Codex uses them).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the value: a token URL
    /// that is not an `http(s)` URL with a host, a client id that is empty or holds whitespace
    /// or a control character.
    pub fn check(&self) -> Result<()> {
        if let Some(url) = &self.token_url {
            crate::authority::check_token_url(url)?;
        }
        if let Some(id) = &self.client_id
            && !crate::authority::is_token_string(id)
        {
            return Err(Error::invalid_input(format!(
                "client_id={id:?} is not a client id: it must be non-empty, without whitespace \
                 or control characters"
            )));
        }
        Ok(())
    }

    /// The Codex home's `auth.json`, as a store of its own (the local mirror beside a shared
    /// store).
    pub fn file_store(&self) -> FileStore {
        FileStore::new(&self.home, self.store_options())
    }

    /// A manager over the configured store: the Codex home's `auth.json`, or the shared store
    /// mirrored into it. `options` gets this configuration's store options and authority; its
    /// other settings (freshness, watch, clock) are kept.
    ///
    /// # Errors
    /// What [`StoreConfig::check`] finds, before anything is opened; then the store's own
    /// errors (a shared store that cannot be reached).
    pub async fn manager(&self, options: ManagerOptions) -> Result<AuthManager> {
        self.check()?;
        let options = options
            .store(self.store_options())
            .authority(self.authority());
        match &self.shared {
            None => match self.home_store()? {
                None => AuthManager::new(&self.home, options),
                Some(store) => AuthManager::with_store(store, options),
            },
            Some(url) => self.connect_shared(url, options).await,
        }
    }

    /// The home's own store when it is not `auth.json`: the keyring item (or `auto`), as
    /// [`credentials`](Self::credentials) chooses.
    #[cfg(feature = "keyring")]
    fn home_store(&self) -> Result<Option<crate::store::keyring::KeyringStore>> {
        let choice = self.credentials()?;
        if choice.store == CredentialsStore::File {
            return Ok(None);
        }
        Ok(Some(self.keyring_store(&choice)))
    }

    #[cfg(not(feature = "keyring"))]
    fn home_store(&self) -> Result<Option<FileStore>> {
        let choice = self.credentials()?;
        if choice.store == CredentialsStore::File {
            return Ok(None);
        }
        Err(Error::unsupported(format!(
            "the credentials store is {} ({}), and this authstore was built without the keyring \
             feature; use the file store",
            choice.store,
            choice.describe_source()
        )))
    }

    /// The keyring store of the home (`choice`: keyring or auto; with `secret_auth_storage`,
    /// the encrypted secrets file), with this configuration's lock options.
    #[cfg(feature = "keyring")]
    pub fn keyring_store(&self, choice: &CredentialsChoice) -> crate::store::keyring::KeyringStore {
        let store = crate::store::keyring::KeyringStore::new(
            &self.home,
            choice.store,
            self.store_options(),
        );
        if choice.is_encrypted() {
            store.in_secrets_file()
        } else {
            store
        }
    }

    /// The configured store itself, for reading and watching it without a manager (nothing is
    /// mirrored): the shared store when there is one, else the Codex home's own store
    /// (`auth.json`, or the keyring item as [`credentials`](Self::credentials) chooses).
    ///
    /// # Errors
    /// As [`StoreConfig::manager`].
    pub async fn store(&self) -> Result<Box<dyn Store>> {
        match &self.shared {
            None => Ok(match self.home_store()? {
                None => Box::new(self.file_store()),
                Some(store) => Box::new(store),
            }),
            Some(url) => self.open_shared(url).await,
        }
    }

    #[cfg(feature = "postgres")]
    async fn connect(&self, url: &StoreUrl) -> Result<crate::store::postgres::PgStore> {
        use crate::store::postgres::{PgOptions, PgStore};
        let options = PgOptions::default()
            .lock_timeout(self.lock_timeout)
            .token_request_timeout(self.request_timeout)
            .idle_timeout(self.request_timeout + IDLE_BEYOND_REQUEST);
        PgStore::connect(url.as_str(), &self.key, options).await
    }

    #[cfg(feature = "postgres")]
    async fn connect_shared(&self, url: &StoreUrl, options: ManagerOptions) -> Result<AuthManager> {
        AuthManager::with_postgres(&self.home, self.connect(url).await?, options)
    }

    #[cfg(feature = "postgres")]
    async fn open_shared(&self, url: &StoreUrl) -> Result<Box<dyn Store>> {
        Ok(Box::new(self.connect(url).await?))
    }

    #[cfg(not(feature = "postgres"))]
    async fn connect_shared(
        &self,
        _url: &StoreUrl,
        _options: ManagerOptions,
    ) -> Result<AuthManager> {
        Err(no_shared_stores())
    }

    #[cfg(not(feature = "postgres"))]
    async fn open_shared(&self, _url: &StoreUrl) -> Result<Box<dyn Store>> {
        Err(no_shared_stores())
    }
}

#[cfg(not(feature = "postgres"))]
fn no_shared_stores() -> Error {
    let _ = IDLE_BEYOND_REQUEST;
    Error::invalid_input("a shared store needs authstore built with the postgres feature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_with_a_password_or_a_possible_password_parameter_are_secret() {
        for secret in [
            "postgres://alice:s3cret@db.example.com/auth",
            "postgresql://alice:@db/auth",
            "postgres://alice@db/auth?password=s3cret",
            "postgres://alice@db/auth?PassWord=s3cret",
            "postgres://alice@db/auth?pass%77ord=s3cret",
            "host=db user=alice password=s3cret",
        ] {
            assert!(may_hold_password(secret), "{secret}");
        }
        for plain in [
            "postgres://alice@db.example.com:5432/auth?sslmode=require",
            "postgres:///auth?host=/run/postgresql",
            "host=db user=alice dbname=auth",
        ] {
            assert!(!may_hold_password(plain), "{plain}");
        }
    }

    #[test]
    fn an_explicit_token_url_and_client_id_win_over_the_environment_and_are_checked() {
        let config = StoreConfig::new("/nonexistent-home")
            .token_url(Some("http://127.0.0.1:9/oauth/token".into()))
            .client_id(Some("app_test".into()))
            .request_timeout(Duration::from_secs(3));
        assert!(config.check().is_ok());
        let authority = config.authority();
        assert_eq!(authority.url(), "http://127.0.0.1:9/oauth/token");
        assert_eq!(authority.timeout(), Duration::from_secs(3));
        // Without them, the environment's rule (whatever this process's environment says).
        let from_env = StoreConfig::new("/nonexistent-home").authority();
        assert_eq!(from_env.url(), AuthorityConfig::from_env().url());
        for bad in [
            StoreConfig::new("/h").token_url(Some("ftp://x/oauth/token".into())),
            StoreConfig::new("/h").token_url(Some("not a url".into())),
            StoreConfig::new("/h").client_id(Some(String::new())),
            StoreConfig::new("/h").client_id(Some("app x".into())),
        ] {
            let error = bad.check().unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn one_grammar_for_store_urls_and_none_is_echoed() {
        for url in [
            "postgres://alice@db/auth",
            " postgresql:///auth?host=/run \n",
        ] {
            assert_eq!(StoreUrl::parse(url).unwrap().as_str(), url.trim());
        }
        for url in [
            "host=db user=alice password=s3cret",
            "mysql://alice:s3cret@db/auth",
            "",
            "postgres://alice@db/auth\nx",
        ] {
            let error = StoreUrl::parse(url).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidInput);
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
        let url = StoreUrl::parse("postgres://alice:s3cret@db/auth").unwrap();
        assert_eq!(format!("{url:?}"), "StoreUrl(..)");
    }
}
