//! Durable key-value storage: named trees of byte keys and values, with
//! atomic transactions across trees.
//!
//! The rest of invigil holds an `Arc<dyn Store>` and never sees the backend.
//! Two backends exist: [`RedbStore`] (a file on disk, every commit fsynced)
//! and [`MemoryStore`] (for tests). Both give the same guarantees: a write
//! transaction commits all its writes across all trees or none of them, its
//! uncommitted writes are invisible to others, and a read transaction sees
//! one consistent snapshot.
//!
//! Every call blocks (commits wait for fsync); async code should run store
//! work on a blocking thread.

pub mod catalog;
pub mod chain;
mod error;
mod memory;
pub mod migrate;
mod redb;

#[cfg(all(test, unix))]
mod crash_test;
#[cfg(test)]
mod tests;

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

/// The database file in DATA_DIR.
pub const DATABASE_FILE: &str = "invigil.redb";
pub use catalog::Tree;
pub use error::StoreError;
pub use memory::MemoryStore;
pub use migrate::{MIGRATIONS, Migration, migrate, schema_version};
pub use redb::RedbStore;

/// A key and its value, as returned by scans.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A storage backend; shared as `Arc<dyn Store>`.
pub trait Store: Send + Sync {
    /// Where the data lives, for messages: the file path, or "(in memory)".
    fn location(&self) -> &str;

    /// Starts a read transaction that sees one consistent snapshot.
    fn begin_read(&self) -> Result<Box<dyn ReadTx + '_>, StoreError>;

    /// Starts a write transaction; blocks while another one is open.
    ///
    /// Dropping it without [`WriteTx::commit`] discards its writes.
    fn begin_write(&self) -> Result<Box<dyn WriteTx + '_>, StoreError>;
}

/// Reads inside a transaction.
pub trait ReadTx {
    /// The value stored under `key` in `tree`, if any.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// The pairs of `tree` selected by `scan`, in key order (or reverse).
    fn scan(&self, tree: Tree, scan: &Scan) -> Result<Vec<Pair>, StoreError>;
}

/// Reads and writes inside a transaction; reads see this transaction's writes.
pub trait WriteTx: ReadTx {
    /// Stores `value` under `key`, replacing any previous value.
    fn put(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`; returns whether it was present.
    fn delete(&mut self, tree: Tree, key: &[u8]) -> Result<bool, StoreError>;

    /// Makes every write of this transaction durable and visible, atomically.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// Discards every write of this transaction.
    fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

/// Which pairs a scan returns: key bounds, direction and a count limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    reverse: bool,
    limit: Option<usize>,
}

impl Scan {
    /// Every pair of the tree.
    pub fn all() -> Scan {
        Scan {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            reverse: false,
            limit: None,
        }
    }

    /// The pairs whose keys lie in `range`, e.g. `Scan::range(b"a".as_slice()..b"c")`.
    pub fn range<K: AsRef<[u8]> + ?Sized>(range: impl RangeBounds<K>) -> Scan {
        fn owned<K: AsRef<[u8]> + ?Sized>(b: Bound<&K>) -> Bound<Vec<u8>> {
            match b {
                Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
                Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
                Bound::Unbounded => Bound::Unbounded,
            }
        }
        Scan {
            start: owned(range.start_bound()),
            end: owned(range.end_bound()),
            ..Scan::all()
        }
    }

    /// The pairs between two explicit bounds, e.g. to resume after a key.
    pub fn bounds(start: Bound<&[u8]>, end: Bound<&[u8]>) -> Scan {
        Scan {
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
            ..Scan::all()
        }
    }

    /// The pairs whose keys start with `prefix`.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Scan {
        let prefix = prefix.as_ref();
        Scan {
            start: Bound::Included(prefix.to_vec()),
            end: prefix_end(prefix),
            ..Scan::all()
        }
    }

    /// Returns pairs from the highest key down.
    pub fn rev(mut self) -> Scan {
        self.reverse = true;
        self
    }

    /// Returns at most `n` pairs (the first `n` in scan direction).
    pub fn limit(mut self, n: usize) -> Scan {
        self.limit = Some(n);
        self
    }

    /// The lower key bound.
    pub fn start(&self) -> Bound<&[u8]> {
        self.start.as_ref().map(Vec::as_slice)
    }

    /// The upper key bound.
    pub fn end(&self) -> Bound<&[u8]> {
        self.end.as_ref().map(Vec::as_slice)
    }

    /// Whether pairs come from the highest key down.
    pub fn is_reverse(&self) -> bool {
        self.reverse
    }

    /// The most pairs to return, if limited.
    pub fn max_count(&self) -> Option<usize> {
        self.limit
    }

    /// Whether no key can satisfy the bounds (start above end, or an empty
    /// exclusive range); ordered maps panic on such ranges, so backends check.
    pub fn is_empty_range(&self) -> bool {
        match (self.start(), self.end()) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e))
            | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
            _ => false,
        }
    }
}

/// The exclusive upper bound of all keys starting with `prefix`: the prefix
/// with trailing 0xFF bytes dropped and the last byte incremented, or no
/// bound if the prefix is empty or all 0xFF.
fn prefix_end(prefix: &[u8]) -> Bound<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Bound::Excluded(end);
        }
    }
    Bound::Unbounded
}

/// Opens (creating if needed) the redb database at `path` and brings its
/// schema up to date with `migrations` (normally [`MIGRATIONS`]).
pub fn open(
    path: impl AsRef<Path>,
    migrations: &[Migration],
) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(path)?);
    migrate(store.as_ref(), migrations)?;
    Ok(store)
}

impl dyn Store + '_ {
    /// Runs `f` in a write transaction: commits if it returns `Ok`, discards
    /// every write if it returns `Err`.
    pub fn write<T, E>(&self, f: impl FnOnce(&mut dyn WriteTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut tx = self.begin_write()?;
        match f(&mut *tx) {
            Ok(value) => {
                tx.commit()?;
                Ok(value)
            }
            Err(err) => {
                // The closure's error is the one worth reporting; a failed
                // abort still leaves nothing committed.
                let _ = tx.abort();
                Err(err)
            }
        }
    }

    /// Runs `f` in a read transaction, so all its reads see one snapshot.
    pub fn read<T, E>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self.begin_read()?;
        f(&*tx)
    }

    /// Reads one key in its own read transaction.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.begin_read()?.get(tree, key)
    }

    /// Scans one tree in its own read transaction.
    pub fn scan(&self, tree: Tree, scan: &Scan) -> Result<Vec<Pair>, StoreError> {
        self.begin_read()?.scan(tree, scan)
    }

    /// Writes one key in its own (durable) write transaction.
    pub fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| tx.put(tree, key, value))
    }

    /// Deletes one key in its own write transaction; returns whether it was present.
    pub fn delete(&self, tree: Tree, key: &[u8]) -> Result<bool, StoreError> {
        self.write(|tx| tx.delete(tree, key))
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(
    tree: Tree,
    bytes: Option<Vec<u8>>,
) -> Result<Option<T>, StoreError> {
    bytes
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(|e| StoreError::Codec {
            tree: tree.name(),
            message: e.to_string(),
        })
}

impl dyn ReadTx + '_ {
    /// Reads and decodes a JSON value.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: Tree,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        decode_json(tree, self.get(tree, key)?)
    }
}

impl dyn WriteTx + '_ {
    /// Reads and decodes a JSON value, seeing this transaction's writes.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: Tree,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        decode_json(tree, self.get(tree, key)?)
    }

    /// Encodes `value` as JSON and stores it.
    pub fn put_json<T: serde::Serialize + ?Sized>(
        &mut self,
        tree: Tree,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Codec {
            tree: tree.name(),
            message: e.to_string(),
        })?;
        self.put(tree, key, &bytes)
    }
}
