//! The tier mover: objects of sessions stopped more than `COLD_AFTER` ago go to
//! the cold tier, and a sweep repairs what a crash in the middle of a move left.
//!
//! Each move is copy → verify the hash → record the object as cold in one store
//! transaction (which also checks the session still exists) → delete the hot
//! copy. A crash at any point leaves the object whole in at least one tier, and
//! the next pass or sweep finishes or undoes the step; see [`sweep`].

use super::retention::{LifecycleError, blocking, session_of};
use super::sessions::{self, Session, Status};
use crate::auth::hosts;
use crate::objects::{Objects, ObjectsError, Pace};
use crate::store::{Scan, Store, StoreError, WriteTx, catalog};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How the mover works.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long after a session stops its objects stay hot.
    pub after: Duration,
    /// Bytes per second read and written while moving.
    pub bytes_per_sec: u64,
}

/// What the store knows about an object in the cold tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdRecord {
    pub size: u64,
    pub sha256: String,
    pub moved_at: u64,
}

fn record_key(key: &str) -> Vec<u8> {
    format!("c/{key}").into_bytes()
}

/// What one pass of the mover did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub objects: u64,
    pub bytes: u64,
    /// Keys that could not be moved this time (they stay hot and readable).
    pub failed: Vec<String>,
}

/// What a sweep found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Moved objects whose hot copy was still there (crash after the record).
    pub hot_copies_removed: u64,
    /// Cold copies never recorded while the hot object is there (crash before
    /// the record); the next pass copies them again.
    pub unrecorded_copies_removed: u64,
    /// Records whose cold copy is missing while the hot object is there: the
    /// record is dropped and the object moves again.
    pub records_dropped: u64,
    /// Cold objects with no record and no hot copy, now recorded.
    pub adopted: u64,
    /// Recorded as cold, yet in neither tier: evidence lost outside invigil.
    pub missing: Vec<String>,
}

/// Whether a session's objects are due for the cold tier at `now`.
pub fn due(s: &Session, now: u64, after: Duration) -> bool {
    matches!(s.status, Status::Stopped | Status::Concluded)
        && s.stopped_at
            .is_some_and(|t| t.saturating_add(after.as_secs()) <= now)
}

/// The cold record of `key`, if it was moved.
pub fn record(store: &dyn Store, key: &str) -> Result<Option<ColdRecord>, StoreError> {
    store.read(|tx| tx.get_json(catalog::OBJECT_TIERS, &record_key(key)))
}

/// Every cold record, by object key.
pub fn records(store: &dyn Store) -> Result<BTreeMap<String, ColdRecord>, StoreError> {
    Ok(store
        .scan(catalog::OBJECT_TIERS, &Scan::prefix(b"c/"))?
        .into_iter()
        .filter_map(|(k, v)| {
            let key = String::from_utf8(k).ok()?.strip_prefix("c/")?.to_string();
            Some((key, serde_json::from_slice(&v).ok()?))
        })
        .collect())
}

/// Deletes the cold records of a session's objects (erasure).
pub fn forget_session_in(tx: &mut dyn WriteTx, host_id: &str, id: &str) -> Result<u64, StoreError> {
    let prefix = record_key(&sessions::object_prefix(host_id, id));
    let rows = tx.scan(catalog::OBJECT_TIERS, &Scan::prefix(&prefix))?;
    for (k, _) in &rows {
        tx.delete(catalog::OBJECT_TIERS, k)?;
    }
    Ok(rows.len() as u64)
}

/// Moves the hot objects of every session due at `now` to the cold tier. Safe
/// to cancel or kill at any point; the next pass carries on where this stopped.
pub async fn move_due(
    store: &Arc<dyn Store>,
    objects: &Objects,
    settings: Settings,
    now: u64,
) -> Result<Moved, LifecycleError> {
    let mut report = Moved::default();
    if objects.cold().is_none() {
        return Ok(report);
    }
    let due_sessions: Vec<(String, String)> = blocking(store, move |store| {
        let mut found = Vec::new();
        for host in hosts::list(store)? {
            for s in sessions::all(store, &host.id)? {
                if due(&s, now, settings.after) {
                    found.push((s.host_id, s.id));
                }
            }
        }
        Ok(found)
    })
    .await?;
    let hot = objects.hot();
    let mut pace = Pace::new(settings.bytes_per_sec);
    for (host_id, id) in due_sessions {
        let prefix = sessions::object_prefix(&host_id, &id);
        for o in hot.list(prefix.trim_end_matches('/')).await? {
            match move_one(store, objects, &o.key, &host_id, &id, now, &mut pace).await {
                Ok(Some(size)) => {
                    report.objects += 1;
                    report.bytes += size;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(key = %o.key, "moving to the cold tier failed: {e}");
                    report.failed.push(o.key);
                }
            }
        }
    }
    if report.objects > 0 {
        tracing::info!(
            objects = report.objects,
            bytes = report.bytes,
            "moved to the cold tier"
        );
    }
    Ok(report)
}

/// One move; `None` when the object or its session went away meanwhile.
async fn move_one(
    store: &Arc<dyn Store>,
    objects: &Objects,
    key: &str,
    host_id: &str,
    id: &str,
    now: u64,
    pace: &mut Pace,
) -> Result<Option<u64>, LifecycleError> {
    let copied = match objects.copy_to_cold(key, pace).await {
        Ok(copied) => copied,
        Err(ObjectsError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let record = ColdRecord {
        size: copied.size,
        sha256: copied.sha256,
        moved_at: now,
    };
    let size = record.size;
    let (k, host, sid) = (key.to_string(), host_id.to_string(), id.to_string());
    let kept = blocking(store, move |store| {
        store.write(|tx| {
            // An erasure that committed meanwhile must not see its data come back.
            if sessions::load(tx, &host, &sid)?.is_none() {
                return Ok(false);
            }
            tx.put_json(catalog::OBJECT_TIERS, &record_key(&k), &record)?;
            Ok::<_, LifecycleError>(true)
        })
    })
    .await?;
    if kept {
        objects.drop_hot(key).await?;
        Ok(Some(size))
    } else {
        objects.drop_cold(key).await?;
        objects.drop_hot(key).await?;
        Ok(None)
    }
}

/// Repairs what an interrupted move left, and reports loudly any object the
/// store says is cold but neither tier holds. After a sweep no object is in
/// both tiers and every cold object is recorded.
pub async fn sweep(store: &Arc<dyn Store>, objects: &Objects) -> Result<Swept, LifecycleError> {
    let mut report = Swept::default();
    let Some(cold) = objects.cold() else {
        return Ok(report);
    };
    let hot = objects.hot();
    let known = blocking(store, |store| Ok(records(store)?)).await?;
    for key in known.keys() {
        let in_hot = hot.exists(key).await?;
        if cold.exists(key).await? {
            if in_hot {
                objects.drop_hot(key).await?;
                report.hot_copies_removed += 1;
            }
        } else if in_hot {
            let k = key.clone();
            blocking(store, move |store| {
                Ok(store.delete(catalog::OBJECT_TIERS, &record_key(&k))?)
            })
            .await?;
            report.records_dropped += 1;
        } else if record(store.as_ref(), key)?.is_some() {
            // Still recorded after both looks (an erasure may have raced us).
            tracing::error!(
                key = %key,
                "object recorded in the cold tier is in neither tier: evidence is missing"
            );
            report.missing.push(key.clone());
        }
    }
    let mut pace = Pace::new(u64::MAX);
    for o in cold.list("").await? {
        if known.contains_key(&o.key) {
            continue;
        }
        if hot.exists(&o.key).await? {
            objects.drop_cold(&o.key).await?;
            report.unrecorded_copies_removed += 1;
            continue;
        }
        let owner = session_of(&o.key).map(|(h, s)| (h.to_string(), s.to_string()));
        let sha256 = objects.cold_hash(&o.key, &mut pace).await?;
        let record = ColdRecord {
            size: o.size,
            sha256,
            moved_at: crate::auth::now_secs(),
        };
        let k = o.key.clone();
        let adopted = blocking(store, move |store| {
            store.write(|tx| {
                if let Some((h, s)) = &owner
                    && sessions::load(tx, h, s)?.is_none()
                {
                    return Ok(false);
                }
                tx.put_json(catalog::OBJECT_TIERS, &record_key(&k), &record)?;
                Ok::<_, LifecycleError>(true)
            })
        })
        .await?;
        if adopted {
            report.adopted += 1;
        } else {
            // Its session was erased: the copy goes too.
            objects.drop_cold(&o.key).await?;
        }
    }
    if report != Swept::default() {
        tracing::info!(?report, "tier sweep repaired the tiers");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stopped_sessions_past_the_delay_are_due() {
        let mut s: Session = serde_json::from_value(serde_json::json!({
            "id": "s1", "host_id": "h1", "student": "ann", "subject": "",
            "template_id": "t", "template_version": 1, "proctors": [],
            "proctor_group": null, "open_from": null, "open_until": null,
            "deadline": null, "duration_limit_secs": null, "extra_secs": 0, "status": "started",
            "started_at": 10, "stopped_at": null, "averages": { "sums": {} }, "score": null,
            "review": false, "conclusion": null, "tags": [], "identifier": null,
            "callback_url": null, "created_by": "adm", "created_at": 1
        }))
        .expect("a session");
        let day = Duration::from_secs(86_400);
        assert!(!due(&s, 1_000_000, day));
        s.status = Status::Stopped;
        s.stopped_at = Some(100);
        assert!(!due(&s, 100 + 86_399, day));
        assert!(due(&s, 100 + 86_400, day));
        assert!(due(&s, 100, Duration::ZERO));
    }
}
