pub mod authority;
pub mod changes;
pub mod clock;
mod dirwatch;
pub mod document;
pub mod error;
pub mod manager;
pub mod policy;
pub mod secret;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod store;

pub use manager::{AuthManager, AuthSnapshot, ManagerOptions};
