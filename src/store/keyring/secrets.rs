//! Codex's encrypted secrets file: where the login is when `cli_auth_credentials_store` is
//! `keyring` or `auto` and `[features] secret_auth_storage` is on (Codex's default on Windows).
//!
//! # The format, as Codex 0.171.0 reads and writes it
//!
//! `$CODEX_HOME/secrets/codex_auth.age` is an [age](https://age-encryption.org/v1) file with one
//! scrypt (passphrase) recipient, through the `age` crate 0.11 as Codex uses it. Its plaintext is
//! the JSON object `{"version":1,"secrets":{"global/CODEX_AUTH":"…"}}`, whose `global/CODEX_AUTH`
//! entry is the `auth.json` document as a JSON string (compact JSON). The passphrase (base64 of
//! 32 random bytes) is the keyring item service `codex`, account `secrets|` + the home's 16 hex
//! digits ([`home_fingerprint`](crate::store::home_fingerprint)), target `default`: Codex creates
//! it the first time it saves a secret, and so does authstore, never otherwise.
//!
//! # What authstore does with it
//!
//! - Reads: the passphrase from the keyring, then one scrypt decryption. At the work factor age
//!   picks for about a second of this machine's time (log2 N = 19 here), one decryption costs
//!   about 1.7 s of CPU and 512 MiB of memory, so a process decrypts a given file at most once:
//!   the plaintext is kept, keyed by the file's identity (inode, size, times), until the file is
//!   replaced. A transaction's re-read of a file nobody replaced costs nothing, and its write
//!   keeps what it wrote.
//! - Writes: the other entries and fields are kept (Codex keeps only the entries); the file is
//!   encrypted again with a new salt, at age's default work factor (as Codex: about a second of
//!   this machine's time), and replaced atomically (a temporary file in `secrets/`, 0600, fsync,
//!   rename, fsync the directory; `secrets/` is created 0700). Codex's own write does the same
//!   without the directory fsync, under the same two locks in the home.
//! - A logout removes the `global/CODEX_AUTH` entry and keeps the file, its other entries and the
//!   passphrase, as Codex's does.
//! - A version above 1 is refused (Codex refuses it too); a file that exists while its
//!   passphrase does not, or that the passphrase does not open, is an
//!   [`ErrorKind::InvalidFile`](crate::ErrorKind::InvalidFile) naming the file, never replaced.
//!
//! Changes are seen through the file: the feed watches `secrets/` as the file store watches the
//! home. A new passphrase alone is not a change of the login.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use age::secrecy::{ExposeSecret, SecretString};
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{BackendError, KeyringItem, backend, bounded};
use crate::document::AuthDocument;
use crate::error::{Error, Location, Result};
use crate::store::file::watch::FileStamp;
use crate::store::file::{Visibility, write_file_durably};

/// The directory of Codex's encrypted secrets files, in the Codex home.
pub const SECRETS_DIR: &str = "secrets";
/// The encrypted file that holds the login.
pub const AUTH_SECRETS_FILE: &str = "codex_auth.age";
/// The keyring service of the passphrase item.
pub const PASSPHRASE_SERVICE: &str = "codex";
/// The entry of the login in the file.
const AUTH_ENTRY: &str = "global/CODEX_AUTH";
/// The newest plaintext version Codex 0.171.0 writes and reads.
const SECRETS_VERSION: u64 = 1;
/// A larger file is not Codex's (a login is a few kilobytes): refused before decrypting.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Codex's encrypted secrets file of one Codex home, and the keyring item of its passphrase.
/// A cheap `Clone` handle; clones share what was decrypted.
#[derive(Debug, Clone)]
pub struct SecretsFile {
    path: PathBuf,
    passphrase: KeyringItem,
    decrypted: Arc<Mutex<Option<Decrypted>>>,
}

/// A decrypted file: its plaintext object and the identity of the file it came from.
struct Decrypted {
    stamp: FileStamp,
    contents: Map<String, Value>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The plaintext holds the tokens.
        f.debug_struct("Decrypted").finish_non_exhaustive()
    }
}

impl SecretsFile {
    /// The secrets file of the Codex home `home`.
    pub fn for_home(home: &Path) -> Self {
        Self {
            path: home.join(SECRETS_DIR).join(AUTH_SECRETS_FILE),
            passphrase: KeyringItem {
                service: PASSPHRASE_SERVICE.to_owned(),
                account: format!("secrets|{}", crate::store::home_fingerprint(home)),
                target: super::KEYRING_TARGET.to_owned(),
            },
            decrypted: Arc::default(),
        }
    }

    /// `secrets/codex_auth.age` in the home.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keyring item that holds the passphrase.
    pub fn passphrase_item(&self) -> &KeyringItem {
        &self.passphrase
    }

    fn location(&self) -> Location {
        Location::File(self.path.clone())
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::invalid_file(self.location(), reason.into())
    }

    /// The login in the file; `None` when there is no file or no login entry in it.
    ///
    /// # Errors
    /// [`ErrorKind::StoreUnavailable`](crate::ErrorKind::StoreUnavailable) when the keyring
    /// holding the passphrase does not answer; [`ErrorKind::InvalidFile`](crate::ErrorKind::InvalidFile)
    /// when the file cannot be opened with it or holds no valid document (left untouched).
    pub(crate) async fn load(&self, limit: Duration) -> Result<Option<AuthDocument>> {
        let Some(contents) = self.contents(limit).await? else {
            return Ok(None);
        };
        let entry = contents
            .get("secrets")
            .and_then(Value::as_object)
            .and_then(|secrets| secrets.get(AUTH_ENTRY));
        match entry {
            None => Ok(None),
            Some(Value::String(document)) => AuthDocument::parse(document.as_bytes())
                .map(Some)
                .map_err(|error| self.invalid(format!("its {AUTH_ENTRY} entry: {error}"))),
            Some(_) => Err(self.invalid(format!("its {AUTH_ENTRY} entry is not a string"))),
        }
    }

    /// Replaces the login entry with `document`, keeping everything else in the file; creates
    /// the file (and the passphrase, when the keyring has none) when there is none.
    ///
    /// # Errors
    /// As [`load`](Self::load), and the write's own errors; the file is then as it was.
    pub(crate) async fn save(&self, document: &AuthDocument, limit: Duration) -> Result<()> {
        let mut contents = self.contents(limit).await?.unwrap_or_else(|| {
            let mut empty = Map::new();
            empty.insert("version".into(), Value::from(SECRETS_VERSION));
            empty.insert("secrets".into(), Value::Object(Map::new()));
            empty
        });
        let secrets = contents
            .entry("secrets")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(secrets) = secrets else {
            return Err(self.invalid("its secrets field is not an object"));
        };
        let document = serde_json::to_string(document)
            .map_err(|error| Error::system(format!("serializing the login: {error}")))?;
        secrets.insert(AUTH_ENTRY.into(), Value::String(document));
        self.write(contents, limit).await
    }

    /// Removes the login entry (a logout), keeping the file and its other entries; returns
    /// whether there was one.
    ///
    /// # Errors
    /// As [`save`](Self::save).
    pub(crate) async fn remove(&self, limit: Duration) -> Result<bool> {
        let Some(mut contents) = self.contents(limit).await? else {
            return Ok(false);
        };
        let removed = contents
            .get_mut("secrets")
            .and_then(Value::as_object_mut)
            .and_then(|secrets| secrets.remove(AUTH_ENTRY))
            .is_some();
        if removed {
            self.write(contents, limit).await?;
        }
        Ok(removed)
    }

    /// The file's plaintext object, decrypted once per file; `None` when there is no file.
    async fn contents(&self, limit: Duration) -> Result<Option<Map<String, Value>>> {
        let Some(stamp) = FileStamp::of(&self.path) else {
            return match fs::symlink_metadata(&self.path) {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    *self.cache() = None;
                    Ok(None)
                }
                Err(error) => Err(Error::unreadable(&self.path, error)),
                Ok(_) => Err(self.invalid("it cannot be read")),
            };
        };
        if let Some(decrypted) = self.cache().as_ref()
            && decrypted.stamp == stamp
        {
            return Ok(Some(decrypted.contents.clone()));
        }
        let (stamp, ciphertext) = self.read_file()?;
        let passphrase = match self.load_passphrase(limit).await? {
            Some(passphrase) => passphrase,
            None => {
                return Err(self.invalid(format!(
                    "its passphrase is not in the keyring ({}); log in again (codex login), \
                     or use the file store",
                    self.passphrase.describe()
                )));
            }
        };
        let plaintext = tokio::task::spawn_blocking(move || {
            let identity = age::scrypt::Identity::new(passphrase);
            age::decrypt(&identity, &ciphertext)
        })
        .await
        .map_err(|error| Error::system(format!("decrypting the secrets file: {error}")))?
        .map_err(|error| self.invalid(decrypt_failure(&error)))?;
        tracing::debug!(file = %self.path.display(), "secrets file decrypted");
        let contents = self.parse(&plaintext)?;
        *self.cache() = Some(Decrypted {
            stamp,
            contents: contents.clone(),
        });
        Ok(Some(contents))
    }

    /// The file's bytes and the identity of what was read.
    fn read_file(&self) -> Result<(FileStamp, Vec<u8>)> {
        let mut file =
            fs::File::open(&self.path).map_err(|error| Error::unreadable(&self.path, error))?;
        let meta = file
            .metadata()
            .map_err(|error| Error::unreadable(&self.path, error))?;
        if !meta.is_file() {
            return Err(self.invalid("it is not a regular file"));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(self.invalid(format!(
                "it is {} bytes, more than a Codex secrets file holds ({MAX_FILE_BYTES})",
                meta.len()
            )));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.by_ref()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| Error::unreadable(&self.path, error))?;
        Ok((FileStamp::of_metadata(&meta), bytes))
    }

    /// The plaintext object, checked as Codex checks it.
    fn parse(&self, plaintext: &[u8]) -> Result<Map<String, Value>> {
        let Ok(Value::Object(contents)) = serde_json::from_slice::<Value>(plaintext) else {
            return Err(self.invalid("its decrypted contents are not a JSON object"));
        };
        let version = match contents.get("version") {
            None => 0,
            Some(version) => version
                .as_u64()
                .ok_or_else(|| self.invalid("its version is not a number"))?,
        };
        if version > SECRETS_VERSION {
            return Err(Error::unsupported(format!(
                "{}: secrets file version {version} is newer than {SECRETS_VERSION}, the one \
                 this authstore reads; upgrade authstore, or use the file store",
                self.path.display()
            )));
        }
        match contents.get("secrets") {
            None | Some(Value::Object(_)) => Ok(contents),
            Some(_) => Err(self.invalid("its secrets field is not an object")),
        }
    }

    /// Encrypts `contents` and replaces the file with it, durably.
    async fn write(&self, mut contents: Map<String, Value>, limit: Duration) -> Result<()> {
        if contents.get("version").and_then(Value::as_u64).unwrap_or(0) == 0 {
            contents.insert("version".into(), Value::from(SECRETS_VERSION));
        }
        let passphrase = match self.load_passphrase(limit).await? {
            Some(passphrase) => passphrase,
            None => self.create_passphrase(limit).await?,
        };
        let plaintext = serde_json::to_vec(&contents)
            .map_err(|error| Error::system(format!("serializing the secrets file: {error}")))?;
        let ciphertext = tokio::task::spawn_blocking(move || {
            let mut recipient = age::scrypt::Recipient::new(passphrase);
            if let Some(log_n) = test_work_factor() {
                recipient.set_work_factor(log_n);
            }
            age::encrypt(&recipient, &plaintext)
        })
        .await
        .map_err(|error| Error::system(format!("encrypting the secrets file: {error}")))?
        .map_err(|error| Error::system(format!("encrypting the secrets file: {error}")))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        write_file_durably(&self.path, &ciphertext, Visibility::Private)?;
        *self.cache() = FileStamp::of(&self.path).map(|stamp| Decrypted { stamp, contents });
        Ok(())
    }

    async fn load_passphrase(&self, limit: Duration) -> Result<Option<SecretString>> {
        let secret = bounded(limit, backend::load(&self.passphrase))
            .await
            .map_err(|error| error.into_error(&self.passphrase))?;
        match secret {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(|text| Some(SecretString::from(text)))
                .map_err(|_| {
                    self.invalid(format!(
                        "its passphrase ({}) is not text",
                        self.passphrase.describe()
                    ))
                }),
        }
    }

    /// A new passphrase, as Codex makes one (base64 of 32 random bytes), stored in the keyring
    /// before anything is encrypted with it.
    async fn create_passphrase(&self, limit: Duration) -> Result<SecretString> {
        let mut bytes = [0_u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| Error::system("no randomness for the secrets passphrase"))?;
        let passphrase =
            SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes));
        bytes.fill(0);
        bounded(
            limit,
            backend::save(&self.passphrase, passphrase.expose_secret().as_bytes()),
        )
        .await
        .map_err(|error: BackendError| error.into_error(&self.passphrase))?;
        tracing::debug!(item = %self.passphrase.describe(), "secrets passphrase created");
        Ok(passphrase)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<Decrypted>> {
        self.decrypted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why age could not open the file, in words that hold no secret.
fn decrypt_failure(error: &age::DecryptError) -> String {
    match error {
        age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
            "the passphrase in the keyring does not open it; log in again (codex login), or \
             use the file store"
                .to_owned()
        }
        age::DecryptError::ExcessiveWork { required, .. } => format!(
            "its scrypt work factor (log2 N = {required}) is more than this machine decrypts"
        ),
        other => format!("it is not an age file Codex wrote ({other})"),
    }
}

/// Creates `dir` (0700 on Unix) when it is missing.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|error| Error::io("create the secrets directory", dir, error))
}

/// The scrypt work factor tests write with (`AUTHSTORE_TEST_SCRYPT_LOG_N`, only in builds with
/// the `failpoints` feature), so that a test suite does not spend a second per write; reads
/// take whatever factor the file has, as Codex's do.
fn test_work_factor() -> Option<u8> {
    if cfg!(feature = "failpoints") {
        std::env::var("AUTHSTORE_TEST_SCRYPT_LOG_N")
            .ok()?
            .parse()
            .ok()
    } else {
        None
    }
}
