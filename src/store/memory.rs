//! In-memory backend for tests, with the same transaction semantics as the
//! on-disk one.
//!
//! Committed data is an immutable snapshot behind an `Arc`: a read
//! transaction clones the `Arc`, so later commits never disturb it. A write
//! transaction holds the writer lock (one writer at a time, as in redb) and
//! keeps its writes in an overlay that only `commit` folds into a new
//! snapshot, so uncommitted writes stay invisible and abort is a drop.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::catalog::{self, Tree};
use super::{Pair, ReadTx, Scan, Store, StoreError, WriteTx};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
/// Pending writes of a transaction; `None` marks a deletion.
type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
/// Committed trees; each tree is its own `Arc` so a commit copies only the
/// trees it touches, and only while a reader still holds the old snapshot.
type Snapshot = BTreeMap<Tree, Arc<Map>>;

/// A store that lives in memory and vanishes when dropped.
pub struct MemoryStore {
    committed: Mutex<Arc<Snapshot>>,
    writer: Mutex<()>,
}

impl MemoryStore {
    /// An empty store with every catalog tree.
    pub fn new() -> MemoryStore {
        let snapshot = catalog::ALL
            .iter()
            .map(|&tree| (tree, Arc::new(Map::new())))
            .collect();
        MemoryStore {
            committed: Mutex::new(Arc::new(snapshot)),
            writer: Mutex::new(()),
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        // A panic elsewhere cannot leave the snapshot half-updated (it is
        // replaced, never edited in place while shared), so poison is harmless.
        Arc::clone(
            &self
                .committed
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl Store for MemoryStore {
    fn location(&self) -> &str {
        "(in memory)"
    }

    fn begin_read(&self) -> Result<Box<dyn ReadTx + '_>, StoreError> {
        Ok(Box::new(MemoryRead {
            snapshot: self.snapshot(),
        }))
    }

    fn begin_write(&self) -> Result<Box<dyn WriteTx + '_>, StoreError> {
        // A writer that panicked never committed, so its poison means nothing.
        let guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Box::new(MemoryWrite {
            store: self,
            _guard: guard,
            base: self.snapshot(),
            pending: BTreeMap::new(),
        }))
    }
}

fn tree_map(snapshot: &Snapshot, tree: Tree) -> Result<&Map, StoreError> {
    snapshot
        .get(&tree)
        .map(Arc::as_ref)
        .ok_or_else(|| StoreError::Backend(format!("tree {tree} is not in the catalog")))
}

fn bounds(scan: &Scan) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (scan.start(), scan.end())
}

struct MemoryRead {
    snapshot: Arc<Snapshot>,
}

impl ReadTx for MemoryRead {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(tree_map(&self.snapshot, tree)?.get(key).cloned())
    }

    fn scan(&self, tree: Tree, scan: &Scan) -> Result<Vec<Pair>, StoreError> {
        let map = tree_map(&self.snapshot, tree)?;
        if scan.is_empty_range() {
            return Ok(Vec::new());
        }
        let limit = scan.max_count().unwrap_or(usize::MAX);
        let range = map.range::<[u8], _>(bounds(scan));
        let pairs = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if scan.is_reverse() {
            range.rev().take(limit).map(pairs).collect()
        } else {
            range.take(limit).map(pairs).collect()
        })
    }
}

struct MemoryWrite<'s> {
    store: &'s MemoryStore,
    _guard: MutexGuard<'s, ()>,
    /// The committed state when this transaction began; stable because we
    /// hold the writer lock.
    base: Arc<Snapshot>,
    pending: BTreeMap<Tree, Overlay>,
}

impl ReadTx for MemoryWrite<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let base = tree_map(&self.base, tree)?;
        match self.pending.get(&tree).and_then(|o| o.get(key)) {
            Some(pending) => Ok(pending.clone()),
            None => Ok(base.get(key).cloned()),
        }
    }

    fn scan(&self, tree: Tree, scan: &Scan) -> Result<Vec<Pair>, StoreError> {
        let base = tree_map(&self.base, tree)?;
        if scan.is_empty_range() {
            return Ok(Vec::new());
        }
        let empty = Overlay::new();
        let overlay = self.pending.get(&tree).unwrap_or(&empty);
        let limit = scan.max_count().unwrap_or(usize::MAX);
        let committed = base.range::<[u8], _>(bounds(scan));
        let pending = overlay.range::<[u8], _>(bounds(scan));
        Ok(if scan.is_reverse() {
            merge(committed.rev(), pending.rev(), true, limit)
        } else {
            merge(committed, pending, false, limit)
        })
    }
}

/// Merges committed pairs with pending writes, both in scan order; a pending
/// write shadows the committed value of the same key.
fn merge<'a>(
    committed: impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>,
    pending: impl Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>,
    reverse: bool,
    limit: usize,
) -> Vec<Pair> {
    let mut committed: Peekable<_> = committed.peekable();
    let mut pending: Peekable<_> = pending.peekable();
    let mut out = Vec::new();
    while out.len() < limit {
        // Which side holds the next key in scan order.
        let take_pending = match (committed.peek(), pending.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((ck, _)), Some((pk, _))) => {
                if ck == pk {
                    committed.next(); // shadowed by the pending write
                    true
                } else {
                    (pk < ck) != reverse
                }
            }
        };
        if take_pending {
            if let Some((k, Some(v))) = pending.next() {
                out.push((k.clone(), v.clone()));
            }
        } else if let Some((k, v)) = committed.next() {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

impl WriteTx for MemoryWrite<'_> {
    fn put(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        tree_map(&self.base, tree)?;
        self.pending
            .entry(tree)
            .or_default()
            .insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, tree: Tree, key: &[u8]) -> Result<bool, StoreError> {
        let existed = self.get(tree, key)?.is_some();
        self.pending
            .entry(tree)
            .or_default()
            .insert(key.to_vec(), None);
        Ok(existed)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let MemoryWrite {
            store,
            _guard,
            base,
            pending,
        } = *self;
        // Nobody else commits while we hold the writer lock, so `base` is
        // still the committed state; drop our handle so make_mut can often
        // reuse it without copying.
        drop(base);
        let mut committed = store
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let snapshot = Arc::make_mut(&mut committed);
        for (tree, overlay) in pending {
            let map = snapshot.entry(tree).or_default();
            let map = Arc::make_mut(map);
            for (key, value) in overlay {
                match value {
                    Some(value) => map.insert(key, value),
                    None => map.remove(&key),
                };
            }
        }
        Ok(())
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}
