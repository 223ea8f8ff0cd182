//! Taking a backup: the database snapshot, the data directory's own files
//! and the objects, each copied by content hash only when the target lacks it.

use super::manifest::{Entry, Index, IndexedObject, Manifest};
use super::{BackupError, FORMAT, Target, blob_key, io, sha256};
use crate::objects::{Objects, ObjectsError};
use bytes::Bytes;
use std::path::{Path, PathBuf};

/// Data-directory files and folders a backup keeps besides the database: the
/// keys and certificates that would be regenerated differently if lost.
pub const DATA_FILES: &[&str] = &["session.key", "turn.secret", "tls", "ca", "acme"];

/// The database snapshot to back up (already written to a file).
pub struct Source {
    pub store_file: PathBuf,
    pub schema_version: u64,
}

/// What else goes into the backup.
pub struct Options {
    pub data_dir: PathBuf,
    /// The instance's objects (`None`: there are none yet).
    pub objects: Option<Objects>,
    /// Leave objects out (before an upgrade: migrations never change them).
    pub store_only: bool,
    /// Names the instance in the manifest.
    pub instance: String,
    /// The backup's name; default: the current UTC time.
    pub stamp: Option<String>,
}

/// Takes one backup into `target`; returns its manifest.
pub async fn take(
    source: &Source,
    options: &Options,
    target: &Target,
) -> Result<Manifest, BackupError> {
    let now = time::OffsetDateTime::now_utc();
    let existing = super::list(target).await?;
    let stamp = match &options.stamp {
        Some(s) => s.clone(),
        // Two backups in one second get `-2`, `-3`…, which still sort by time.
        None => {
            let base = stamp_of(now);
            let mut stamp = base.clone();
            let mut n = 1;
            while existing.contains(&stamp) {
                n += 1;
                stamp = format!("{base}-{n}");
            }
            stamp
        }
    };
    if existing.contains(&stamp) {
        return Err(BackupError::Refused(format!(
            "a backup named {stamp} already exists in {}",
            target.name
        )));
    }
    let previous = match existing.last() {
        Some(last) => previous_index(target, last).await,
        None => Index::default(),
    };

    let store_bytes = read(&source.store_file)?;
    let store = Entry {
        sha256: sha256(&store_bytes),
        size: store_bytes.len() as u64,
    };
    target
        .objects
        .put(&format!("{stamp}/store.redb"), store_bytes)
        .await?;

    let mut index = Index::default();
    for path in data_files(&options.data_dir)? {
        let bytes = read(&path)?;
        let entry = put_blob(target, bytes).await?;
        let rel = path
            .strip_prefix(&options.data_dir)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        index.files.insert(rel, entry);
    }

    let mut object_bytes = 0;
    if let Some(objects) = options.objects.as_ref().filter(|_| !options.store_only) {
        for info in objects.list("").await? {
            let reuse = previous.objects.get(&info.key).filter(|p| {
                p.e_tag.is_some() && p.e_tag == info.e_tag && p.entry.size == info.size
            });
            let entry = match reuse {
                Some(p) if target.objects.exists(&blob_key(&p.entry.sha256)).await? => {
                    p.entry.clone()
                }
                _ => match objects.get(&info.key).await {
                    Ok(bytes) => put_blob(target, bytes).await?,
                    // Deleted since it was listed: it is not in the snapshot either.
                    Err(ObjectsError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            object_bytes += entry.size;
            index.objects.insert(
                info.key.clone(),
                IndexedObject {
                    entry,
                    e_tag: info.e_tag.clone(),
                },
            );
        }
    }

    let index_bytes = Bytes::from(serde_json::to_vec_pretty(&index).expect("index encodes"));
    let index_entry = Entry {
        sha256: sha256(&index_bytes),
        size: index_bytes.len() as u64,
    };
    target
        .objects
        .put(&format!("{stamp}/index.json"), index_bytes)
        .await?;
    let manifest = Manifest {
        format: FORMAT,
        stamp: stamp.clone(),
        created: now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        created_unix: now.unix_timestamp().max(0) as u64,
        instance: options.instance.clone(),
        version: crate::VERSION.to_string(),
        schema_version: source.schema_version,
        store,
        index: index_entry,
        object_count: index.objects.len() as u64,
        object_bytes,
        store_only: options.store_only,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest encodes");
    target
        .objects
        .put(&format!("{stamp}/backup.json"), bytes.into())
        .await?;
    Ok(manifest)
}

/// `20261204T190600Z`: sorts by time, and is a valid object key.
pub fn stamp_of(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The index of the last backup, to skip re-reading unchanged objects; a
/// damaged one only costs reading everything again.
async fn previous_index(target: &Target, stamp: &str) -> Index {
    match target.objects.get(&format!("{stamp}/index.json")).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => Index::default(),
    }
}

/// Stores `bytes` under its hash unless the target has it already.
async fn put_blob(target: &Target, bytes: Bytes) -> Result<Entry, BackupError> {
    let entry = Entry {
        sha256: sha256(&bytes),
        size: bytes.len() as u64,
    };
    let key = blob_key(&entry.sha256);
    if !target.objects.exists(&key).await? {
        target.objects.put(&key, bytes).await?;
    }
    Ok(entry)
}

fn read(path: &Path) -> Result<Bytes, BackupError> {
    std::fs::read(path).map(Bytes::from).map_err(io(path))
}

/// Every regular file named by [`DATA_FILES`] under `data_dir`, recursively.
fn data_files(data_dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = DATA_FILES.iter().map(|n| data_dir.join(n)).collect();
    while let Some(path) = todo.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&path)(e)),
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(io(&path))? {
                todo.push(entry.map_err(io(&path))?.path());
            }
        } else if meta.is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            // Half-written temporary files are not part of the state.
            if !name.starts_with('.') {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}
