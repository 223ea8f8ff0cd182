//! Accounts and credentials. For now: the manager account created at first start.

pub mod manager;
pub mod password;

/// Errors of the account layer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
}
