//! Restoring a backup into an empty data directory.

use super::manifest::Manifest;
use super::verify::{load_index, load_store};
use super::{BackupError, Target, blob_key, io, sha256};
use crate::objects::Objects;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path};

/// Restores backup `stamp` (default: the newest) into `data_dir`, which must
/// be empty or missing. Objects go to `objects` (default:
/// `data_dir/objects`). Every hash is checked before anything is written.
pub async fn restore(
    target: &Target,
    stamp: Option<&str>,
    data_dir: &Path,
    objects: Option<Objects>,
) -> Result<Manifest, BackupError> {
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir).map_err(io(data_dir))?;
        if entries.next().is_some() {
            return Err(BackupError::Refused(format!(
                "{} is not empty; restore only into an empty or new directory",
                data_dir.display()
            )));
        }
    }
    let stamp = match stamp {
        Some(s) => s.to_string(),
        None => super::list(target)
            .await?
            .pop()
            .ok_or_else(|| BackupError::Refused(format!("no backup found in {}", target.name)))?,
    };
    let manifest = super::manifest(target, &stamp).await?;
    let known = crate::store::MIGRATIONS.last().map_or(0, |m| m.version);
    if manifest.schema_version > known {
        return Err(BackupError::Refused(format!(
            "backup {stamp} is at schema version {}, newer than this invigil knows ({known}); \
             install invigil {} or later to restore it",
            manifest.schema_version, manifest.version
        )));
    }
    let index = load_index(target, &manifest).await?;
    let store = load_store(target, &manifest).await?;

    mkdir(data_dir)?;
    write_private(&data_dir.join(crate::store::DATABASE_FILE), &store)?;
    for (rel, entry) in &index.files {
        let rel_path = Path::new(rel);
        if rel_path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(BackupError::Damaged {
                stamp,
                message: format!("file name {rel:?} leaves the data directory"),
            });
        }
        let bytes = blob(target, &stamp, &entry.sha256).await?;
        let path = data_dir.join(rel_path);
        if let Some(parent) = path.parent() {
            mkdir(parent)?;
        }
        write_private(&path, &bytes)?;
    }
    if !manifest.store_only {
        let objects = match objects {
            Some(o) => o,
            None => Objects::local(data_dir.join("objects"))?,
        };
        for (key, object) in &index.objects {
            let bytes = blob(target, &stamp, &object.entry.sha256).await?;
            objects.put(key, bytes).await?;
        }
    }
    Ok(manifest)
}

/// A blob whose content is checked against its hash.
async fn blob(target: &Target, stamp: &str, hash: &str) -> Result<bytes::Bytes, BackupError> {
    let bytes = target.objects.get(&blob_key(hash)).await?;
    if sha256(&bytes) != hash {
        return Err(BackupError::Damaged {
            stamp: stamp.to_string(),
            message: format!("blob {hash} does not match its hash"),
        });
    }
    Ok(bytes)
}

fn mkdir(dir: &Path) -> Result<(), BackupError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

/// Writes a file readable by its owner only, and makes it durable.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(path))
}
