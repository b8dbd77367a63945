//! macOS (the login keychain's generic password) and Windows (Credential Manager's generic
//! credential): Codex's item through the `keyring` crate 3.6 (`apple-native`,
//! `windows-native`), as Codex reaches it: `Entry::new("Codex Auth", account)`, the secret as a
//! password string. `keyring`'s calls block, so each runs on a blocking thread; the caller
//! bounds it. Compiled and linted here, not run.

use super::{BackendError, KeyringItem};

/// How the keyring is named in messages.
#[cfg(target_os = "macos")]
pub(super) const NAME: &str = "macOS Keychain";
/// How the keyring is named in messages.
#[cfg(windows)]
pub(super) const NAME: &str = "Windows Credential Manager";

fn entry(item: &KeyringItem) -> Result<::keyring::Entry, BackendError> {
    ::keyring::Entry::new(&item.service, &item.account).map_err(|error| map(&error))
}

fn map(error: &::keyring::Error) -> BackendError {
    match error {
        ::keyring::Error::NoStorageAccess(_) => {
            BackendError::Locked(format!("the keychain refused access ({error})"))
        }
        ::keyring::Error::PlatformFailure(_) => {
            BackendError::Unavailable(format!("the keychain failed ({error})"))
        }
        other => BackendError::Failed(format!("the keychain: {other}")),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| Err(BackendError::Failed("the keychain call panicked".into())))
}

pub(super) async fn load(item: &KeyringItem) -> Result<Option<Vec<u8>>, BackendError> {
    let item = item.clone();
    blocking(move || match entry(&item)?.get_password() {
        Ok(password) => Ok(Some(password.into_bytes())),
        Err(::keyring::Error::NoEntry) => Ok(None),
        Err(error) => Err(map(&error)),
    })
    .await
}

pub(super) async fn save(item: &KeyringItem, secret: &[u8]) -> Result<(), BackendError> {
    let item = item.clone();
    let password = String::from_utf8(secret.to_vec())
        .map_err(|_| BackendError::Failed("the document is not UTF-8".into()))?;
    // Updates the existing item in place (the keychain keeps its access list).
    blocking(move || entry(&item)?.set_password(&password).map_err(|e| map(&e))).await
}

pub(super) async fn delete(item: &KeyringItem) -> Result<bool, BackendError> {
    let item = item.clone();
    blocking(move || match entry(&item)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(::keyring::Error::NoEntry) => Ok(false),
        Err(error) => Err(map(&error)),
    })
    .await
}
