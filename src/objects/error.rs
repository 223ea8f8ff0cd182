//! The one error type of the object store: every message names the key, range or URI
//! part that was wrong, so an operator can act on a log line alone.

/// What can go wrong when storing or reading evidence objects.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The object does not exist.
    #[error("object `{key}` not found")]
    NotFound { key: String },

    /// The key is not one invigil accepts (see [`crate::objects::validate_key`]).
    #[error("invalid object key `{key}`: {reason}")]
    InvalidKey { key: String, reason: String },

    /// The object store URI (`MINIO_URI`) is malformed. The reason never contains the
    /// secret key.
    #[error("invalid object store URI: {reason}")]
    InvalidUri { reason: String },

    /// A ranged read asked for bytes the object does not have.
    #[error(
        "range {start}..{end} of object `{key}` is not satisfiable: the object is {size} bytes"
    )]
    RangeNotSatisfiable {
        key: String,
        start: u64,
        end: u64,
        size: u64,
    },

    /// The body stream handed to a streaming upload failed; nothing was stored.
    #[error("reading the body for object `{key}` failed: {source}")]
    Body {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A copy made for the cold tier did not read back with the source's hash; the
    /// copy was deleted and the source kept.
    #[error("copy of object `{key}` does not match: sha256 {found}, expected {expected}")]
    Mismatch {
        key: String,
        expected: String,
        found: String,
    },

    /// A filesystem operation of the local backend failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The storage backend (S3 or the local store's reader) reported an error.
    #[error("{0}")]
    Backend(String),
}

impl ObjectsError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ObjectsError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid_uri(reason: impl Into<String>) -> Self {
        ObjectsError::InvalidUri {
            reason: reason.into(),
        }
    }

    /// Maps an `object_store` error of a read of `key`, keeping "not found" apart.
    pub(crate) fn from_store(op: &str, key: &str, err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { .. } => ObjectsError::NotFound {
                key: key.to_string(),
            },
            other => ObjectsError::backend(op, key, other),
        }
    }

    /// Maps an `object_store` error of a write of `key`. A "not found" there means the
    /// bucket is missing, not the object, so it stays a backend error.
    pub(crate) fn backend(op: &str, key: &str, err: object_store::Error) -> Self {
        ObjectsError::Backend(format!("{op} object `{key}` failed: {err}"))
    }
}
