//! Hash chains of JSON entries, one chain per scope within a tree: each entry
//! carries `scope`, `seq`, `prev` (the previous entry's hash) and `hash`
//! (SHA-256 over `prev` and the entry's canonical JSON without `hash`). The
//! audit log and each session's protocol are such chains, so evidence can be
//! verified offline by anyone who has the entries.

use super::{ReadTx, Scan, StoreError, Tree, WriteTx, catalog};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::ops::Bound;

/// The `prev` of a chain's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why a chain does not verify, naming the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("{scope} #{seq}: the entry cannot be read: {message}")]
    Unreadable {
        scope: String,
        seq: u64,
        message: String,
    },
    #[error("{scope} #{seq}: its content does not match its hash (altered)")]
    Altered { scope: String, seq: u64 },
    #[error("{scope} #{seq}: it does not follow the previous entry (removed or reordered)")]
    Broken { scope: String, seq: u64 },
    #[error("{scope}: the chain ends at #{found} but its head says #{expected} (entries removed)")]
    Truncated {
        scope: String,
        found: u64,
        expected: u64,
    },
    #[error("storage: {0}")]
    Store(String),
}

/// The key of entry `seq` of `scope`: scope, NUL, big-endian sequence.
pub fn key(scope: &str, seq: u64) -> Vec<u8> {
    let mut k = scope.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn head_key(tree: Tree, scope: &str) -> Vec<u8> {
    format!("chain_head/{}/{scope}", tree.name()).into_bytes()
}

/// The hash of an entry object (its `hash` field is ignored). `serde_json`
/// keeps object keys sorted, so the JSON text is canonical.
pub fn hash_of(entry: &Map<String, Value>) -> String {
    let mut unsigned = entry.clone();
    unsigned.remove("hash");
    let prev = unsigned
        .get("prev")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let canonical = serde_json::to_vec(&Value::Object(unsigned)).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(&canonical);
    hex::encode(h.finalize())
}

/// The head of a chain: last sequence number and hash (0 and genesis if empty).
pub fn head(tx: &dyn ReadTx, tree: Tree, scope: &str) -> Result<(u64, String), StoreError> {
    let stored: Option<(u64, String)> = tx
        .get(catalog::META, &head_key(tree, scope))?
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok(stored.unwrap_or((0, GENESIS.to_string())))
}

/// Appends `fields` as the next entry of `scope`; returns the stored entry.
pub fn append(
    tx: &mut dyn WriteTx,
    tree: Tree,
    scope: &str,
    mut fields: Map<String, Value>,
) -> Result<Map<String, Value>, StoreError> {
    let (last, prev) = head(tx, tree, scope)?;
    let seq = last + 1;
    fields.insert("scope".into(), Value::from(scope));
    fields.insert("seq".into(), Value::from(seq));
    fields.insert("prev".into(), Value::from(prev));
    let hash = hash_of(&fields);
    fields.insert("hash".into(), Value::from(hash.clone()));
    tx.put_json(tree, &key(scope, seq), &fields)?;
    tx.put_json(catalog::META, &head_key(tree, scope), &(seq, hash))?;
    Ok(fields)
}

/// Removes a whole chain (every entry and its head), as erasing the thing it
/// records requires; returns the number of entries removed.
pub fn remove(tx: &mut dyn WriteTx, tree: Tree, scope: &str) -> Result<u64, StoreError> {
    let mut prefix = scope.as_bytes().to_vec();
    prefix.push(0);
    let rows = tx.scan(tree, &Scan::prefix(&prefix))?;
    for (k, _) in &rows {
        tx.delete(tree, k)?;
    }
    tx.delete(catalog::META, &head_key(tree, scope))?;
    Ok(rows.len() as u64)
}

/// Every scope with a chain in `tree`.
pub fn scopes(tx: &dyn ReadTx, tree: Tree) -> Result<Vec<String>, StoreError> {
    let prefix = format!("chain_head/{}/", tree.name());
    Ok(tx
        .scan(catalog::META, &Scan::prefix(prefix.as_bytes()))?
        .into_iter()
        .filter_map(|(k, _)| {
            String::from_utf8(k)
                .ok()?
                .strip_prefix(&prefix)
                .map(str::to_string)
        })
        .collect())
}

/// Entries of `scope` with sequence numbers in `from..=to`, oldest first.
pub fn range(
    tx: &dyn ReadTx,
    tree: Tree,
    scope: &str,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<Map<String, Value>>, StoreError> {
    let (start, end) = (key(scope, from), key(scope, to));
    let rows = tx.scan(
        tree,
        &Scan::bounds(Bound::Included(&start), Bound::Included(&end)).limit(limit),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}

/// Entries of `scope` below `before`, newest first, that `keep` accepts.
pub fn newest(
    tx: &dyn ReadTx,
    tree: Tree,
    scope: &str,
    before: Option<u64>,
    limit: usize,
    keep: impl Fn(&Map<String, Value>) -> bool,
) -> Result<Vec<Map<String, Value>>, StoreError> {
    let start = key(scope, 0);
    let mut upper = key(scope, before.unwrap_or(u64::MAX));
    let mut out = Vec::new();
    loop {
        let page = tx.scan(
            tree,
            &Scan::bounds(Bound::Included(&start), Bound::Excluded(&upper))
                .rev()
                .limit(500),
        )?;
        let Some((last, _)) = page.last() else { break };
        upper = last.clone();
        for (_, v) in &page {
            if let Ok(entry) = serde_json::from_slice::<Map<String, Value>>(v)
                && keep(&entry)
            {
                out.push(entry);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// Follows a chain entry by entry without any storage, so an exported
/// bundle is checked by the same rules as the live store.
#[derive(Debug, Clone)]
pub struct Follower {
    scope: String,
    prev: String,
    expected: u64,
}

impl Follower {
    /// Starts before the first entry of `scope`.
    pub fn new(scope: &str) -> Self {
        Self {
            scope: scope.to_string(),
            prev: GENESIS.to_string(),
            expected: 1,
        }
    }

    /// Checks the next entry, stored under sequence number `seq`.
    pub fn next(&mut self, seq: u64, entry: &Map<String, Value>) -> Result<(), ChainError> {
        let text = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default();
        if seq != self.expected
            || entry.get("seq").and_then(Value::as_u64) != Some(seq)
            || text("prev") != self.prev
            || text("scope") != self.scope
        {
            return Err(ChainError::Broken {
                scope: self.scope.clone(),
                seq,
            });
        }
        let hash = text("hash").to_string();
        if hash_of(entry) != hash {
            return Err(ChainError::Altered {
                scope: self.scope.clone(),
                seq,
            });
        }
        self.prev = hash;
        self.expected += 1;
        Ok(())
    }

    /// The number of entries followed so far and the last one's hash.
    pub fn head(&self) -> (u64, &str) {
        (self.expected - 1, &self.prev)
    }
}

/// Verifies `scope`'s chain from the first entry to the head; returns the
/// number of entries.
pub fn verify(tx: &dyn ReadTx, tree: Tree, scope: &str) -> Result<u64, ChainError> {
    let store_err = |e: StoreError| ChainError::Store(e.to_string());
    let prefix_len = scope.len() + 1;
    let mut follower = Follower::new(scope);
    let end = key(scope, u64::MAX);
    let mut lower = key(scope, 0);
    let mut first = true;
    loop {
        let low = if first {
            Bound::Included(lower.as_slice())
        } else {
            Bound::Excluded(lower.as_slice())
        };
        let page = tx
            .scan(tree, &Scan::bounds(low, Bound::Included(&end)).limit(1000))
            .map_err(store_err)?;
        first = false;
        let Some((last, _)) = page.last() else { break };
        let last = last.clone();
        for (k, v) in &page {
            let seq = k
                .get(prefix_len..)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            let entry: Map<String, Value> =
                serde_json::from_slice(v).map_err(|e| ChainError::Unreadable {
                    scope: scope.to_string(),
                    seq,
                    message: e.to_string(),
                })?;
            follower.next(seq, &entry)?;
        }
        lower = last;
    }
    let (head_seq, head_hash) = head(tx, tree, scope).map_err(store_err)?;
    let (found, prev) = follower.head();
    if head_seq != found || (found > 0 && head_hash != prev) {
        return Err(ChainError::Truncated {
            scope: scope.to_string(),
            found,
            expected: head_seq,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Store};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn append_verify_and_detect_tampering() {
        let store = MemoryStore::new();
        let store: &dyn Store = &store;
        for i in 0..1200 {
            store
                .write(|tx| append(tx, catalog::AUDIT, "s1", obj(json!({ "n": i }))))
                .unwrap();
        }
        store
            .write(|tx| append(tx, catalog::AUDIT, "s2", obj(json!({ "n": 0 }))))
            .unwrap();
        let verified = store.read(|tx| Ok::<_, StoreError>(verify(tx, catalog::AUDIT, "s1")));
        assert_eq!(verified.unwrap(), Ok(1200));
        let mut scopes = store.read(|tx| scopes(tx, catalog::AUDIT)).unwrap();
        scopes.sort();
        assert_eq!(scopes, ["s1", "s2"]);
        let newest = store
            .read(|tx| newest(tx, catalog::AUDIT, "s1", Some(1200), 2, |_| true))
            .unwrap();
        assert_eq!(
            (newest[0]["seq"].as_u64(), newest[1]["seq"].as_u64()),
            (Some(1199), Some(1198))
        );
        let k = key("s1", 700);
        let raw = String::from_utf8(store.get(catalog::AUDIT, &k).unwrap().unwrap()).unwrap();
        store
            .put(
                catalog::AUDIT,
                &k,
                raw.replace("\"n\":699", "\"n\":698").as_bytes(),
            )
            .unwrap();
        assert_eq!(
            store
                .read(|tx| Ok::<_, StoreError>(verify(tx, catalog::AUDIT, "s1")))
                .unwrap(),
            Err(ChainError::Altered {
                scope: "s1".into(),
                seq: 700
            })
        );
    }
}
