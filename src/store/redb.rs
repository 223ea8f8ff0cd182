//! On-disk backend: one redb file, every tree a table of byte keys to byte
//! values, every commit durable before it returns.
//!
//! Commits are grouped: each transaction commits without an fsync (redb's
//! `Durability::None`, applied in order and visible at once) and then waits
//! for a durable commit that started after it; one waiting writer makes that
//! empty durable commit for everyone waiting, so N concurrent writers cost
//! one fsync instead of N. redb persists non-durable commits with the next
//! durable one, and after a crash opens at the last durable commit, so
//! every write that was acknowledged survives.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use ::redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition,
};

use super::catalog::{self, Tree};
use super::{Pair, ReadTx, Scan, Store, StoreError, WriteTx};

type Key = &'static [u8];

fn table(tree: Tree) -> TableDefinition<'static, Key, Key> {
    TableDefinition::new(tree.name())
}

/// A store kept in a redb database file; only one process may open it at a time.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    location: String,
    group: Group,
}

/// The group-commit bookkeeping: commits are numbered as they complete; a
/// durable commit covers every number handed out before it began.
#[derive(Default)]
struct Group {
    state: Mutex<GroupState>,
    synced: Condvar,
}

impl Group {
    /// The state; a writer that panicked while holding it left it consistent
    /// (every change is a single assignment).
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct GroupState {
    /// Non-durable commits completed so far.
    committed: u64,
    /// Every commit up to this number is durable.
    durable: u64,
    /// A writer is making the durable commit now.
    syncing: bool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens the database at `path`, creating the file and every catalog tree
    /// if missing; recovers from an earlier crash by itself.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        // redb documents that a plain open may panic on a file damaged
        // outside redb; report that as corruption instead of taking the
        // whole server down with an unexplained panic.
        let opened = catch_unwind(AssertUnwindSafe(|| ::redb::Builder::new().create(&path)));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(err)) => return Err(open_error(&path, err)),
            Err(_) => {
                return Err(StoreError::Corrupt {
                    location: path.display().to_string(),
                    message: "the database engine failed while reading the file".to_string(),
                });
            }
        };
        let store = RedbStore {
            db,
            location: path.display().to_string(),
            path,
            group: Group::default(),
        };
        store.create_trees()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Verifies every page checksum of the file, repairing what it can.
    /// Returns `true` if the file was intact, `false` if it was repaired.
    /// Slow (reads the whole file); needs no transaction to be open.
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        self.db
            .check_integrity()
            .map_err(|e| self.error(None, e.into()))
    }

    fn create_trees(&self) -> Result<(), StoreError> {
        let tx = self.begin_write_raw()?;
        for &tree in catalog::ALL {
            tx.tx
                .open_table(table(tree))
                .map_err(|e| self.error(Some(tree), e.into()))?;
        }
        Box::new(tx).commit()
    }

    fn begin_write_raw(&self) -> Result<RedbWrite<'_>, StoreError> {
        let mut tx = self
            .db
            .begin_write()
            .map_err(|e| self.error(None, e.into()))?;
        // Durability comes from the grouped durable commit `commit` waits for.
        tx.set_durability(Durability::None)
            .map_err(|e| self.error(None, e.into()))?;
        Ok(RedbWrite { store: self, tx })
    }

    /// Returns once the commit numbered `seq` is durable, making the durable
    /// commit itself when no other writer is already making one.
    fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut state = self.group.lock();
        loop {
            if state.durable >= seq {
                return Ok(());
            }
            if state.syncing {
                state = self
                    .group
                    .synced
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.syncing = true;
            let target = state.committed;
            drop(state);
            let result = self.durable_commit();
            state = self.group.lock();
            state.syncing = false;
            if result.is_ok() {
                state.durable = state.durable.max(target);
            }
            self.group.synced.notify_all();
            // On failure the others retry the durable commit themselves.
            result?;
        }
    }

    /// An empty transaction committed durably: persists every non-durable
    /// commit before it.
    fn durable_commit(&self) -> Result<(), StoreError> {
        let mut tx = self
            .db
            .begin_write()
            .map_err(|e| self.error(None, e.into()))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| self.error(None, e.into()))?;
        tx.commit().map_err(|e| self.error(None, e.into()))
    }

    /// Turns a redb error into ours, naming the file and, if known, the tree.
    fn error(&self, tree: Option<Tree>, err: ::redb::Error) -> StoreError {
        let in_tree = tree.map(|t| format!(" (tree {t})")).unwrap_or_default();
        match err {
            ::redb::Error::DatabaseAlreadyOpen | ::redb::Error::LockProtocolMismatch => {
                StoreError::Locked {
                    path: self.path.clone(),
                }
            }
            ::redb::Error::Corrupted(message) => StoreError::Corrupt {
                location: self.location.clone(),
                message: format!("{message}{in_tree}"),
            },
            ::redb::Error::Io(source) => StoreError::Io {
                path: self.path.clone(),
                source,
            },
            ::redb::Error::ValueTooLarge(size) => StoreError::TooLarge {
                tree: tree.map_or("?", Tree::name),
                size,
            },
            other => StoreError::Backend(format!("{}{in_tree}: {other}", self.location)),
        }
    }
}

fn open_error(path: &Path, err: DatabaseError) -> StoreError {
    match err {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        // redb reports a file that is not a redb database as invalid data.
        DatabaseError::Storage(::redb::StorageError::Io(source))
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Open {
                path: path.to_path_buf(),
                message: source.to_string(),
            }
        }
        DatabaseError::Storage(::redb::StorageError::Io(source)) => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
        DatabaseError::Storage(::redb::StorageError::Corrupted(message)) => StoreError::Corrupt {
            location: path.display().to_string(),
            message,
        },
        other => StoreError::Open {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

impl Store for RedbStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn begin_read(&self) -> Result<Box<dyn ReadTx + '_>, StoreError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| self.error(None, e.into()))?;
        Ok(Box::new(RedbRead { store: self, tx }))
    }

    fn begin_write(&self) -> Result<Box<dyn WriteTx + '_>, StoreError> {
        Ok(Box::new(self.begin_write_raw()?))
    }
}

/// Reads `scan` out of any readable table (of a read or a write transaction).
fn scan_table(
    table: &impl ReadableTable<Key, Key>,
    scan: &Scan,
) -> Result<Vec<Pair>, ::redb::StorageError> {
    if scan.is_empty_range() {
        return Ok(Vec::new());
    }
    let range = table.range((scan.start(), scan.end()))?;
    let limit = scan.max_count().unwrap_or(usize::MAX);
    let iter: Box<dyn Iterator<Item = _>> = if scan.is_reverse() {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    let mut out = Vec::new();
    for item in iter.take(limit) {
        let (key, value) = item?;
        out.push((key.value().to_vec(), value.value().to_vec()));
    }
    Ok(out)
}

struct RedbRead<'s> {
    store: &'s RedbStore,
    tx: ::redb::ReadTransaction,
}

impl RedbRead<'_> {
    fn open(&self, tree: Tree) -> Result<::redb::ReadOnlyTable<Key, Key>, StoreError> {
        self.tx
            .open_table(table(tree))
            .map_err(|e| self.store.error(Some(tree), e.into()))
    }
}

impl ReadTx for RedbRead<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.open(tree)?;
        let value = table
            .get(key)
            .map_err(|e| self.store.error(Some(tree), e.into()))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan(&self, tree: Tree, scan: &Scan) -> Result<Vec<Pair>, StoreError> {
        scan_table(&self.open(tree)?, scan).map_err(|e| self.store.error(Some(tree), e.into()))
    }
}

struct RedbWrite<'s> {
    store: &'s RedbStore,
    tx: ::redb::WriteTransaction,
}

impl RedbWrite<'_> {
    // redb allows a table to be open only once per transaction, so each
    // operation opens and closes it; the lookup is cheap next to the fsync.
    fn open(&self, tree: Tree) -> Result<::redb::Table<'_, Key, Key>, StoreError> {
        self.tx
            .open_table(table(tree))
            .map_err(|e| self.store.error(Some(tree), e.into()))
    }
}

impl ReadTx for RedbWrite<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.open(tree)?;
        let value = table
            .get(key)
            .map_err(|e| self.store.error(Some(tree), e.into()))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan(&self, tree: Tree, scan: &Scan) -> Result<Vec<Pair>, StoreError> {
        scan_table(&self.open(tree)?, scan).map_err(|e| self.store.error(Some(tree), e.into()))
    }
}

impl WriteTx for RedbWrite<'_> {
    fn put(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut table = self.open(tree)?;
        table
            .insert(key, value)
            .map_err(|e| self.store.error(Some(tree), e.into()))?;
        Ok(())
    }

    fn delete(&mut self, tree: Tree, key: &[u8]) -> Result<bool, StoreError> {
        let mut table = self.open(tree)?;
        let old = table
            .remove(key)
            .map_err(|e| self.store.error(Some(tree), e.into()))?;
        Ok(old.is_some())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let RedbWrite { store, tx } = *self;
        tx.commit().map_err(|e| store.error(None, e.into()))?;
        // Numbered after the commit completed, so any durable commit that
        // begins from here on covers it.
        let seq = {
            let mut state = store.group.lock();
            state.committed += 1;
            state.committed
        };
        store.wait_durable(seq)
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        let RedbWrite { store, tx } = *self;
        tx.abort().map_err(|e| store.error(None, e.into()))
    }
}
