//! Retention and erasure: sessions older than their host's `retention_days`
//! go, and an administrator can erase one session or one user's data on request.
//!
//! An erasure removes the store records in one transaction together with its
//! audit entry (what, when, who and why — never the data), then the objects in
//! both tiers. If the process dies in between, the objects of a session that no
//! longer exists are found and removed by [`sweep_erased`].

use super::ProctoringError;
use super::sessions::{self, Session, Status};
use super::{attachments, protocol, uploads, webhooks};
use crate::auth::{AuthError, audit, hosts, users};
use crate::objects::{Objects, ObjectsError};
use crate::store::{Store, StoreError, WriteTx};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The actor named in the audit log for erasures the retention task makes.
pub const RETENTION_ACTOR: &str = "retention";

/// Errors of the storage lifecycle (retention, erasure and the tier mover).
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Proctoring(#[from] ProctoringError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectsError),
    #[error("the storage task stopped: {0}")]
    Task(String),
}

/// What one erasure removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// The session's host (the answer's caller knows it).
    #[serde(skip)]
    pub host: String,
    pub session: String,
    /// Objects deleted (each from whichever tiers held it).
    pub objects: u64,
}

/// What erasing a user removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasedUser {
    pub user: String,
    pub sessions: Vec<Erased>,
    /// The user's own objects (profile photo and the like).
    pub objects: u64,
}

/// Who asks for an erasure and why; lands in the audit entry.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    pub client: &'a str,
}

/// Runs store work off the async threads (erasure and tier moves).
pub(super) async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, LifecycleError> + Send + 'static,
) -> Result<T, LifecycleError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| LifecycleError::Task(e.to_string()))?
}

fn reason(text: &str) -> Result<String, ProctoringError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ProctoringError::invalid(
            "reason",
            "say why the data is erased (it is kept in the audit log)",
        ));
    }
    if text.chars().count() > 500 {
        return Err(ProctoringError::invalid("reason", "at most 500 characters"));
    }
    Ok(text.to_string())
}

/// The object prefix of a session, in the form [`Objects::list`] takes.
fn listing_prefix(host_id: &str, id: &str) -> String {
    sessions::object_prefix(host_id, id)
        .trim_end_matches('/')
        .to_string()
}

/// Where a user's own objects (profile photo) live.
pub fn user_object_prefix(host_id: &str, username: &str) -> String {
    format!("users/{host_id}/{username}")
}

/// Every record derived from one session, deleted in the erasure's transaction.
/// This is the one place that knows them: a module that keeps more per-session
/// data (reference faces, for one) adds its deletion here.
fn erase_derived_records(tx: &mut dyn WriteTx, host_id: &str, id: &str) -> Result<(), StoreError> {
    protocol::remove_in(tx, &sessions::scope(host_id, id))?;
    uploads::remove_session_in(tx, host_id, id)?;
    attachments::remove_session_in(tx, host_id, id)?;
    webhooks::remove_session_in(tx, host_id, id)?;
    super::tiering::forget_session_in(tx, host_id, id)?;
    super::identity::remove_session_in(tx, host_id, id)?;
    Ok(())
}

/// Erases a session: its record and everything derived from it, with an audit
/// entry, then its objects in both tiers. A running session is refused.
pub async fn erase_session(
    store: &Arc<dyn Store>,
    objects: &Objects,
    host_id: &str,
    id: &str,
    request: &Request<'_>,
) -> Result<Erased, LifecycleError> {
    let why = reason(request.reason)?;
    let (host, sid) = (host_id.to_string(), id.to_string());
    let (actor, client) = (request.actor.to_string(), request.client.to_string());
    blocking(store, move |store| {
        store.write(|tx| {
            let s = sessions::load(tx, &host, &sid)?
                .ok_or_else(|| ProctoringError::NotFound(format!("session {sid}")))?;
            erase_records_in(tx, &s, &actor, &why, &client)
        })
    })
    .await?;
    let removed = delete_objects(objects, &listing_prefix(host_id, id)).await?;
    Ok(Erased {
        host: host_id.to_string(),
        session: id.to_string(),
        objects: removed,
    })
}

/// The store half of an erasure, inside the caller's transaction.
fn erase_records_in(
    tx: &mut dyn WriteTx,
    s: &Session,
    actor: &str,
    why: &str,
    client: &str,
) -> Result<(), LifecycleError> {
    if matches!(s.status, Status::Started | Status::Paused) {
        return Err(ProctoringError::Conflict(format!(
            "session {} is {}: stop it before erasing it",
            s.id,
            s.status.as_str()
        ))
        .into());
    }
    sessions::remove_in(tx, s)?;
    erase_derived_records(tx, &s.host_id, &s.id)?;
    audit::append(
        tx,
        &s.host_id,
        audit::Event::new(actor, "session_erased", &s.id)
            .client(client)
            .with("reason", why)
            .with("status", s.status.as_str()),
    )?;
    Ok(())
}

/// Deletes every object under `prefix` in both tiers; returns how many.
async fn delete_objects(objects: &Objects, prefix: &str) -> Result<u64, ObjectsError> {
    let found = objects.list(prefix).await?;
    for o in &found {
        objects.delete(&o.key).await?;
    }
    Ok(found.len() as u64)
}

/// Erases one user's data: every session they took, their own objects and
/// their account, each with an audit entry. Refused while one of their
/// sessions runs, before anything is deleted.
pub async fn erase_user(
    store: &Arc<dyn Store>,
    objects: &Objects,
    host_id: &str,
    username: &str,
    request: &Request<'_>,
) -> Result<ErasedUser, LifecycleError> {
    let why = reason(request.reason)?;
    let username = username.trim().to_lowercase();
    let (host, name) = (host_id.to_string(), username.clone());
    let (exists, theirs) = blocking(store, move |store| {
        let exists = users::get(store, &host, &name).is_ok();
        let theirs: Vec<Session> = sessions::all(store, &host)?
            .into_iter()
            .filter(|s| s.student == name)
            .collect();
        Ok((exists, theirs))
    })
    .await?;
    if !exists && theirs.is_empty() {
        return Err(ProctoringError::NotFound(format!("user {username}")).into());
    }
    if let Some(s) = theirs
        .iter()
        .find(|s| matches!(s.status, Status::Started | Status::Paused))
    {
        return Err(ProctoringError::Conflict(format!(
            "session {} of {username} is {}: stop it before erasing the user's data",
            s.id,
            s.status.as_str()
        ))
        .into());
    }
    let mut erased = Vec::new();
    for s in &theirs {
        let on_behalf = Request {
            reason: &why,
            ..request.clone()
        };
        match erase_session(store, objects, host_id, &s.id, &on_behalf).await {
            Ok(e) => erased.push(e),
            // Erased meanwhile by someone else: nothing left to do for it.
            Err(LifecycleError::Proctoring(ProctoringError::NotFound(_))) => {}
            Err(e) => return Err(e),
        }
    }
    let own = user_object_prefix(host_id, &username);
    let removed = if crate::objects::validate_key(&own).is_ok() {
        delete_objects(objects, &own).await?
    } else {
        0
    };
    let (host, name) = (host_id.to_string(), username.clone());
    let (actor, client) = (request.actor.to_string(), request.client.to_string());
    let count = erased.len();
    blocking(store, move |store| {
        store.write(|tx| {
            let had_account = users::remove_in(tx, &host, &name)?;
            audit::append(
                tx,
                &host,
                audit::Event::new(actor, "user_erased", &name)
                    .client(client)
                    .with("reason", why)
                    .with("sessions", count.to_string())
                    .with("objects", removed.to_string())
                    .with("account", if had_account { "deleted" } else { "none" }),
            )?;
            Ok::<_, LifecycleError>(())
        })
    })
    .await?;
    Ok(ErasedUser {
        user: username,
        sessions: erased,
        objects: removed,
    })
}

/// When a session is erased: the earlier of its own `remove_at` and
/// `retention_days` after it stopped (or, if it never ran, after it was created
/// or its window closed). Running sessions are never erased.
pub fn expires_at(s: &Session, retention_days: Option<u32>) -> Option<(u64, String)> {
    if matches!(s.status, Status::Started | Status::Paused) {
        return None;
    }
    let by_host = retention_days.map(|days| {
        let from = s
            .stopped_at
            .unwrap_or_else(|| s.created_at.max(s.open_until.unwrap_or(0)));
        (
            from.saturating_add(u64::from(days) * 24 * 60 * 60),
            format!("retention of {days} days"),
        )
    });
    let own = s
        .remove_at
        .map(|at| (at, "the session's remove_at".to_string()));
    match (by_host, own) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Erases every session past its host's retention or its own `remove_at` at `now`.
pub async fn expire(
    store: &Arc<dyn Store>,
    objects: &Objects,
    now: u64,
) -> Result<Vec<Erased>, LifecycleError> {
    let due: Vec<(Session, String)> = blocking(store, move |store| {
        let mut due = Vec::new();
        for host in hosts::list(store)? {
            for s in sessions::all(store, &host.id)? {
                if let Some((at, why)) = expires_at(&s, host.retention_days)
                    && at <= now
                {
                    due.push((s, why));
                }
            }
        }
        Ok(due)
    })
    .await?;
    let mut erased = Vec::new();
    for (s, why) in due {
        let request = Request {
            actor: RETENTION_ACTOR,
            reason: &why,
            client: "",
        };
        match erase_session(store, objects, &s.host_id, &s.id, &request).await {
            Ok(e) => erased.push(e),
            // Erased, or started again, since the scan: its turn comes later.
            Err(LifecycleError::Proctoring(
                ProctoringError::NotFound(_) | ProctoringError::Conflict(_),
            )) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(erased)
}

/// Removes objects, in either tier, of sessions that no longer exist: what an
/// erasure interrupted between its commit and its object deletions left.
/// Returns how many were removed.
pub async fn sweep_erased(
    store: &Arc<dyn Store>,
    objects: &Objects,
) -> Result<u64, LifecycleError> {
    let listed = objects.list("sessions").await?;
    let owners: BTreeSet<(String, String)> = listed
        .iter()
        .filter_map(|o| session_of(&o.key))
        .map(|(h, s)| (h.to_string(), s.to_string()))
        .collect();
    let gone: BTreeSet<(String, String)> = blocking(store, move |store| {
        store.read(|tx| {
            let mut gone = BTreeSet::new();
            for (h, s) in owners {
                if sessions::load(tx, &h, &s)?.is_none() {
                    gone.insert((h, s));
                }
            }
            Ok::<_, LifecycleError>(gone)
        })
    })
    .await?;
    let mut removed = 0;
    for o in &listed {
        if let Some((h, s)) = session_of(&o.key)
            && gone.contains(&(h.to_string(), s.to_string()))
        {
            objects.delete(&o.key).await?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed objects of erased sessions left by an interrupted erasure"
        );
    }
    Ok(removed)
}

/// The host and session an object key belongs to (`sessions/<host>/<id>/…`).
pub fn session_of(key: &str) -> Option<(&str, &str)> {
    let mut parts = key.strip_prefix("sessions/")?.splitn(3, '/');
    let (host, id, _rest) = (parts.next()?, parts.next()?, parts.next()?);
    Some((host, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_name_their_session() {
        assert_eq!(session_of("sessions/h1/s1/up/0001"), Some(("h1", "s1")));
        assert_eq!(session_of("sessions/h1/s1"), None);
        assert_eq!(session_of("users/h1/ann/photo"), None);
    }

    #[test]
    fn a_session_expires_by_the_earlier_of_retention_and_remove_at() {
        let mut s: Session = serde_json::from_value(serde_json::json!({
            "id": "s1", "host_id": "h1", "student": "ann", "subject": "",
            "template_id": "t", "template_version": 1, "proctors": [],
            "proctor_group": null, "open_from": null, "open_until": 500,
            "deadline": null, "duration_limit_secs": null, "extra_secs": 0,
            "status": "created", "started_at": null, "stopped_at": null,
            "averages": { "sums": {} }, "score": null, "review": false,
            "conclusion": null, "tags": [], "identifier": null,
            "callback_url": null, "created_by": "adm", "created_at": 100
        }))
        .expect("a session");
        let day = 86_400;
        assert_eq!(expires_at(&s, None), None);
        // Never ran: counted from the end of its window.
        assert_eq!(expires_at(&s, Some(1)).unwrap().0, 500 + day);
        s.status = Status::Started;
        s.remove_at = Some(1);
        assert_eq!(expires_at(&s, Some(0)), None, "running: never");
        s.status = Status::Stopped;
        s.stopped_at = Some(1000);
        assert_eq!(
            expires_at(&s, Some(2)).unwrap(),
            (1, "the session's remove_at".to_string())
        );
        s.remove_at = Some(1000 + 3 * day);
        assert_eq!(
            expires_at(&s, Some(2)).unwrap(),
            (1000 + 2 * day, "retention of 2 days".to_string())
        );
        assert_eq!(expires_at(&s, None).unwrap().0, 1000 + 3 * day);
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert!(reason("  ").unwrap_err().to_string().starts_with("reason:"));
        assert!(reason(&"x".repeat(501)).is_err());
        assert_eq!(reason(" request #12 ").unwrap(), "request #12");
    }
}
