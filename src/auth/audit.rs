//! The audit log: security events appended to a SHA-256 hash chain per scope
//! (the instance, and each host), in the same transaction as the change they
//! record, so the log and the data cannot disagree.

pub use crate::store::chain::ChainError;
use crate::store::{Store, StoreError, WriteTx, catalog, chain};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The scope of instance-wide events (manager sign-ins, host changes, start-up).
pub const INSTANCE: &str = "instance";

/// One audit entry, as stored in the chain.
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

fn to_entry(fields: serde_json::Map<String, serde_json::Value>) -> Option<Entry> {
    serde_json::from_value(serde_json::Value::Object(fields)).ok()
}

/// Appends an event to `scope`'s chain inside the caller's transaction.
pub fn append(tx: &mut dyn WriteTx, scope: &str, event: Event) -> Result<Entry, StoreError> {
    let detail = serde_json::Map::from_iter(event.detail.into_iter().map(|(k, v)| (k, v.into())));
    let fields = serde_json::Map::from_iter([
        ("time".to_string(), super::now_secs().into()),
        ("actor".to_string(), event.actor.into()),
        ("action".to_string(), event.action.into()),
        ("target".to_string(), event.target.into()),
        ("client".to_string(), event.client.into()),
        ("detail".to_string(), serde_json::Value::Object(detail)),
    ]);
    let stored = chain::append(tx, catalog::AUDIT, scope, fields)?;
    to_entry(stored).ok_or_else(|| StoreError::Codec {
        tree: catalog::AUDIT.name(),
        message: "audit entry does not read back".into(),
    })
}

/// Appends in a transaction of its own (for events with no other change).
pub fn record(store: &dyn Store, scope: &str, event: Event) -> Result<Entry, StoreError> {
    store.write(|tx| append(tx, scope, event))
}

/// Every scope that has a chain.
pub fn scopes(store: &dyn Store) -> Result<Vec<String>, StoreError> {
    store.read(|tx| chain::scopes(tx, catalog::AUDIT))
}

/// Verifies one scope's chain from the first entry to the head; returns the
/// number of entries checked.
pub fn verify(store: &dyn Store, scope: &str) -> Result<u64, ChainError> {
    store
        .read(|tx| Ok::<_, StoreError>(chain::verify(tx, catalog::AUDIT, scope)))
        .map_err(|e| ChainError::Store(e.to_string()))?
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
    let limit = filter.limit.clamp(1, 500);
    let rows = store.read(|tx| {
        chain::newest(tx, catalog::AUDIT, scope, filter.before, limit, |e| {
            let text = |k: &str| {
                e.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let time = e.get("time").and_then(|v| v.as_u64()).unwrap_or(0);
            filter.action.as_ref().is_none_or(|a| text("action") == *a)
                && filter.actor.as_ref().is_none_or(|a| text("actor") == *a)
                && filter.since.is_none_or(|t| time >= t)
                && filter.until.is_none_or(|t| time <= t)
        })
    })?;
    Ok(rows.into_iter().filter_map(to_entry).collect())
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
        let k2 = chain::key("h1", 2);
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
        store.delete(catalog::AUDIT, &chain::key("h1", 3)).unwrap();
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
