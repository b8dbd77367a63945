//! Linux: Codex's item in the Secret Service (gnome-keyring, KeePassXC, KWallet's bridge) over
//! the D-Bus session bus, through the `secret-service` crate's async API, following the
//! `keyring` crate 3.6.3's `SsCredential` (what Codex uses): search by `target`, `service` and
//! `username`; exactly one match is the item; none is no login; a new item goes into the
//! collection with the `default` alias, with the four attributes and `keyring`'s label; the
//! secret is `text/plain`. Unlike `keyring`, a locked item or collection is reported, never
//! unlocked through a prompt (a prompt with no desktop can wait forever).

use std::collections::HashMap;

use secret_service::{EncryptionType, Error as SsError, Item, SecretService};

use super::{BackendError, KeyringItem};

/// How the keyring is named in messages.
pub(super) const NAME: &str = "Secret Service";

const CONTENT_TYPE: &str = "text/plain";

async fn connect() -> Result<SecretService<'static>, BackendError> {
    // The Diffie-Hellman session (the `crypto-rust` feature, as Codex's `keyring` has it): the
    // secret travels over the bus encrypted.
    SecretService::connect(EncryptionType::Dh)
        .await
        .map_err(|error| {
            BackendError::Unavailable(match error {
                SsError::Unavailable => "no D-Bus session bus or Secret Service found".to_owned(),
                other => format!("no Secret Service answers on the D-Bus session bus ({other})"),
            })
        })
}

fn failed(what: &str, error: SsError) -> BackendError {
    match error {
        SsError::Locked => BackendError::Locked(format!("{what}: the keyring is locked")),
        SsError::Prompt => {
            BackendError::Locked(format!("{what}: the keyring asked for a password"))
        }
        other => {
            let message = other.to_string();
            if message.contains("IsLocked") {
                BackendError::Locked(format!("{what}: the keyring is locked"))
            } else {
                BackendError::Failed(format!("{what}: {message}"))
            }
        }
    }
}

fn attributes(item: &KeyringItem) -> HashMap<&str, &str> {
    HashMap::from([
        ("target", item.target.as_str()),
        ("service", item.service.as_str()),
        ("username", item.account.as_str()),
    ])
}

/// The one unlocked item that is `item`, or `None`.
async fn find<'s>(
    service: &'s SecretService<'_>,
    item: &KeyringItem,
) -> Result<Option<Item<'s>>, BackendError> {
    let found = service
        .search_items(attributes(item))
        .await
        .map_err(|error| failed("searching the keyring", error))?;
    let count = found.unlocked.len() + found.locked.len();
    if count > 1 {
        return Err(BackendError::Failed(format!(
            "{count} keyring items match (service, account, target); remove all but one"
        )));
    }
    if !found.locked.is_empty() {
        return Err(BackendError::Locked(
            "the keyring collection holding the item is locked".to_owned(),
        ));
    }
    Ok(found.unlocked.into_iter().next())
}

/// The item's secret, `None` when there is no item.
pub(super) async fn load(item: &KeyringItem) -> Result<Option<Vec<u8>>, BackendError> {
    let service = connect().await?;
    match find(&service, item).await? {
        None => Ok(None),
        Some(found) => found
            .get_secret()
            .await
            .map(Some)
            .map_err(|error| failed("reading the item", error)),
    }
}

/// Sets the item's secret in place, or creates the item when there is none.
pub(super) async fn save(item: &KeyringItem, secret: &[u8]) -> Result<(), BackendError> {
    let service = connect().await?;
    if let Some(found) = find(&service, item).await? {
        return found
            .set_secret(secret, CONTENT_TYPE)
            .await
            .map_err(|error| failed("updating the item", error));
    }
    let collection = service
        .get_default_collection()
        .await
        .map_err(|error| failed("opening the default collection", error))?;
    if collection
        .is_locked()
        .await
        .map_err(|error| failed("opening the default collection", error))?
    {
        return Err(BackendError::Locked(
            "the keyring's default collection is locked".to_owned(),
        ));
    }
    let mut all = attributes(item);
    all.insert("application", "rust-keyring");
    collection
        .create_item(&item.label(), all, secret, true, CONTENT_TYPE)
        .await
        .map(drop)
        .map_err(|error| failed("creating the item", error))
}

/// Deletes the item; whether there was one.
pub(super) async fn delete(item: &KeyringItem) -> Result<bool, BackendError> {
    let service = connect().await?;
    match find(&service, item).await? {
        None => Ok(false),
        Some(found) => found
            .delete()
            .await
            .map(|()| true)
            .map_err(|error| failed("deleting the item", error)),
    }
}
