//! Schema version and migrations.
//!
//! The store records in [`META`] the version of the newest migration applied.
//! At open, [`migrate`] applies every newer migration, each in its own write
//! transaction together with the version bump, so a crash or a failing
//! migration leaves the store exactly at the previous version.

use super::catalog::META;
use super::{ReadTx, Store, StoreError, WriteTx};

/// The schema history of invigil, oldest first; append new migrations at the
/// end with the next version number, never edit or reorder shipped ones.
pub const MIGRATIONS: &[Migration] = &[];

/// Key in [`META`] holding the schema version as a big-endian u64.
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

/// One schema step: brings the data from the previous version to `version`.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// The version the store is at once this migration has run (from 1 up).
    pub version: u64,
    /// What the migration does, for error messages and logs.
    pub description: &'static str,
    /// Rewrites the data; runs inside the transaction that bumps the version.
    pub apply: fn(&mut dyn WriteTx) -> Result<(), StoreError>,
}

/// The schema version recorded in `store` (0 for a new store).
pub fn schema_version(store: &dyn Store) -> Result<u64, StoreError> {
    let tx = store.begin_read()?;
    read_version(&*tx, store.location())
}

fn read_version<T: ReadTx + ?Sized>(tx: &T, location: &str) -> Result<u64, StoreError> {
    match tx.get(META, SCHEMA_VERSION_KEY)? {
        None => Ok(0),
        Some(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(raw) => Ok(u64::from_be_bytes(raw)),
            Err(_) => Err(StoreError::Corrupt {
                location: location.to_string(),
                message: format!(
                    "{META}/{} holds {} bytes, expected 8",
                    String::from_utf8_lossy(SCHEMA_VERSION_KEY),
                    bytes.len()
                ),
            }),
        },
    }
}

/// Applies, in order, every migration above the stored version, each in its
/// own transaction with the version bump; returns the resulting version.
///
/// Refuses a store whose version is newer than the last migration known, and
/// a migration list that is not strictly increasing from 1.
pub fn migrate(store: &dyn Store, migrations: &[Migration]) -> Result<u64, StoreError> {
    let mut previous = 0;
    for m in migrations {
        if m.version <= previous {
            return Err(StoreError::Migration {
                version: m.version,
                message: format!(
                    "migration list out of order: version {} follows {previous}",
                    m.version
                ),
            });
        }
        previous = m.version;
    }
    let known = previous;
    let found = schema_version(store)?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    let location = store.location().to_string();
    for m in migrations.iter().filter(|m| m.version > found) {
        store.write(|tx| {
            // Re-read inside the transaction so the check and the bump are
            // one atomic step.
            let current = read_version(tx, &location)?;
            if current >= m.version {
                return Ok(());
            }
            (m.apply)(tx).map_err(|err| match err {
                StoreError::Migration { version, .. } if version == m.version => err,
                other => StoreError::Migration {
                    version: m.version,
                    message: format!("{}: {other}", m.description),
                },
            })?;
            tx.put(META, SCHEMA_VERSION_KEY, &m.version.to_be_bytes())
        })?;
    }
    Ok(known.max(found))
}
