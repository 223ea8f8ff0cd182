//! Rechecking backups: every hash, and every chain in the database copy.

use super::manifest::{Index, Manifest};
use super::{BackupError, FORMAT, Target, blob_key, sha256};
use crate::store::catalog::{AUDIT, PROTOCOL};
use crate::store::{RedbStore, Store, chain, schema_version};
use std::collections::BTreeSet;

/// What was checked.
#[derive(Debug, Default)]
pub struct Report {
    pub backups: Vec<String>,
    pub blobs: u64,
    pub bytes: u64,
    pub chains: u64,
}

/// Verifies backup `stamp`, or every backup in the target: manifest, database
/// and index hashes, every blob's content, the database's schema version and
/// every audit and protocol chain in it. Stops at the first fault.
pub async fn verify(target: &Target, stamp: Option<&str>) -> Result<Report, BackupError> {
    let stamps = match stamp {
        Some(s) => vec![s.to_string()],
        None => super::list(target).await?,
    };
    if stamps.is_empty() {
        return Err(BackupError::Refused(format!(
            "no backup found in {}",
            target.name
        )));
    }
    let mut report = Report::default();
    let mut checked = BTreeSet::new();
    for stamp in stamps {
        let manifest = super::manifest(target, &stamp).await?;
        let index = load_index(target, &manifest).await?;
        report.chains += check_store(target, &manifest).await?;
        let entries = index
            .objects
            .values()
            .map(|o| &o.entry)
            .chain(index.files.values());
        for entry in entries {
            if !checked.insert(entry.sha256.clone()) {
                continue;
            }
            let bytes = target
                .objects
                .get(&blob_key(&entry.sha256))
                .await
                .map_err(|e| damaged(&stamp, format!("{e}")))?;
            if sha256(&bytes) != entry.sha256 || bytes.len() as u64 != entry.size {
                return Err(damaged(
                    &stamp,
                    format!("blob {} does not match its hash", entry.sha256),
                ));
            }
            report.blobs += 1;
            report.bytes += entry.size;
        }
        report.backups.push(stamp);
    }
    Ok(report)
}

fn damaged(stamp: &str, message: String) -> BackupError {
    BackupError::Damaged {
        stamp: stamp.to_string(),
        message,
    }
}

/// The backup's index, checked against the manifest.
pub(super) async fn load_index(target: &Target, m: &Manifest) -> Result<Index, BackupError> {
    if m.format != FORMAT {
        return Err(BackupError::Refused(format!(
            "backup {} has layout {}, this invigil reads layout {FORMAT}",
            m.stamp, m.format
        )));
    }
    let bytes = target
        .objects
        .get(&format!("{}/index.json", m.stamp))
        .await
        .map_err(|e| damaged(&m.stamp, e.to_string()))?;
    if sha256(&bytes) != m.index.sha256 {
        return Err(damaged(
            &m.stamp,
            "index.json does not match its hash".into(),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| damaged(&m.stamp, format!("index.json: {e}")))
}

/// The database copy, checked against the manifest.
pub(super) async fn load_store(target: &Target, m: &Manifest) -> Result<bytes::Bytes, BackupError> {
    let bytes = target
        .objects
        .get(&format!("{}/store.redb", m.stamp))
        .await
        .map_err(|e| damaged(&m.stamp, e.to_string()))?;
    if sha256(&bytes) != m.store.sha256 || bytes.len() as u64 != m.store.size {
        return Err(damaged(
            &m.stamp,
            "store.redb does not match its hash".into(),
        ));
    }
    Ok(bytes)
}

/// Opens the database copy in a scratch file and verifies its chains;
/// returns how many chains it holds.
async fn check_store(target: &Target, m: &Manifest) -> Result<u64, BackupError> {
    let bytes = load_store(target, m).await?;
    let scratch = tempfile_dir()?;
    let path = scratch.join("store.redb");
    std::fs::write(&path, &bytes).map_err(super::io(&path))?;
    let result = (|| {
        let store = RedbStore::open(&path)?;
        let store: &dyn Store = &store;
        let version = schema_version(store)?;
        if version != m.schema_version {
            return Err(damaged(
                &m.stamp,
                format!(
                    "the database is at schema {version}, the manifest says {}",
                    m.schema_version
                ),
            ));
        }
        let tx = store.begin_read()?;
        let mut chains = 0;
        for tree in [AUDIT, PROTOCOL] {
            for scope in chain::scopes(&*tx, tree)? {
                chain::verify(&*tx, tree, &scope)
                    .map_err(|e| damaged(&m.stamp, format!("{tree} chain: {e}")))?;
                chains += 1;
            }
        }
        Ok(chains)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// A private scratch directory under the system's temporary directory.
fn tempfile_dir() -> Result<std::path::PathBuf, BackupError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "invigil-verify-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(super::io(&dir))?;
    Ok(dir)
}
