//! The proctoring domain: templates, metrics and the score. No HTTP types here.

pub mod metrics;
pub mod templates;

/// Errors of the proctoring domain.
#[derive(Debug, thiserror::Error)]
pub enum ProctoringError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
}

impl ProctoringError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ProctoringError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
