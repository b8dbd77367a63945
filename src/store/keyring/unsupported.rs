//! Platforms without a keyring backend here: every call says so.

use super::{BackendError, KeyringItem};

/// How the keyring is named in messages.
pub(super) const NAME: &str = "no keyring on this platform";

fn unsupported() -> BackendError {
    BackendError::Unavailable("authstore has no keyring backend for this platform".into())
}

pub(super) async fn load(_item: &KeyringItem) -> Result<Option<Vec<u8>>, BackendError> {
    Err(unsupported())
}

pub(super) async fn save(_item: &KeyringItem, _secret: &[u8]) -> Result<(), BackendError> {
    Err(unsupported())
}

pub(super) async fn delete(_item: &KeyringItem) -> Result<bool, BackendError> {
    Err(unsupported())
}
