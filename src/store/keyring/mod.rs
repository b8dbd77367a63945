//! The keyring store: the login in the OS keyring item Codex itself reads and writes
//! (`cli_auth_credentials_store = "keyring"` or `"auto"`), under Codex's two locks in the home.
//!
//! # The item
//!
//! Service `Codex Auth`, account `cli|` + the first 16 hex digits of the SHA-256 of the
//! canonical Codex home path ([`home_fingerprint`](super::home_fingerprint), Codex's
//! `compute_store_key`), target `default`: on Linux a Secret Service item with the attributes
//! `service`, `username` (the account), `target` and `application` = `rust-keyring`, labelled
//! `cli|…@Codex Auth:default (keyring v3.6.3)`, which is what Codex 0.171.0 (the `keyring` crate
//! 3.6.3) creates; on macOS the login keychain's generic password, on Windows the Credential
//! Manager's generic credential, both through the `keyring` crate 3.6 as Codex uses it. The
//! secret is the `auth.json` document as compact JSON ([`AuthDocument::to_compact_json`]),
//! unknown fields kept. An existing item is updated in place, never deleted and re-created (on
//! macOS a re-created item loses the access Codex's binary was granted); a logout deletes it,
//! as Codex's does. Newer Codex builds split the login over several items (a `v2` layout);
//! that layout is not read here.
//!
//! # The encrypted secrets file
//!
//! With `[features] secret_auth_storage = true` the login is not in that item but in Codex's
//! encrypted secrets file, `secrets/codex_auth.age` in the home (the `secrets` module: an age
//! file with one scrypt recipient, its passphrase the keyring item service `codex`, account
//! `secrets|` + the same 16 hex digits). Everything else here holds for it unchanged: the same
//! locks, the same transaction, the same errors for a keyring that does not answer; its changes
//! are watched as `auth.json`'s are, since it is a file.
//!
//! # The transaction
//!
//! The same as the file store's, with the same files: [`KeyringStore::begin`] takes `auth.lock`
//! in the Codex home (bounded by the lock deadline, see the file store's `lock` module), the
//! caller re-reads the item inside it, decides, and a write takes `auth.json.lock` around the
//! update of the item, exactly as Codex's commit does in keyring mode. In keyring mode
//! `auth.json` is never written or removed.
//!
//! `auto` is Codex's: the keyring first; `auth.json` when the keyring holds no login or does not
//! answer. A transaction writes back to the store its re-read found the login in, so that a
//! reader going the same way (Codex in `auto`) finds it there; a first login goes to the keyring
//! when it answers, else to the file.
//!
//! # Bad conditions
//!
//! No Secret Service on the session bus, a locked collection (its item cannot be read without a
//! password prompt, which authstore never raises), a keychain that refuses: an
//! [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable) error naming the item and
//! what to do, with nothing written anywhere; every call to the keyring is bounded (at most
//! [`KEYRING_TIMEOUT`], and never past the lock deadline), so that a keyring that does not
//! answer never holds a command past it.
//!
//! # Changes
//!
//! Linux: the Secret Service says when an item changes. The feed subscribes on the session bus
//! to the signals of every collection (`ItemCreated`, `ItemDeleted`, `ItemChanged`), of the
//! service (collections created, deleted, locked, unlocked) and to the keyring daemon's name
//! changing hands, and counts them as the file store's watch counts directory events: a mark is
//! the count, a look that finds it unchanged asks the keyring nothing, and a long-lived reader
//! (the agent, `authstore watch`, the broker) sleeps until a signal comes. A signal about
//! another item only costs a re-read. The subscription lives on a thread of its own, on a
//! runtime of its own, as the directory watch does. Until it is in place, and for good once it
//! cannot be made or its stream ends (no session bus, the bus went away), the feed polls as
//! below, says so in a debug log, and counts the loss as a change, so that no reader keeps
//! what it read under the subscription. `auto` watches `auth.json` too (a change in either is
//! a change).
//!
//! macOS and Windows poll: the `keyring` crate offers no notification of a changed item, and
//! the platforms' own (keychain events, none for the Credential Manager) are not portable. What
//! was read stays valid for the poll interval (1 s by default, the manager's `revalidate`),
//! then the next look reads the item again. With `secret_auth_storage` the encrypted file is
//! watched as `auth.json` is, on every platform.
//!
//! # Per platform
//!
//! Linux: the Secret Service over D-Bus, through the `secret-service` crate 4 (pure Rust: zbus
//! on tokio, the Diffie-Hellman session with Rust crypto), which is what the `keyring` crate
//! 3.6 itself uses there; it is called directly so that the calls are async (no blocking thread,
//! a timeout on each) and a locked item is reported instead of unlocked through a prompt. The
//! search, creation and update follow `keyring` 3.6.3's `SsCredential` step by step. Verified by
//! `scripts/keyring-tests.sh` against gnome-keyring in a private D-Bus session. macOS and
//! Windows: the `keyring` crate 3.6 (`apple-native`, `windows-native`), on a blocking thread;
//! compiled and linted (`scripts/cross-check.sh`), not run here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{BoxFuture, ChangeFeed, ChangeOptions, PollFeed, Store, Transaction};
use crate::document::AuthDocument;
use crate::error::{Error, Location, Result};
use crate::store::credentials::CredentialsStore;
use crate::store::file::{FileStore, FileTransaction, StoreOptions};

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod backend;
#[cfg(any(target_os = "macos", windows))]
#[path = "native.rs"]
mod backend;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
#[path = "unsupported.rs"]
mod backend;
mod secrets;
#[cfg(target_os = "linux")]
mod watch;

pub use secrets::{AUTH_SECRETS_FILE, PASSPHRASE_SERVICE, SECRETS_DIR, SecretsFile};

/// The keyring service of Codex's login item.
pub const KEYRING_SERVICE: &str = "Codex Auth";
/// The keyring target (Secret Service `target` attribute) of Codex's login item.
pub const KEYRING_TARGET: &str = "default";
/// The `keyring` crate version whose label an item created here carries, as Codex's do.
const KEYRING_CRATE_VERSION: &str = "3.6.3";
/// The longest any one call to the keyring may take.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(10);

/// Codex's keyring item for one Codex home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringItem {
    /// `Codex Auth`.
    pub service: String,
    /// `cli|` + 16 hex digits.
    pub account: String,
    /// `default`.
    pub target: String,
}

impl KeyringItem {
    /// The item Codex uses for the Codex home `home`.
    pub fn for_home(home: &Path) -> Self {
        Self {
            service: KEYRING_SERVICE.to_owned(),
            account: format!("cli|{}", super::home_fingerprint(home)),
            target: KEYRING_TARGET.to_owned(),
        }
    }

    /// The label the `keyring` crate 3.6.3 gives an item it creates.
    pub fn label(&self) -> String {
        format!(
            "{}@{}:{} (keyring v{KEYRING_CRATE_VERSION})",
            self.account, self.service, self.target
        )
    }

    /// How errors and `status` name it (no secret in it).
    pub fn describe(&self) -> String {
        format!(
            "keyring item {:?} account {:?} ({})",
            self.service,
            self.account,
            backend::NAME
        )
    }
}

/// Why a call to the keyring failed, in words that hold no secret.
#[derive(Debug)]
pub(crate) enum BackendError {
    /// No keyring answers (no Secret Service on the bus, no session bus).
    Unavailable(String),
    /// The item or its collection is locked.
    Locked(String),
    /// Anything else the keyring said.
    Failed(String),
}

impl BackendError {
    fn into_error(self, item: &KeyringItem) -> Error {
        let location = Location::Store(item.describe());
        let reason = match self {
            BackendError::Unavailable(why) => format!(
                "{why}; start the keyring (a Secret Service such as gnome-keyring on the session \
                 bus), or use the file store"
            ),
            BackendError::Locked(why) => {
                format!("{why}; unlock the keyring, or use the file store")
            }
            BackendError::Failed(why) => why,
        };
        Error::store_unavailable(location, reason, None)
    }
}

/// Codex's keyring item (or, for `auto`, the item and then `auth.json`) for one Codex home.
/// A cheap `Clone` handle.
#[derive(Debug, Clone)]
pub struct KeyringStore {
    item: KeyringItem,
    /// The home's `auth.json` and its locks: the locks in every mode, the file for `auto`.
    file: FileStore,
    auto: bool,
    /// With `secret_auth_storage`: the encrypted file that holds the login instead of the item.
    secrets: Option<SecretsFile>,
}

/// Which store answered an `auto` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The keyring item.
    Keyring,
    /// `auth.json`.
    File,
}

impl Answered {
    /// `keyring` or `file`.
    pub fn as_str(self) -> &'static str {
        match self {
            Answered::Keyring => "keyring",
            Answered::File => "file",
        }
    }
}

/// What an `auto` read found, for `status`.
#[derive(Debug)]
pub struct AutoRead {
    /// Where the login was read from (for a home with no login: where a login would go).
    pub answered: Answered,
    /// Why the keyring did not answer, when it did not.
    pub keyring_error: Option<Error>,
    /// The login.
    pub document: Option<AuthDocument>,
}

impl KeyringStore {
    /// The keyring store of the Codex home `home`; `mode` is [`CredentialsStore::Keyring`] or
    /// [`CredentialsStore::Auto`] (anything else is taken as `Keyring`). `options` are the
    /// lock options, as for the file store.
    pub fn new(home: impl Into<PathBuf>, mode: CredentialsStore, options: StoreOptions) -> Self {
        let home = home.into();
        Self {
            item: KeyringItem::for_home(&home),
            file: FileStore::new(home, options),
            auto: mode == CredentialsStore::Auto,
            secrets: None,
        }
    }

    /// The same store with `[features] secret_auth_storage`: the login in Codex's encrypted
    /// secrets file (`secrets/codex_auth.age`), its passphrase in the keyring.
    pub fn in_secrets_file(mut self) -> Self {
        self.secrets = Some(SecretsFile::for_home(self.file.home()));
        self
    }

    /// The encrypted secrets file, when the login is kept in one.
    pub fn secrets_file(&self) -> Option<&SecretsFile> {
        self.secrets.as_ref()
    }

    /// Where the login is kept, in words for `status` and errors (no secret in it).
    pub fn describe(&self) -> String {
        match &self.secrets {
            None => self.item.describe(),
            Some(secrets) => format!(
                "{} (encrypted; its passphrase in the {})",
                secrets.path().display(),
                secrets.passphrase_item().describe()
            ),
        }
    }

    /// The item.
    pub fn item(&self) -> &KeyringItem {
        &self.item
    }

    /// The home's `auth.json` (the locks' home; the fall-back of `auto`).
    pub fn file(&self) -> &FileStore {
        &self.file
    }

    /// Whether this is `auto`.
    pub fn is_auto(&self) -> bool {
        self.auto
    }

    fn deadline(&self) -> Duration {
        self.file
            .options()
            .lock_deadline_value()
            .min(KEYRING_TIMEOUT)
    }

    /// Reads the item alone (no fall-back), without locking; `None` when there is none.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable) when the keyring
    /// does not answer or is locked; [`ErrorKind::InvalidFile`](crate::ErrorKind::InvalidFile)
    /// when the item holds no valid document (left untouched).
    pub async fn read_item(&self) -> Result<Option<AuthDocument>> {
        if let Some(secrets) = &self.secrets {
            return secrets.load(self.deadline()).await;
        }
        let secret = bounded(self.deadline(), backend::load(&self.item))
            .await
            .map_err(|error| error.into_error(&self.item))?;
        match secret {
            None => Ok(None),
            Some(bytes) => AuthDocument::parse(&bytes).map(Some).map_err(|error| {
                Error::invalid_file(Location::Store(self.item.describe()), error.to_string())
            }),
        }
    }

    /// For `auto`: the keyring's login when it has one, else the file's, and which answered.
    ///
    /// # Errors
    /// What reading the file returns; the keyring's own errors are the fall-back's reason.
    pub async fn read_auto(&self) -> Result<AutoRead> {
        match self.read_item().await {
            Ok(Some(document)) => Ok(AutoRead {
                answered: Answered::Keyring,
                keyring_error: None,
                document: Some(document),
            }),
            Ok(None) => {
                let document = self.file.read().await?;
                Ok(AutoRead {
                    // A first login goes to the keyring, which answered.
                    answered: if document.is_some() {
                        Answered::File
                    } else {
                        Answered::Keyring
                    },
                    keyring_error: None,
                    document,
                })
            }
            Err(error) => {
                tracing::debug!(error = %error.report(), "the keyring did not answer; reading auth.json (auto)");
                Ok(AutoRead {
                    answered: Answered::File,
                    keyring_error: Some(error),
                    document: self.file.read().await?,
                })
            }
        }
    }

    /// Starts a transaction: takes `auth.lock` in the home (as the file store does).
    ///
    /// # Errors
    /// As [`FileStore::begin`].
    pub async fn begin(&self) -> Result<KeyringTransaction> {
        let file = self.file.begin().await?;
        Ok(KeyringTransaction {
            store: self.clone(),
            file,
            target: Answered::Keyring,
        })
    }
}

/// Runs `call`, giving up after `limit`.
async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let started = Instant::now();
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::Unavailable(format!(
            "the keyring did not answer within {:?}",
            started.elapsed()
        ))),
    }
}

impl Store for KeyringStore {
    fn location(&self) -> Location {
        match &self.secrets {
            None => Location::Store(self.item.describe()),
            Some(secrets) => Location::File(secrets.path().to_owned()),
        }
    }

    fn read(&self) -> BoxFuture<'_, Result<Option<AuthDocument>>> {
        Box::pin(async move {
            if self.auto {
                Ok(self.read_auto().await?.document)
            } else {
                self.read_item().await
            }
        })
    }

    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>>> {
        Box::pin(async move {
            let transaction = KeyringStore::begin(self).await?;
            Ok(Box::new(transaction) as Box<dyn Transaction>)
        })
    }

    /// Linux: the Secret Service's signals; elsewhere polled. See the module documentation.
    fn changes(&self, options: ChangeOptions) -> Box<dyn ChangeFeed> {
        if let Some(secrets) = &self.secrets {
            // The encrypted file is watched as `auth.json` is.
            return Box::new(crate::store::file::watch::FileChanges::start(
                secrets.path(),
                options,
            ));
        }
        #[cfg(target_os = "linux")]
        if options.watch {
            let item = Box::new(watch::SignalFeed::start(options.poll));
            if !self.auto {
                return item;
            }
            // auto: the login may be in auth.json as well.
            let file = Box::new(crate::store::file::watch::FileChanges::start(
                self.file.auth_path(),
                options,
            ));
            return Box::new(watch::Joined(item, file));
        }
        Box::new(PollFeed { poll: options.poll })
    }

    fn prepare_login(&self) -> Result<()> {
        // The locks live in the home.
        self.file.ensure_home()
    }

    fn local_file(&self) -> Option<&FileStore> {
        None
    }
}

/// One transaction on the keyring store, holding `auth.lock` in the home.
#[derive(Debug)]
pub struct KeyringTransaction {
    store: KeyringStore,
    /// The file store's transaction: `auth.lock`, and `auth.json.lock` around writes.
    file: FileTransaction,
    /// Where the last read found the login (always the keyring outside `auto`).
    target: Answered,
}

impl KeyringTransaction {
    /// Re-reads the login inside the lock (for `auto`, deciding where it is).
    ///
    /// # Errors
    /// As [`KeyringStore::read_item`].
    pub async fn read(&mut self) -> Result<Option<AuthDocument>> {
        if !self.store.auto {
            return self.store.read_item().await;
        }
        let read = self.store.read_auto().await?;
        self.target = read.answered;
        Ok(read.document)
    }

    /// Writes `document` where the login is, under `auth.json.lock`: the keyring item updated
    /// in place (created when there is none), or for `auto` the file its re-read found.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable) when the keyring
    /// refuses; nothing was written then.
    pub async fn write(&mut self, document: &AuthDocument) -> Result<()> {
        if self.target == Answered::File {
            return self.file.write(document).await;
        }
        let limit = self.store.deadline();
        if let Some(secrets) = self.store.secrets.clone() {
            self.file
                .with_write_lock_async(|| async move { secrets.save(document, limit).await })
                .await?;
            tracing::debug!(file = %self.store.describe(), "secrets file written");
            return Ok(());
        }
        let secret = document.to_compact_json();
        let item = self.store.item.clone();
        self.file
            .with_write_lock_async(|| async move {
                bounded(limit, backend::save(&item, &secret))
                    .await
                    .map_err(|error| error.into_error(&item))
            })
            .await?;
        tracing::debug!(item = %self.store.item.describe(), "keyring item written");
        Ok(())
    }

    /// Removes the login (a logout): deletes the keyring item, as Codex's logout does; for
    /// `auto` also `auth.json`. Returns whether there was one.
    ///
    /// # Errors
    /// As [`KeyringTransaction::write`].
    pub async fn remove(&mut self) -> Result<bool> {
        let item = self.store.item.clone();
        let limit = self.store.deadline();
        let auto = self.store.auto;
        let secrets = self.store.secrets.clone();
        let removed_item = self
            .file
            .with_write_lock_async(|| async move {
                if let Some(secrets) = secrets {
                    return match secrets.remove(limit).await {
                        // auto: a keyring that does not answer holds nothing to remove.
                        Err(error)
                            if auto && error.kind() == crate::ErrorKind::StoreUnavailable =>
                        {
                            Ok(false)
                        }
                        result => result,
                    };
                }
                match bounded(limit, backend::delete(&item)).await {
                    Ok(removed) => Ok(removed),
                    // auto: a keyring that does not answer holds nothing to remove.
                    Err(BackendError::Unavailable(_)) if auto => Ok(false),
                    Err(error) => Err(error.into_error(&item)),
                }
            })
            .await?;
        let removed_file = if auto {
            self.file.remove().await?
        } else {
            false
        };
        Ok(removed_item || removed_file)
    }
}

impl Transaction for KeyringTransaction {
    fn read(&mut self) -> BoxFuture<'_, Result<Option<AuthDocument>>> {
        Box::pin(KeyringTransaction::read(self))
    }

    fn write<'a>(&'a mut self, document: &'a AuthDocument) -> BoxFuture<'a, Result<()>> {
        Box::pin(KeyringTransaction::write(self, document))
    }

    fn remove(&mut self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(KeyringTransaction::remove(self))
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        // Every write was stored when it returned; dropping releases `auth.lock`.
        drop(self);
        Box::pin(async { Ok(()) })
    }

    fn lock_wait(&self) -> Duration {
        self.file.lock_wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_item_is_named_as_codex_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let item = KeyringItem::for_home(dir.path());
        assert_eq!(item.service, "Codex Auth");
        assert_eq!(item.target, "default");
        let canonical = dir.path().canonicalize().unwrap();
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            canonical.to_string_lossy().as_bytes(),
        );
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(item.account, format!("cli|{}", &hex[..16]));
        assert_eq!(
            item.label(),
            format!("{}@Codex Auth:default (keyring v3.6.3)", item.account)
        );
    }
}
