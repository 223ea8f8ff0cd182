//! The manifest and index of one backup.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The layout version of backups written by this build.
pub const FORMAT: u32 = 1;

/// `backup.json`: what a backup holds, written after everything else.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    /// The backup's name in the target, e.g. `20261204T190600Z`.
    pub stamp: String,
    /// When it was taken (RFC 3339, UTC) and as Unix seconds.
    pub created: String,
    pub created_unix: u64,
    /// The machine and the manager's host name of the instance backed up.
    pub instance: String,
    /// invigil's version that wrote it.
    pub version: String,
    /// The schema version of the database in it.
    pub schema_version: u64,
    /// SHA-256 and size of `store.redb`.
    pub store: Entry,
    /// SHA-256 and size of `index.json`.
    pub index: Entry,
    pub object_count: u64,
    pub object_bytes: u64,
    /// Whether objects were left out (the automatic backup before an upgrade:
    /// migrations change the database, never objects).
    pub store_only: bool,
}

/// A content hash and a size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub sha256: String,
    pub size: u64,
}

/// `index.json`: object keys and data-directory files, each to its content.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Index {
    /// Object key → content, plus the object's e-tag when it was read, so the
    /// next backup can skip reading an unchanged object.
    pub objects: BTreeMap<String, IndexedObject>,
    /// Path relative to the data directory (keys, certificates) → content.
    pub files: BTreeMap<String, Entry>,
}

/// One object in the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexedObject {
    #[serde(flatten)]
    pub entry: Entry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}
