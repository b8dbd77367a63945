//! Which store a Codex home keeps its login in, chosen as Codex chooses it.
//!
//! Codex reads `cli_auth_credentials_store` from `$CODEX_HOME/config.toml`: `file` (the default:
//! `auth.json`), `keyring` (the OS credential store) or `auto` (the keyring when it answers, else
//! the file); `ephemeral` keeps the login in Codex's memory only, where no other process can
//! share it. With `[features] secret_auth_storage = true` (Codex's default on Windows) `keyring`
//! and `auto` keep it in an encrypted file whose passphrase is in the keyring
//! ([`SecretsFile`](crate::store::keyring::SecretsFile)), and so does authstore.
//!
//! A caller may override the config (the command line's `--credentials-store` and
//! `AUTHSTORE_CREDENTIALS_STORE`). `config.toml` is parsed with a real TOML parser; one that
//! cannot be parsed is an [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error
//! naming the path, never a silent fall-back to the file, which would split the login in two.
//! An override to `file` does not read the config at all, so that a broken `config.toml` can be
//! stepped around.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Codex's configuration file in a Codex home.
pub const CONFIG_FILE: &str = "config.toml";

/// The largest `config.toml` read (Codex's are a few KiB).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The environment variable that overrides the home's `config.toml` (as `--credentials-store`).
pub const CREDENTIALS_STORE_ENV: &str = "AUTHSTORE_CREDENTIALS_STORE";

/// The caller's override of the home's store, and how the caller was told it: `argument` (the
/// caller's own option, named `argument_name` in messages), else
/// [`CREDENTIALS_STORE_ENV`] when set and not blank, else `None` (as Codex chooses).
///
/// # Errors
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a word that is not a store,
/// naming where it came from.
pub fn override_from(
    argument: Option<&str>,
    argument_name: &str,
) -> Result<Option<(CredentialsStore, String)>> {
    let (name, source) = match argument {
        Some(name) => (name.to_owned(), argument_name.to_owned()),
        None => match std::env::var(CREDENTIALS_STORE_ENV) {
            Ok(name) if !name.trim().is_empty() => (name, CREDENTIALS_STORE_ENV.to_owned()),
            _ => return Ok(None),
        },
    };
    CredentialsStore::parse(&name)
        .map(|store| Some((store, source.clone())))
        .map_err(|error| Error::invalid_input(format!("{source}: {error}")))
}

/// Where a Codex home keeps its login (Codex's `cli_auth_credentials_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialsStore {
    /// `$CODEX_HOME/auth.json` (Codex's default).
    File,
    /// The OS keyring item Codex uses; no `auth.json`.
    Keyring,
    /// The keyring when it holds the login and answers, else `auth.json`.
    Auto,
}

impl CredentialsStore {
    /// The name Codex's config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialsStore::File => "file",
            CredentialsStore::Keyring => "keyring",
            CredentialsStore::Auto => "auto",
        }
    }

    /// Parses Codex's name for a store.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for any other word (saying
    /// so for Codex's `ephemeral`, which nothing can share).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim() {
            "file" => Ok(CredentialsStore::File),
            "keyring" => Ok(CredentialsStore::Keyring),
            "auto" => Ok(CredentialsStore::Auto),
            "ephemeral" => Err(Error::invalid_input(
                "the credentials store \"ephemeral\" keeps the login in one Codex process's \
                 memory, where no other process can share it; use file, keyring or auto",
            )),
            other => Err(Error::invalid_input(format!(
                "{other:?} is not a credentials store; expected file, keyring or auto"
            ))),
        }
    }
}

impl fmt::Display for CredentialsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a store was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChoiceSource {
    /// Nothing said otherwise: Codex's default, the file.
    Default,
    /// `cli_auth_credentials_store` in the home's `config.toml`.
    Config,
    /// The caller overrode the config; the string names how (`--credentials-store`,
    /// `AUTHSTORE_CREDENTIALS_STORE`).
    Override(String),
}

impl ChoiceSource {
    /// `default`, `config` or `override`, for JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChoiceSource::Default => "default",
            ChoiceSource::Config => "config",
            ChoiceSource::Override(_) => "override",
        }
    }
}

/// The store a Codex home's login is in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsChoice {
    /// The store.
    pub store: CredentialsStore,
    /// Why this one.
    pub source: ChoiceSource,
    /// The `config.toml` consulted (whether or not it exists); `None` when an override made
    /// reading it unnecessary.
    pub config_path: Option<PathBuf>,
    /// Codex's `[features] secret_auth_storage` as it applies (its default: on for Windows):
    /// with `keyring` or `auto`, the login is then in `secrets/codex_auth.age`.
    pub secret_auth_storage: bool,
}

impl CredentialsChoice {
    /// The reason in words, for `status`: "cli_auth_credentials_store in /h/config.toml",
    /// "the default (no cli_auth_credentials_store in /h/config.toml)", "--credentials-store".
    pub fn describe_source(&self) -> String {
        let config = self
            .config_path
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| CONFIG_FILE.to_owned());
        match &self.source {
            ChoiceSource::Default => {
                format!("the default (no cli_auth_credentials_store in {config})")
            }
            ChoiceSource::Config => format!("cli_auth_credentials_store in {config}"),
            ChoiceSource::Override(how) => format!("overridden by {how}"),
        }
    }

    /// Whether the login is in Codex's encrypted secrets file (`keyring` or `auto` with
    /// `secret_auth_storage`) rather than in the keyring item itself.
    pub fn is_encrypted(&self) -> bool {
        self.secret_auth_storage && self.store != CredentialsStore::File
    }
}

#[derive(Debug, Default, Deserialize)]
struct CodexConfig {
    cli_auth_credentials_store: Option<String>,
    #[serde(default)]
    features: Features,
}

#[derive(Debug, Default, Deserialize)]
struct Features {
    secret_auth_storage: Option<bool>,
}

/// Chooses the store of the Codex home `home`: `overridden` when given (with how it was
/// given), else what its `config.toml` says, else the file.
///
/// # Errors
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the path when
/// `config.toml` exists but cannot be read or parsed, or names no store Codex knows.
pub fn choose(
    home: &Path,
    overridden: Option<(CredentialsStore, String)>,
) -> Result<CredentialsChoice> {
    if let Some((CredentialsStore::File, how)) = &overridden {
        return Ok(CredentialsChoice {
            store: CredentialsStore::File,
            source: ChoiceSource::Override(how.clone()),
            config_path: None,
            secret_auth_storage: false,
        });
    }
    let path = home.join(CONFIG_FILE);
    let config = read_config(&path)?;
    let secret_auth_storage = config.features.secret_auth_storage.unwrap_or(cfg!(windows));
    let (store, source) = match (overridden, &config.cli_auth_credentials_store) {
        (Some((store, how)), _) => (store, ChoiceSource::Override(how)),
        (None, Some(name)) => (
            CredentialsStore::parse(name).map_err(|error| {
                Error::invalid_input(format!(
                    "{}: cli_auth_credentials_store: {error}",
                    path.display()
                ))
            })?,
            ChoiceSource::Config,
        ),
        (None, None) => (CredentialsStore::File, ChoiceSource::Default),
    };
    Ok(CredentialsChoice {
        store,
        source,
        config_path: Some(path),
        secret_auth_storage,
    })
}

fn read_config(path: &Path) -> Result<CodexConfig> {
    use std::io::Read;
    let cannot = |what: String| {
        Error::invalid_input(format!(
            "cannot read the Codex config {}: {what}; fix it, or choose the store with \
             --credentials-store file|keyring|auto",
            path.display()
        ))
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CodexConfig::default());
        }
        Err(error) => return Err(cannot(error.to_string())),
    };
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| cannot(error.to_string()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(cannot("larger than 1 MiB".into()));
    }
    // The parser's message names the line and column; a config holds no tokens.
    toml::from_str(&text).map_err(|error| cannot(one_line(&error.to_string())))
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn home_with(config: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(config) = config {
            std::fs::write(dir.path().join(CONFIG_FILE), config).unwrap();
        }
        dir
    }

    #[test]
    fn no_config_or_no_setting_is_the_file_by_default() {
        for config in [
            None,
            Some(""),
            Some("model = \"o3\"\n[features]\nweb_search = true\n"),
        ] {
            let home = home_with(config);
            let choice = choose(home.path(), None).unwrap();
            assert_eq!(choice.store, CredentialsStore::File, "{config:?}");
            assert_eq!(choice.source, ChoiceSource::Default);
            assert!(!choice.is_encrypted());
        }
    }

    #[test]
    fn the_config_names_the_store_and_an_override_wins() {
        for (word, store) in [
            ("file", CredentialsStore::File),
            ("keyring", CredentialsStore::Keyring),
            ("auto", CredentialsStore::Auto),
        ] {
            let home = home_with(Some(&format!(
                "cli_auth_credentials_store = \"{word}\"\n[features]\nsecret_auth_storage = false\n"
            )));
            let choice = choose(home.path(), None).unwrap();
            assert_eq!(
                (choice.store, &choice.source),
                (store, &ChoiceSource::Config)
            );
            assert!(choice.describe_source().contains("config.toml"));
            let over = choose(
                home.path(),
                Some((CredentialsStore::Keyring, "--credentials-store".into())),
            )
            .unwrap();
            assert_eq!(over.store, CredentialsStore::Keyring);
            assert_eq!(
                over.source,
                ChoiceSource::Override("--credentials-store".into())
            );
        }
    }

    #[test]
    fn a_broken_config_is_an_error_naming_it_unless_overridden_to_the_file() {
        for broken in [
            "cli_auth_credentials_store = keyring\n",
            "cli_auth_credentials_store = \"vault\"\n",
            "cli_auth_credentials_store = \"ephemeral\"\n",
            "[features]\nsecret_auth_storage = \"yes\"\n",
        ] {
            let home = home_with(Some(broken));
            let error = choose(home.path(), None).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{broken}");
            assert!(error.to_string().contains("config.toml"), "{error}");
            assert!(!error.to_string().contains('\n'), "{error}");
            let file = choose(
                home.path(),
                Some((CredentialsStore::File, "--credentials-store".into())),
            )
            .unwrap();
            assert_eq!(file.store, CredentialsStore::File);
        }
    }

    #[test]
    fn secret_auth_storage_with_the_keyring_chooses_the_encrypted_file() {
        let home = home_with(Some(
            "cli_auth_credentials_store = \"auto\"\n[features]\nsecret_auth_storage = true\n",
        ));
        let choice = choose(home.path(), None).unwrap();
        assert!(choice.secret_auth_storage);
        assert!(choice.is_encrypted());
        // The file store does not use it.
        let file = home_with(Some("[features]\nsecret_auth_storage = true\n"));
        assert!(!choose(file.path(), None).unwrap().is_encrypted());
        // Off, it is the keyring item.
        let off = home_with(Some(
            "cli_auth_credentials_store = \"keyring\"\n[features]\nsecret_auth_storage = false\n",
        ));
        assert!(!choose(off.path(), None).unwrap().is_encrypted());
    }
}
