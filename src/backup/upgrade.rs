//! The automatic backup before a schema upgrade.

use super::{BackupError, Options, Source, Target, snapshot_to_file, stamp_of, take};
use crate::store::catalog::ALL;
use crate::store::{Migration, RedbStore, Scan, Store, schema_version};
use std::path::{Path, PathBuf};

/// If the database at `db` holds data at a schema version older than the
/// last of `migrations`, backs up the database and the data directory's keys
/// into `DATA_DIR/backups/pre-upgrade-<from>-<to>-<time>` and returns that
/// directory. A new or empty database, or one already current, needs none.
///
/// Objects are left out: migrations change the database, never objects.
pub async fn before_upgrade(
    db: &Path,
    data_dir: &Path,
    migrations: &[Migration],
) -> Result<Option<PathBuf>, BackupError> {
    let to = migrations.last().map_or(0, |m| m.version);
    if !db.exists() {
        return Ok(None);
    }
    let store = RedbStore::open(db)?;
    let from = schema_version(&store)?;
    if from >= to || is_empty(&store)? {
        return Ok(None);
    }
    let stamp = stamp_of(time::OffsetDateTime::now_utc());
    let dir = data_dir
        .join("backups")
        .join(format!("pre-upgrade-{from}-{to}-{stamp}"));
    let scratch = data_dir
        .join("backups")
        .join(format!(".pre-upgrade-{stamp}.redb"));
    let _ = std::fs::remove_file(&scratch);
    snapshot_to_file(&store, &scratch)?;
    drop(store);
    let target =
        Target::open(dir.to_str().ok_or_else(|| {
            BackupError::Refused(format!("{} is not valid UTF-8", dir.display()))
        })?)?;
    let taken = take(
        &Source {
            store_file: scratch.clone(),
            schema_version: from,
        },
        &Options {
            data_dir: data_dir.to_path_buf(),
            objects: None,
            store_only: true,
            instance: "before upgrade".into(),
            stamp: Some(stamp),
        },
        &target,
    )
    .await;
    let _ = std::fs::remove_file(&scratch);
    taken?;
    Ok(Some(dir))
}

fn is_empty(store: &dyn Store) -> Result<bool, BackupError> {
    let tx = store.begin_read()?;
    for &tree in ALL {
        if !tx.scan(tree, &Scan::all().limit(1))?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}
