//! Sessions (the vendor's "rooms"): who takes which exam under which template,
//! when, watched by whom; the status machine; deadlines kept by a durable
//! timer index; metric periods folded into the score; the conclusion.

use super::ProctoringError;
use super::metrics::{self, Averages, Metric};
use super::protocol::{self, Kind};
use super::templates::{self, Template};
use super::webhooks;
use crate::auth::hosts;
use crate::store::{ReadTx, Scan, Store, StoreError, WriteTx, catalog};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

mod accommodations;
pub use accommodations::{Accommodation, Grant, accommodate, effective_weights};

/// `created → started ⇄ paused → stopped → concluded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Started,
    Paused,
    Stopped,
    Concluded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Started => "started",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
            Status::Concluded => "concluded",
        }
    }
}

/// What someone asks a session to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Pause,
    Resume,
    Stop,
    Conclude,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Stop => "stop",
            Action::Conclude => "conclude",
        }
    }

    const ALL: [Action; 5] = [
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::Stop,
        Action::Conclude,
    ];
}

/// The transition table: the one place that says which move is legal.
pub fn next(from: Status, action: Action) -> Option<Status> {
    use Action as A;
    use Status as S;
    match (from, action) {
        (S::Created, A::Start) => Some(S::Started),
        (S::Started, A::Pause) => Some(S::Paused),
        (S::Paused, A::Resume) => Some(S::Started),
        (S::Started | S::Paused, A::Stop) => Some(S::Stopped),
        (S::Stopped, A::Conclude) => Some(S::Concluded),
        _ => None,
    }
}

/// The actions allowed from a status, for the 409 answer.
pub fn allowed(from: Status) -> Vec<&'static str> {
    Action::ALL
        .into_iter()
        .filter(|a| next(from, *a).is_some())
        .map(Action::as_str)
        .collect()
}

/// An exemption for one student: a metric that does not count, a weight
/// changed, or extra time.
/// How a session ended up concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conclusion {
    pub positive: bool,
    pub comment: String,
    pub by: String,
    pub at: u64,
    pub automatic: bool,
}

/// A session record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub host_id: String,
    pub student: String,
    pub subject: String,
    pub template_id: String,
    pub template_version: u32,
    pub proctors: Vec<String>,
    pub proctor_group: Option<String>,
    pub open_from: Option<u64>,
    pub open_until: Option<u64>,
    pub deadline: Option<u64>,
    pub duration_limit_secs: Option<u64>,
    /// Extra time from accommodations (their sum).
    pub extra_secs: u64,
    /// Per-student exemptions, each recorded with who granted it.
    #[serde(default)]
    pub accommodations: Vec<Accommodation>,
    pub status: Status,
    /// The student's screen is locked by a proctor or by the template's
    /// lock-on-violation rule, until a proctor unlocks it.
    #[serde(default)]
    pub locked: bool,
    pub started_at: Option<u64>,
    pub stopped_at: Option<u64>,
    pub averages: Averages,
    pub score: Option<f64>,
    pub review: bool,
    pub conclusion: Option<Conclusion>,
    pub tags: Vec<String>,
    pub identifier: Option<String>,
    pub callback_url: Option<String>,
    pub created_by: String,
    pub created_at: u64,
    /// When the session and its evidence are erased, if earlier than the host's
    /// retention allows (Unix seconds).
    #[serde(default)]
    pub remove_at: Option<u64>,
}

impl Session {
    /// When the session must stop by itself: the earlier of the deadline and
    /// start + duration limit (+ extra time).
    pub fn ends_at(&self) -> Option<u64> {
        let by_duration = self
            .started_at
            .zip(self.duration_limit_secs)
            .map(|(s, d)| s + d + self.extra_secs);
        let by_deadline = self.deadline.map(|d| d + self.extra_secs);
        match (by_duration, by_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The protocol scope of this session.
    pub fn scope(&self) -> String {
        scope(&self.host_id, &self.id)
    }

    /// The object-store prefix under which every object of this session lives.
    pub fn object_prefix(&self) -> String {
        object_prefix(&self.host_id, &self.id)
    }
}

pub fn scope(host_id: &str, id: &str) -> String {
    format!("{host_id}/{id}")
}

/// Recordings, snapshots and attachments of a session all live under this
/// prefix, so export, retention and tier moves find them by one listing.
pub fn object_prefix(host_id: &str, id: &str) -> String {
    format!("sessions/{host_id}/{id}/")
}

/// What creates a session.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    pub student: String,
    pub subject: Option<String>,
    pub template: String,
    #[serde(default)]
    pub proctors: Vec<String>,
    pub proctor_group: Option<String>,
    pub open_from: Option<u64>,
    pub open_until: Option<u64>,
    pub deadline: Option<u64>,
    /// Minutes.
    pub duration_limit: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub identifier: Option<String>,
    pub callback_url: Option<String>,
    /// When the session and its evidence are erased (Unix seconds), if earlier
    /// than the host's retention.
    pub remove_at: Option<u64>,
}

fn key(host_id: &str, id: &str) -> Vec<u8> {
    format!("{host_id}\0{id}").into_bytes()
}

fn ident_key(host_id: &str, identifier: &str) -> Vec<u8> {
    format!("i/{host_id}\0{identifier}").into_bytes()
}

fn timer_key(at: u64, host_id: &str, id: &str) -> Vec<u8> {
    let mut k = b"t/".to_vec();
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(format!("{host_id}\0{id}").as_bytes());
    k
}

pub(super) fn save_in(tx: &mut dyn WriteTx, s: &Session) -> Result<(), StoreError> {
    save(tx, s)
}

pub fn load(tx: &dyn ReadTx, host_id: &str, id: &str) -> Result<Option<Session>, StoreError> {
    tx.get_json(catalog::SESSIONS, &key(host_id, id))
}

/// Reads one session of a host.
pub fn get(store: &dyn Store, host_id: &str, id: &str) -> Result<Session, ProctoringError> {
    store
        .read(|tx| load(tx, host_id, id))?
        .ok_or_else(|| ProctoringError::NotFound(format!("session {id}")))
}

/// Deletes a session's record, its identifier index entry and its timer, for
/// erasure; the caller removes everything derived from it in the same transaction.
pub fn remove_in(tx: &mut dyn WriteTx, s: &Session) -> Result<(), StoreError> {
    tx.delete(catalog::SESSIONS, &key(&s.host_id, &s.id))?;
    if let Some(ident) = &s.identifier {
        tx.delete(catalog::SESSIONS, &ident_key(&s.host_id, ident))?;
    }
    if let Some(at) = s.ends_at() {
        tx.delete(catalog::SESSION_TIMERS, &timer_key(at, &s.host_id, &s.id))?;
    }
    Ok(())
}

fn save(tx: &mut dyn WriteTx, s: &Session) -> Result<(), StoreError> {
    tx.put_json(catalog::SESSIONS, &key(&s.host_id, &s.id), s)
}

/// Keeps the timer index in step with a session's end time.
fn retime(tx: &mut dyn WriteTx, before: Option<u64>, s: &Session) -> Result<(), StoreError> {
    if let Some(at) = before {
        tx.delete(catalog::SESSION_TIMERS, &timer_key(at, &s.host_id, &s.id))?;
    }
    if matches!(s.status, Status::Started | Status::Paused)
        && let Some(at) = s.ends_at()
    {
        tx.put(
            catalog::SESSION_TIMERS,
            &timer_key(at, &s.host_id, &s.id),
            b"",
        )?;
    }
    Ok(())
}

fn text(field: &str, v: &str, max: usize) -> Result<String, ProctoringError> {
    let v = v.trim();
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ProctoringError::invalid(
            field,
            format!("at most {max} characters"),
        ));
    }
    Ok(v.to_string())
}

/// Creates a session: the template must exist, the host must be open and
/// have volume left (counted here, in the same transaction).
pub fn create(
    store: &dyn Store,
    host_id: &str,
    by: &str,
    input: &NewSession,
    now: u64,
) -> Result<Session, ProctoringError> {
    let student = crate::auth::users::normalize_username(&input.student)
        .map_err(|_| ProctoringError::invalid("student", "not a valid username"))?;
    if input.tags.len() > 50 || input.proctors.len() > 50 {
        return Err(ProctoringError::invalid(
            "tags",
            "at most 50 tags and 50 proctors",
        ));
    }
    if let (Some(a), Some(b)) = (input.open_from, input.open_until)
        && a >= b
    {
        return Err(ProctoringError::invalid(
            "open_until",
            "must be after open_from",
        ));
    }
    if input
        .duration_limit
        .is_some_and(|m| m == 0 || m > 60 * 24 * 7)
    {
        return Err(ProctoringError::invalid(
            "duration_limit",
            "1 minute to 7 days",
        ));
    }
    if input.remove_at.is_some_and(|at| at <= now) {
        return Err(ProctoringError::invalid(
            "remove_at",
            "must be in the future (Unix seconds)",
        ));
    }
    if let Some(url) = &input.callback_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(ProctoringError::invalid(
            "callback_url",
            "must be an http(s) URL",
        ));
    }
    let subject = text("subject", input.subject.as_deref().unwrap_or_default(), 300)?;
    let tags = input
        .tags
        .iter()
        .map(|t| text("tags", t, 64))
        .collect::<Result<Vec<_>, _>>()?;
    let identifier = input
        .identifier
        .as_deref()
        .map(|i| text("identifier", i, 200))
        .transpose()?;
    store.write(|tx| {
        let template: Template =
            templates::latest(tx, host_id, &input.template)?.ok_or_else(|| {
                ProctoringError::invalid("template", format!("no template {}", input.template))
            })?;
        if let Some(ident) = &identifier
            && tx
                .get(catalog::SESSIONS, &ident_key(host_id, ident))?
                .is_some()
        {
            return Err(ProctoringError::Conflict(format!(
                "a session with identifier {ident} exists"
            )));
        }
        hosts::consume_session(tx, host_id, now).map_err(ProctoringError::Host)?;
        let session = Session {
            id: crate::auth::random_token(9),
            host_id: host_id.to_string(),
            student: student.clone(),
            subject: subject.clone(),
            template_id: template.id.clone(),
            template_version: template.version,
            proctors: input
                .proctors
                .iter()
                .map(|p| p.trim().to_lowercase())
                .collect(),
            proctor_group: input.proctor_group.clone(),
            open_from: input.open_from,
            open_until: input.open_until,
            deadline: input.deadline,
            duration_limit_secs: input.duration_limit.map(|m| m * 60),
            extra_secs: 0,
            accommodations: Vec::new(),
            status: Status::Created,
            locked: false,
            started_at: None,
            stopped_at: None,
            averages: Averages::default(),
            score: None,
            review: false,
            conclusion: None,
            tags: tags.clone(),
            identifier: identifier.clone(),
            callback_url: input.callback_url.clone(),
            created_by: by.to_string(),
            created_at: now,
            remove_at: input.remove_at,
        };
        if let Some(ident) = &identifier {
            tx.put(
                catalog::SESSIONS,
                &ident_key(host_id, ident),
                session.id.as_bytes(),
            )?;
        }
        save(tx, &session)?;
        protocol::append(
            tx,
            &session.scope(),
            now,
            by,
            Kind::Status,
            serde_json::json!({ "status": "created" }),
        )?;
        Ok(session)
    })
}

/// The session an LMS identifier names, if any.
pub fn by_identifier(
    store: &dyn Store,
    host_id: &str,
    identifier: &str,
) -> Result<Option<Session>, ProctoringError> {
    Ok(store.read(|tx| {
        let Some(id) = tx.get(catalog::SESSIONS, &ident_key(host_id, identifier))? else {
            return Ok::<_, StoreError>(None);
        };
        load(tx, host_id, &String::from_utf8_lossy(&id))
    })?)
}

/// Applies an action at time `at`, appending the change to the protocol.
pub fn act(
    store: &dyn Store,
    host_id: &str,
    id: &str,
    by: &str,
    action: Action,
    at: u64,
    conclusion: Option<(bool, String)>,
) -> Result<Session, ProctoringError> {
    store.write(|tx| act_in(tx, host_id, id, by, action, at, conclusion))
}

fn act_in(
    tx: &mut dyn WriteTx,
    host_id: &str,
    id: &str,
    by: &str,
    action: Action,
    at: u64,
    conclusion: Option<(bool, String)>,
) -> Result<Session, ProctoringError> {
    let mut s =
        load(tx, host_id, id)?.ok_or_else(|| ProctoringError::NotFound(format!("session {id}")))?;
    let to = next(s.status, action).ok_or_else(|| ProctoringError::IllegalMove {
        from: s.status.as_str(),
        action: action.as_str(),
        allowed: allowed(s.status),
    })?;
    if action == Action::Start {
        if s.open_from.is_some_and(|t| at < t) {
            return Err(ProctoringError::NotOpen(
                "the session's window has not opened yet".into(),
            ));
        }
        if s.open_until.is_some_and(|t| at > t) || s.deadline.is_some_and(|t| at >= t) {
            return Err(ProctoringError::NotOpen(
                "the session's window has closed".into(),
            ));
        }
    }
    let before = s
        .ends_at()
        .filter(|_| matches!(s.status, Status::Started | Status::Paused));
    s.status = to;
    match action {
        Action::Start => s.started_at = Some(at),
        Action::Stop => s.stopped_at = Some(at),
        _ => {}
    }
    let mut detail = serde_json::json!({ "status": to.as_str(), "action": action.as_str() });
    if action == Action::Conclude {
        let (positive, comment) = conclusion.unwrap_or((true, String::new()));
        let comment = text("comment", &comment, 2000)?;
        detail["positive"] = positive.into();
        detail["comment"] = comment.clone().into();
        s.conclusion = Some(Conclusion {
            positive,
            comment,
            by: by.to_string(),
            at,
            automatic: false,
        });
    }
    retime(tx, before, &s)?;
    save(tx, &s)?;
    protocol::append(tx, &s.scope(), at, by, Kind::Status, detail)?;
    // The result goes into the webhook outbox in this same transaction.
    match action {
        Action::Stop => {
            webhooks::enqueue(tx, &s, webhooks::Event::Stopped, at)?;
            auto_conclude(tx, &mut s, at)?;
        }
        Action::Conclude => {
            webhooks::enqueue(tx, &s, webhooks::Event::Concluded, at)?;
        }
        _ => {}
    }
    Ok(s)
}

/// A template's auto-conclusion rule, applied at stop, marked automatic.
fn auto_conclude(tx: &mut dyn WriteTx, s: &mut Session, at: u64) -> Result<(), ProctoringError> {
    let Some(t) = templates::version(tx, &s.host_id, &s.template_id, s.template_version)? else {
        return Ok(());
    };
    let Some(rule) = &t.auto_conclusion else {
        return Ok(());
    };
    let score = metrics::score(&s.averages, &effective_weights(&t, s), t.threshold).score;
    let positive = match (rule.positive_at_or_above, rule.negative_below) {
        (Some(p), _) if score >= p => true,
        (_, Some(n)) if score < n => false,
        _ => return Ok(()),
    };
    s.status = Status::Concluded;
    s.conclusion = Some(Conclusion {
        positive,
        comment: format!("concluded automatically at score {score}"),
        by: "invigil".into(),
        at,
        automatic: true,
    });
    save(tx, s)?;
    protocol::append(
        tx,
        &s.scope(),
        at,
        "invigil",
        Kind::Status,
        serde_json::json!({ "status": "concluded", "positive": positive, "automatic": true, "score": score }),
    )?;
    webhooks::enqueue(tx, s, webhooks::Event::Concluded, at)?;
    Ok(())
}

/// Records one period's metric values (0–100 each) and refreshes the score.
pub fn add_period(
    store: &dyn Store,
    host_id: &str,
    id: &str,
    by: &str,
    values: &BTreeMap<Metric, f64>,
    at: u64,
) -> Result<Session, ProctoringError> {
    if values
        .values()
        .any(|v| !v.is_finite() || !(0.0..=100.0).contains(v))
    {
        return Err(ProctoringError::invalid(
            "values",
            "each value must be between 0 and 100",
        ));
    }
    store.write(|tx| {
        let mut s = load(tx, host_id, id)?
            .ok_or_else(|| ProctoringError::NotFound(format!("session {id}")))?;
        if s.status != Status::Started {
            return Err(ProctoringError::IllegalMove {
                from: s.status.as_str(),
                action: "sample",
                allowed: allowed(s.status),
            });
        }
        let t = templates::version(tx, host_id, &s.template_id, s.template_version)?
            .ok_or_else(|| ProctoringError::NotFound(format!("template {}", s.template_id)))?;
        s.averages.add_period(values);
        let score = metrics::score(&s.averages, &effective_weights(&t, &s), t.threshold);
        s.score = Some(score.score);
        s.review = score.review;
        save(tx, &s)?;
        protocol::append(
            tx,
            &s.scope(),
            at,
            by,
            Kind::Metrics,
            serde_json::json!({ "values": values, "score": score.score }),
        )?;
        Ok(s)
    })
}

/// The explained score, from the live averages.
pub fn score(store: &dyn Store, s: &Session) -> Result<metrics::Score, ProctoringError> {
    let t = store
        .read(|tx| templates::version(tx, &s.host_id, &s.template_id, s.template_version))?
        .ok_or_else(|| ProctoringError::NotFound(format!("template {}", s.template_id)))?;
    Ok(metrics::score(
        &s.averages,
        &effective_weights(&t, s),
        t.threshold,
    ))
}

/// Stops every running session whose end time is at or before `now`, stamped
/// with its end time (not `now`), so a deadline that passed while invigil was
/// down is honoured as if it had been up. Returns the sessions stopped.
pub fn stop_due(store: &dyn Store, now: u64) -> Result<Vec<Session>, ProctoringError> {
    let mut end = b"t/".to_vec();
    end.extend_from_slice(&now.to_be_bytes());
    end.push(0xff);
    let due = store.scan(
        catalog::SESSION_TIMERS,
        &Scan::bounds(
            Bound::Included(b"t/".as_slice()),
            Bound::Included(end.as_slice()),
        )
        .limit(1000),
    )?;
    let mut stopped = Vec::new();
    for (k, _) in due {
        let at = k
            .get(2..10)
            .and_then(|b| b.try_into().ok())
            .map_or(now, u64::from_be_bytes);
        let rest = String::from_utf8_lossy(&k[10..]).to_string();
        let Some((host_id, id)) = rest.split_once('\0') else {
            continue;
        };
        let result = store.write(|tx| {
            tx.delete(catalog::SESSION_TIMERS, &k)?;
            match load(tx, host_id, id)? {
                Some(s)
                    if matches!(s.status, Status::Started | Status::Paused)
                        && s.ends_at() == Some(at) =>
                {
                    act_in(tx, host_id, id, "invigil", Action::Stop, at, None).map(Some)
                }
                _ => Ok(None),
            }
        });
        match result {
            Ok(Some(s)) => stopped.push(s),
            Ok(None) => {}
            Err(e) => tracing::warn!(session = id, "stopping at the deadline failed: {e}"),
        }
    }
    Ok(stopped)
}

/// The earliest pending end time, for the timer task to sleep until.
pub fn next_due(store: &dyn Store) -> Result<Option<u64>, ProctoringError> {
    let first = store.scan(catalog::SESSION_TIMERS, &Scan::prefix(b"t/").limit(1))?;
    Ok(first
        .first()
        .and_then(|(k, _)| k.get(2..10)?.try_into().ok())
        .map(u64::from_be_bytes))
}

/// Filters for listing sessions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Query {
    pub status: Option<Status>,
    pub student: Option<String>,
    pub proctor: Option<String>,
    pub tag: Option<String>,
    pub q: Option<String>,
    pub review: Option<bool>,
}

/// Every session of a host, in key order (reports).
pub fn all(store: &dyn Store, host_id: &str) -> Result<Vec<Session>, ProctoringError> {
    let prefix = format!("{host_id}\0").into_bytes();
    Ok(store
        .scan(catalog::SESSIONS, &Scan::prefix(&prefix))?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice::<Session>(&v).ok())
        .collect())
}

/// A host's sessions matching `query`, newest first, at most `limit`.
pub fn list(
    store: &dyn Store,
    host_id: &str,
    query: &Query,
    limit: usize,
) -> Result<Vec<Session>, ProctoringError> {
    let needle = query.q.as_ref().map(|q| q.to_lowercase());
    let mut out: Vec<Session> = all(store, host_id)?
        .into_iter()
        .filter(|s| {
            query.status.is_none_or(|st| s.status == st)
                && query.student.as_ref().is_none_or(|u| &s.student == u)
                && query
                    .proctor
                    .as_ref()
                    .is_none_or(|p| s.proctors.contains(p))
                && query.tag.as_ref().is_none_or(|t| s.tags.contains(t))
                && query.review.is_none_or(|r| s.review == r)
                && needle.as_ref().is_none_or(|n| {
                    s.subject.to_lowercase().contains(n) || s.student.contains(n.as_str())
                })
        })
        .collect();
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    out.truncate(limit.clamp(1, 1000));
    Ok(out)
}

#[cfg(test)]
mod tests;
