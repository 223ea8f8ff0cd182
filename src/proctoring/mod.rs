//! The proctoring domain: templates, sessions and their status machine,
//! metrics and the score, the protocol. No HTTP types here.

pub mod access;
pub mod attachments;
pub mod bundle;
pub mod evidence_key;
pub mod identity;
pub mod links;
pub mod live;
pub mod metrics;
pub mod protocol;
pub mod reports;
pub mod retention;
pub mod sessions;
pub mod snapshots;
pub mod templates;
pub mod tiering;
pub mod uploads;
pub mod webhooks;

/// Errors of the proctoring domain.
#[derive(Debug, thiserror::Error)]
pub enum ProctoringError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot {action} a {from} session; allowed: {}", if allowed.is_empty() { "nothing".to_string() } else { allowed.join(", ") })]
    IllegalMove {
        from: &'static str,
        action: &'static str,
        allowed: Vec<&'static str>,
    },
    #[error("{0}")]
    NotOpen(String),
    #[error(transparent)]
    Host(crate::auth::AuthError),
}

impl ProctoringError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ProctoringError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
