//! The one error type of the store module.

use std::path::PathBuf;

/// Everything that can go wrong in the store; each message names the file,
/// tree or version involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open database {}: {message}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What the backend reported.
        message: String,
    },

    /// Another process (or another handle in this one) has the file open.
    #[error(
        "database {} is in use by another process (is another invigil running with the same data directory?)",
        path.display()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },

    /// The file or a value in it is damaged.
    #[error("database {location} is corrupt: {message}")]
    Corrupt {
        /// The database file, or "(in memory)".
        location: String,
        /// What was found to be wrong.
        message: String,
    },

    /// An I/O error from the operating system.
    #[error("i/o error on database {}: {source}", path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A key or value exceeds what the backend can store.
    #[error("value of {size} bytes is too large for tree {tree}")]
    TooLarge {
        /// The tree written to.
        tree: &'static str,
        /// The size of the key plus value.
        size: usize,
    },

    /// A stored value could not be encoded or decoded as JSON.
    #[error("bad JSON value in tree {tree}: {message}")]
    Codec {
        /// The tree read or written.
        tree: &'static str,
        /// The serde error.
        message: String,
    },

    /// The store was written by a newer invigil than this one.
    #[error(
        "database schema version {found} is newer than this invigil knows (up to {known}); upgrade invigil"
    )]
    SchemaTooNew {
        /// The version found in the store.
        found: u64,
        /// The newest version this program knows.
        known: u64,
    },

    /// A migration failed; the store stays at the version before it.
    #[error("schema migration to version {version} failed: {message}")]
    Migration {
        /// The version the migration would have reached.
        version: u64,
        /// Why it failed.
        message: String,
    },

    /// Any other backend failure, with its context.
    #[error("database error: {0}")]
    Backend(String),
}
