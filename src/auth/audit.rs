//! The audit log: security events appended to a SHA-256 hash chain per scope
//! (the instance, and each host), in the same transaction as the change they
//! record, so the log and the data cannot disagree.

use crate::store::{ReadTx, Scan, Store, StoreError, WriteTx, catalog};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The scope of instance-wide events (manager sign-ins, host changes, start-up).
pub const INSTANCE: &str = "instance";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry. Field order is the canonical order hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub scope: String,
    pub seq: u64,
    pub time: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub client: String,
    pub detail: BTreeMap<String, String>,
    pub prev: String,
    pub hash: String,
}

/// What a caller records; sequence, time and hashes are added on append.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub client: String,
    pub detail: BTreeMap<String, String>,
}

impl Event {
    pub fn new(actor: impl Into<String>, action: &'static str, target: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action,
            target: target.into(),
            ..Self::default()
        }
    }

    pub fn client(mut self, client: impl Into<String>) -> Self {
        self.client = client.into();
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.detail.insert(key.to_string(), value.into());
        self
    }
}

fn key(scope: &str, seq: u64) -> Vec<u8> {
    let mut k = scope.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn head_key(scope: &str) -> Vec<u8> {
    format!("audit_head/{scope}").into_bytes()
}

/// The hash of an entry: SHA-256 over the previous hash and the canonical JSON
/// of the entry with its own `hash` left empty.
pub fn entry_hash(entry: &Entry) -> String {
    let mut unsigned = entry.clone();
    unsigned.hash = String::new();
    let canonical = serde_json::to_vec(&unsigned).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(entry.prev.as_bytes());
    h.update(&canonical);
    hex::encode(h.finalize())
}

#[derive(Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// Appends an event to `scope`'s chain inside the caller's transaction.
pub fn append(tx: &mut dyn WriteTx, scope: &str, event: Event) -> Result<Entry, StoreError> {
    let head: Option<Head> = tx.get_json(catalog::META, &head_key(scope))?;
    let (seq, prev) = head.map_or((1, GENESIS.to_string()), |h| (h.seq + 1, h.hash));
    let mut entry = Entry {
        scope: scope.to_string(),
        seq,
        time: super::now_secs(),
        actor: event.actor,
        action: event.action.to_string(),
        target: event.target,
        client: event.client,
        detail: event.detail,
        prev,
        hash: String::new(),
    };
    entry.hash = entry_hash(&entry);
    tx.put_json(catalog::AUDIT, &key(scope, seq), &entry)?;
    tx.put_json(
        catalog::META,
        &head_key(scope),
        &Head {
            seq,
            hash: entry.hash.clone(),
        },
    )?;
    Ok(entry)
}

/// Appends in a transaction of its own (for events with no other change).
pub fn record(store: &dyn Store, scope: &str, event: Event) -> Result<Entry, StoreError> {
    store.write(|tx| append(tx, scope, event))
}

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

/// Every scope that has a chain.
pub fn scopes(store: &dyn Store) -> Result<Vec<String>, StoreError> {
    let heads = store.scan(catalog::META, &Scan::prefix(b"audit_head/"))?;
    Ok(heads
        .into_iter()
        .filter_map(|(k, _)| {
            String::from_utf8(k)
                .ok()
                .and_then(|s| s.strip_prefix("audit_head/").map(str::to_string))
        })
        .collect())
}

/// Verifies one scope's chain from the first entry to the head; returns the
/// number of entries checked.
pub fn verify(store: &dyn Store, scope: &str) -> Result<u64, ChainError> {
    store
        .read(|tx| Ok::<_, StoreError>(verify_in(tx, scope)))
        .map_err(|e| ChainError::Store(e.to_string()))?
}

fn verify_in(tx: &dyn ReadTx, scope: &str) -> Result<u64, ChainError> {
    let store_err = |e: StoreError| ChainError::Store(e.to_string());
    let mut prefix = scope.as_bytes().to_vec();
    prefix.push(0);
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1;
    let mut after: Option<Vec<u8>> = None;
    loop {
        // Paged, so a long chain is not read into memory at once.
        let scan = match &after {
            None => Scan::prefix(&prefix).limit(1000),
            Some(last) => {
                let mut end = prefix.clone();
                end.extend_from_slice(&u64::MAX.to_be_bytes());
                Scan::bounds(
                    std::ops::Bound::Excluded(last.as_slice()),
                    std::ops::Bound::Included(end.as_slice()),
                )
                .limit(1000)
            }
        };
        let page = tx.scan(catalog::AUDIT, &scan).map_err(store_err)?;
        if page.is_empty() {
            break;
        }
        for (k, v) in &page {
            let seq = k
                .get(prefix.len()..)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            let entry: Entry = serde_json::from_slice(v).map_err(|e| ChainError::Unreadable {
                scope: scope.to_string(),
                seq,
                message: e.to_string(),
            })?;
            if entry.seq != seq || seq != expected_seq || entry.prev != prev || entry.scope != scope
            {
                return Err(ChainError::Broken {
                    scope: scope.to_string(),
                    seq,
                });
            }
            if entry_hash(&entry) != entry.hash {
                return Err(ChainError::Altered {
                    scope: scope.to_string(),
                    seq,
                });
            }
            prev = entry.hash;
            expected_seq += 1;
        }
        after = page.last().map(|(k, _)| k.clone());
    }
    let head: Option<Head> = tx
        .get(catalog::META, &head_key(scope))
        .map_err(store_err)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let found = expected_seq - 1;
    match head {
        Some(h) if h.seq != found || h.hash != prev => Err(ChainError::Truncated {
            scope: scope.to_string(),
            found,
            expected: h.seq,
        }),
        _ => Ok(found),
    }
}

/// A filter for listing entries, newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    /// Entries with a sequence number below this (for paging backwards).
    pub before: Option<u64>,
    pub limit: usize,
}

/// Lists a scope's entries, newest first, matching `filter`.
pub fn list(store: &dyn Store, scope: &str, filter: &Filter) -> Result<Vec<Entry>, StoreError> {
    let start = key(scope, 0);
    let end = key(scope, filter.before.unwrap_or(u64::MAX));
    let limit = filter.limit.clamp(1, 500);
    let mut out = Vec::new();
    let mut upper = end;
    loop {
        let page = store.scan(
            catalog::AUDIT,
            &Scan::bounds(
                std::ops::Bound::Included(start.as_slice()),
                std::ops::Bound::Excluded(upper.as_slice()),
            )
            .rev()
            .limit(500),
        )?;
        let Some((last_key, _)) = page.last() else {
            break;
        };
        upper = last_key.clone();
        for (_, v) in &page {
            let Ok(entry) = serde_json::from_slice::<Entry>(v) else {
                continue;
            };
            let keep = filter.action.as_ref().is_none_or(|a| &entry.action == a)
                && filter.actor.as_ref().is_none_or(|a| &entry.actor == a)
                && filter.since.is_none_or(|t| entry.time >= t)
                && filter.until.is_none_or(|t| entry.time <= t);
            if keep {
                out.push(entry);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn three(store: &dyn Store) {
        for action in ["sign_in", "sign_in_failed", "password_changed"] {
            record(
                store,
                "h1",
                Event::new("ann", action, "ann").client("127.0.0.1"),
            )
            .unwrap();
        }
        record(
            store,
            INSTANCE,
            Event::new("manager:m", "host_created", "h1"),
        )
        .unwrap();
    }

    #[test]
    fn chain_verifies_and_lists_newest_first() {
        let store = MemoryStore::new();
        three(&store);
        assert_eq!(verify(&store, "h1"), Ok(3));
        assert_eq!(verify(&store, INSTANCE), Ok(1));
        let mut scopes = scopes(&store).unwrap();
        scopes.sort();
        assert_eq!(scopes, ["h1", INSTANCE]);
        let all = list(
            &store,
            "h1",
            &Filter {
                limit: 10,
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2, 1]);
        let failed = list(
            &store,
            "h1",
            &Filter {
                action: Some("sign_in_failed".into()),
                limit: 10,
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(failed.len(), 1);
        let paged = list(
            &store,
            "h1",
            &Filter {
                before: Some(3),
                limit: 1,
                ..Filter::default()
            },
        );
        assert_eq!(paged.unwrap()[0].seq, 2);
    }

    #[test]
    fn altered_removed_and_truncated_entries_are_named() {
        let store = MemoryStore::new();
        three(&store);
        let store: &dyn Store = &store;
        let k2 = key("h1", 2);
        let original = store.get(catalog::AUDIT, &k2).unwrap().unwrap();
        let altered = String::from_utf8(original.clone())
            .unwrap()
            .replace("sign_in_failed", "sign_in_failes");
        store.put(catalog::AUDIT, &k2, altered.as_bytes()).unwrap();
        assert_eq!(
            verify(store, "h1"),
            Err(ChainError::Altered {
                scope: "h1".into(),
                seq: 2
            })
        );
        store.delete(catalog::AUDIT, &k2).unwrap();
        assert_eq!(
            verify(store, "h1"),
            Err(ChainError::Broken {
                scope: "h1".into(),
                seq: 3
            })
        );
        store.put(catalog::AUDIT, &k2, &original).unwrap();
        store.delete(catalog::AUDIT, &key("h1", 3)).unwrap();
        assert_eq!(
            verify(store, "h1"),
            Err(ChainError::Truncated {
                scope: "h1".into(),
                found: 2,
                expected: 3
            })
        );
    }
}
