pub mod authority;
pub mod clock;
pub mod document;
pub mod error;
pub mod manager;
pub mod policy;
pub mod secret;
pub mod store;

pub use manager::{AuthManager, AuthSnapshot, ManagerOptions};
