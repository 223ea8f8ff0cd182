//! Backups of a whole instance and their restore.
//!
//! A backup is written into a *target*, itself an object store (a directory or
//! an S3 bucket), laid out as:
//!
//! - `blobs/<sha256>`: objects and data-directory files, by content, shared by
//!   every backup in the target (so a nightly backup copies only what is new);
//! - `<stamp>/store.redb`: the database, every tree and key from one read
//!   transaction, written into a fresh store through the `Store` trait;
//! - `<stamp>/index.json`: object keys and data-directory files → content hash;
//! - `<stamp>/backup.json`: the manifest, written last, so a backup without one
//!   is incomplete and ignored.
//!
//! The running daemon holds the database; it writes the snapshot on request
//! over its admin socket, and this module copies everything else.

mod manifest;
mod restore;
mod snapshot;
mod take;
mod upgrade;
mod verify;

pub use manifest::{Entry, FORMAT, Index, IndexedObject, Manifest};
pub use restore::restore;
pub use snapshot::{copy_store, snapshot_to_file};
pub use take::{DATA_FILES, Options, Source, stamp_of, take};
pub use upgrade::before_upgrade;
pub use verify::{Report, verify};

use crate::objects::{Objects, ObjectsError};
use std::path::{Path, PathBuf};

/// Everything that can go wrong while backing up, verifying or restoring.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Objects(#[from] ObjectsError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backup target {target}: {message}")]
    Target { target: String, message: String },
    #[error("{0}")]
    Refused(String),
    #[error("backup {stamp} is damaged: {message}")]
    Damaged { stamp: String, message: String },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where backups go: a directory, or an S3 bucket (`s3://` is not used; the
/// same `http(s)://key:secret@host/bucket` form as `MINIO_URI`).
pub struct Target {
    pub objects: Objects,
    pub name: String,
}

impl Target {
    /// A directory path, or an `http://`/`https://` S3 URI.
    pub fn open(spec: &str) -> Result<Target, BackupError> {
        if spec.starts_with("http://") || spec.starts_with("https://") {
            let objects = Objects::from_minio_uri(spec).map_err(|e| BackupError::Target {
                target: redact(spec),
                message: e.to_string(),
            })?;
            return Ok(Target {
                objects,
                name: redact(spec),
            });
        }
        let dir = Path::new(spec);
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            // Backups hold password hashes and keys: only their owner reads them.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
        }
        Ok(Target {
            objects: Objects::local(dir)?,
            name: dir.display().to_string(),
        })
    }
}

impl Target {
    /// Like [`Target::open`], but a directory must exist already.
    pub fn open_existing(spec: &str) -> Result<Target, BackupError> {
        if !spec.starts_with("http://")
            && !spec.starts_with("https://")
            && !Path::new(spec).is_dir()
        {
            return Err(BackupError::Target {
                target: spec.to_string(),
                message: "no such directory".into(),
            });
        }
        Target::open(spec)
    }
}

/// The URI without its credentials, for messages.
fn redact(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "(unparsable URI)".to_string(),
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The blob key of a content hash.
fn blob_key(hash: &str) -> String {
    format!("blobs/{hash}")
}

/// The stamps of every complete backup in `target`, oldest first.
pub async fn list(target: &Target) -> Result<Vec<String>, BackupError> {
    let mut stamps: Vec<String> = target
        .objects
        .list("")
        .await?
        .into_iter()
        .filter_map(|o| o.key.strip_suffix("/backup.json").map(str::to_string))
        .filter(|s| !s.contains('/'))
        .collect();
    stamps.sort();
    Ok(stamps)
}

/// The manifest of backup `stamp`.
pub async fn manifest(target: &Target, stamp: &str) -> Result<Manifest, BackupError> {
    let bytes = target.objects.get(&format!("{stamp}/backup.json")).await?;
    serde_json::from_slice(&bytes).map_err(|e| BackupError::Damaged {
        stamp: stamp.to_string(),
        message: format!("backup.json: {e}"),
    })
}

#[cfg(test)]
mod tests;

/// Key in META holding the last backup taken ([`LastBackup`]).
pub const LAST_BACKUP_KEY: &[u8] = b"last_backup";

/// The last backup taken, as recorded in the database for `invigil doctor`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LastBackup {
    pub target: String,
    pub stamp: String,
    pub created_unix: u64,
    pub object_count: u64,
}

/// Records `manifest` as the last backup taken into `target`.
pub fn record_last(
    store: &dyn crate::store::Store,
    target: &str,
    manifest: &Manifest,
) -> Result<(), crate::store::StoreError> {
    let last = LastBackup {
        target: target.to_string(),
        stamp: manifest.stamp.clone(),
        created_unix: manifest.created_unix,
        object_count: manifest.object_count,
    };
    store.write(|tx| tx.put_json(crate::store::catalog::META, LAST_BACKUP_KEY, &last))
}

/// The last backup recorded, if any.
pub fn last(
    store: &dyn crate::store::Store,
) -> Result<Option<LastBackup>, crate::store::StoreError> {
    store.read(|tx| tx.get_json(crate::store::catalog::META, LAST_BACKUP_KEY))
}
