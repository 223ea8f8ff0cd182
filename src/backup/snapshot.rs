//! A consistent copy of a store: every tree, every key, from one read
//! transaction, written into another store through the `Store` trait.

use super::{BackupError, io};
use crate::store::catalog::ALL;
use crate::store::{RedbStore, Scan, Store, StoreError};
use std::ops::Bound;
use std::path::Path;

/// Pairs read per scan, so a large tree is never held in memory at once.
const PAGE: usize = 1000;

/// Copies every pair of every tree of `src`, as one snapshot, into `dst` in
/// one write transaction; returns the number of pairs.
pub fn copy_store(src: &dyn Store, dst: &dyn Store) -> Result<u64, StoreError> {
    let read = src.begin_read()?;
    let mut write = dst.begin_write()?;
    let mut count = 0;
    for &tree in ALL {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let start = match &after {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => Bound::Unbounded,
            };
            let page = read.scan(tree, &Scan::bounds(start, Bound::Unbounded).limit(PAGE))?;
            for (k, v) in &page {
                write.put(tree, k, v)?;
            }
            count += page.len() as u64;
            if page.len() < PAGE {
                break;
            }
            after = page.into_iter().last().map(|(k, _)| k);
        }
    }
    write.commit()?;
    Ok(count)
}

/// Writes a snapshot of `src` into a new database file at `path` (which must
/// not exist); returns the number of pairs.
pub fn snapshot_to_file(src: &dyn Store, path: &Path) -> Result<u64, BackupError> {
    if path.exists() {
        return Err(BackupError::Refused(format!(
            "{} already exists",
            path.display()
        )));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let dst = RedbStore::open(path)?;
    let n = copy_store(src, &dst)?;
    drop(dst);
    Ok(n)
}
