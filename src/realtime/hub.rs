//! The hub: connections, the rooms they joined, and what each client frame
//! does. Recording goes through `proctoring` (in a blocking task, inside a
//! store transaction) and only then is acknowledged and fanned out.

use super::frames::{self, Incoming, LiveAction};
use super::heartbeat::Watch;
use super::outbox::Outbox;
use super::ratelimit::{Bucket, Verdict};
use super::room::{Frame, Member, Room, frame};
use super::{Limits, RealtimeError};
use crate::app::tasks::Shutdown;
use crate::auth::{Principal, now_secs};
use crate::proctoring::access::{self, Standing};
use crate::proctoring::metrics::Metric;
use crate::proctoring::sessions::{self, Action, Session};
use crate::proctoring::{ProctoringError, live, protocol, templates};
use crate::store::Store;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Who a connection belongs to, as the API guard authenticated it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub principal: Principal,
    /// The host the connection was opened on; only its sessions can be joined.
    pub host_id: String,
    /// The caller's groups (proctors are assigned by group).
    pub groups: Vec<String>,
}

/// A room is a session of a host.
pub(super) type RoomKey = (String, String);

/// One open connection.
pub struct Conn {
    pub id: u64,
    pub who: Identity,
    pub user: String,
    pub outbox: Arc<Outbox<Frame>>,
    joined: Mutex<BTreeMap<String, Standing>>,
    bucket: Mutex<Bucket>,
    /// The close code and reason the writer sends last.
    pub close: Mutex<(u16, String)>,
}

impl Conn {
    fn joined(&self) -> MutexGuard<'_, BTreeMap<String, Standing>> {
        lock(&self.joined)
    }

    fn standing(&self, session: &str) -> Result<Standing, RealtimeError> {
        self.joined()
            .get(session)
            .copied()
            .ok_or_else(|| RealtimeError::NotJoined(session.to_string()))
    }

    /// Queues a frame for this connection only.
    pub fn send(&self, v: &Value) {
        self.outbox.push(frame(v));
    }

    /// Asks the writer to send what is queued, then close with `code`.
    pub fn close(&self, code: u16, reason: &str) {
        *lock(&self.close) = (code, reason.to_string());
        self.outbox.close();
    }

    /// Whether a frame may be handled now (the per-connection rate).
    pub fn admit(&self) -> Verdict {
        lock(&self.bucket).take(Instant::now())
    }
}

/// Load of one connection, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnStats {
    pub user: String,
    pub sessions: Vec<String>,
    /// Frames that must arrive, waiting.
    pub queued: usize,
    /// Sessions with a live-metrics frame waiting.
    pub metrics_pending: usize,
}

pub struct Hub {
    pub(super) store: Arc<dyn Store>,
    pub limits: Limits,
    rooms: Mutex<HashMap<RoomKey, Arc<Room>>>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    pub(super) watches: Mutex<HashMap<RoomKey, Watch>>,
    next_id: AtomicU64,
    pub(super) shutdown: Shutdown,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps a room in the map while a join or a recording uses it.
pub(super) struct Held<'a> {
    hub: &'a Hub,
    key: RoomKey,
    pub room: Arc<Room>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut rooms = lock(&self.hub.rooms);
        let mut st = self.room.state();
        st.holds -= 1;
        if st.holds == 0 && st.members.is_empty() {
            drop(st);
            if rooms
                .get(&self.key)
                .is_some_and(|r| Arc::ptr_eq(r, &self.room))
            {
                rooms.remove(&self.key);
            }
        }
    }
}

impl Hub {
    pub fn new(store: Arc<dyn Store>, limits: Limits, shutdown: Shutdown) -> Self {
        Self {
            store,
            limits,
            rooms: Mutex::default(),
            conns: Mutex::default(),
            watches: Mutex::default(),
            next_id: AtomicU64::new(1),
            shutdown,
        }
    }

    pub(super) fn hold(&self, key: &RoomKey) -> Held<'_> {
        let mut rooms = lock(&self.rooms);
        let room = rooms.entry(key.clone()).or_default().clone();
        room.state().holds += 1;
        Held {
            hub: self,
            key: key.clone(),
            room,
        }
    }

    /// Registers a new connection and greets it.
    pub fn connect(&self, who: Identity) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let l = &self.limits;
        let conn = Arc::new(Conn {
            id,
            user: who.principal.actor(),
            who,
            outbox: Arc::new(Outbox::new(l.queue)),
            joined: Mutex::default(),
            bucket: Mutex::new(Bucket::new(
                l.burst,
                l.per_second,
                l.strikes,
                Instant::now(),
            )),
            close: Mutex::new((1000, String::new())),
        });
        lock(&self.conns).insert(id, conn.clone());
        conn.send(&json!({
            "type": "hello",
            "user": conn.user,
            "role": conn.who.principal.role().as_str(),
            "limits": { "frame_bytes": l.frame_bytes, "rooms": l.rooms, "burst": l.burst, "per_second": l.per_second },
        }));
        conn
    }

    /// Removes a connection from the hub and from every room it joined.
    pub fn disconnect(&self, conn: &Conn) {
        conn.outbox.close();
        lock(&self.conns).remove(&conn.id);
        let sessions: Vec<String> = std::mem::take(&mut *conn.joined()).into_keys().collect();
        for session in sessions {
            self.leave_room(conn, &session);
        }
    }

    fn leave_room(&self, conn: &Conn, session: &str) {
        let key = (conn.who.host_id.clone(), session.to_string());
        let room = {
            let mut rooms = lock(&self.rooms);
            let Some(room) = rooms.get(&key).cloned() else {
                return;
            };
            let mut st = room.state();
            st.members.retain(|m| m.conn != conn.id);
            if st.members.is_empty() && st.holds == 0 {
                drop(st);
                rooms.remove(&key);
                return;
            }
            drop(st);
            room
        };
        room.send(&frame(&room.presence(session)), None);
    }

    /// What every connection has waiting.
    pub fn stats(&self) -> Vec<ConnStats> {
        let conns: Vec<Arc<Conn>> = lock(&self.conns).values().cloned().collect();
        conns
            .iter()
            .map(|c| {
                let (queued, metrics_pending) = c.outbox.depth();
                ConnStats {
                    user: c.user.clone(),
                    sessions: c.joined().keys().cloned().collect(),
                    queued,
                    metrics_pending,
                }
            })
            .collect()
    }

    /// Runs domain work off the async threads (store commits fsync).
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, ProctoringError> + Send + 'static,
    ) -> Result<T, RealtimeError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| RealtimeError::Internal(e.to_string()))?
            .map_err(RealtimeError::from)
    }

    /// A frame from the student counts as a heartbeat for their sessions.
    pub fn heard(&self, conn: &Conn) {
        let now = Instant::now();
        let mut watches = lock(&self.watches);
        for (session, standing) in conn.joined().iter() {
            if *standing == Standing::Student
                && let Some(w) = watches.get_mut(&(conn.who.host_id.clone(), session.clone()))
            {
                w.heard(now);
            }
        }
    }

    /// Does what a client frame asks.
    pub async fn dispatch(
        &self,
        conn: &Conn,
        reference: Option<&Value>,
        frame_in: Incoming,
    ) -> Result<(), RealtimeError> {
        match frame_in {
            Incoming::Ping => {
                let mut pong = json!({ "type": "pong", "time": now_secs() });
                if let Some(r) = reference {
                    pong["ref"] = r.clone();
                }
                conn.send(&pong);
                Ok(())
            }
            Incoming::Join { session, after_seq } => {
                self.join(conn, reference, &session, after_seq).await
            }
            Incoming::Leave { session } => {
                conn.standing(&session)?;
                conn.joined().remove(&session);
                self.leave_room(conn, &session);
                conn.send(&frames::ack(reference, &session, None));
                Ok(())
            }
            Incoming::Chat {
                session,
                text,
                attachments,
            } => {
                conn.standing(&session)?;
                let key = (conn.who.host_id.clone(), session.clone());
                let (host, id, by) = (key.0.clone(), session.clone(), conn.user.clone());
                let held = self.hold(&key);
                let _order = held.room.order.lock().await;
                let e = self
                    .blocking(move |s| {
                        live::chat_with(s, &host, &id, &by, &text, &attachments, now_secs())
                    })
                    .await?;
                conn.send(&frames::ack(reference, &session, Some(e.seq)));
                let mut out = json!({ "type": "chat", "session": session, "seq": e.seq, "time": e.time,
                                      "author": e.author, "text": e.data["text"] });
                if let Some(ids) = e.data.get("attachments") {
                    out["attachments"] = ids.clone();
                }
                held.room.send(&frame(&out), Some(conn.id));
                Ok(())
            }
            Incoming::Signal {
                session,
                to,
                payload,
            } => {
                conn.standing(&session)?;
                let key = (conn.who.host_id.clone(), session.clone());
                let held = self.hold(&key);
                let out = json!({ "type": "signal", "session": session, "from": conn.user, "payload": payload });
                if to == conn.user || !held.room.send_to(&to, &frame(&out)) {
                    return Err(RealtimeError::NotConnected(to, session));
                }
                Ok(())
            }
            Incoming::Samples { session, values } => {
                self.samples(conn, reference, session, values).await
            }
            Incoming::Action {
                session,
                action,
                positive,
                comment,
            } => {
                self.action(conn, reference, session, action, positive, comment)
                    .await
            }
        }
    }

    async fn join(
        &self,
        conn: &Conn,
        reference: Option<&Value>,
        session: &str,
        after_seq: Option<u64>,
    ) -> Result<(), RealtimeError> {
        let again = conn.joined().contains_key(session);
        if !again && conn.joined().len() >= self.limits.rooms {
            return Err(RealtimeError::TooManyRooms(self.limits.rooms));
        }
        let key = (conn.who.host_id.clone(), session.to_string());
        let held = self.hold(&key);
        let _order = held.room.order.lock().await;
        let (host, id, page) = (key.0.clone(), key.1.clone(), self.limits.resume_page);
        let (s, missed, last_seq, period, score) = self
            .blocking(move |store| {
                let s = sessions::get(store, &host, &id)?;
                let scope = s.scope();
                let missed = match after_seq {
                    Some(after) => protocol::since(store, &scope, after, page + 1)?,
                    None => Vec::new(),
                };
                let last_seq = protocol::list(store, &scope, None, None, 1)?
                    .first()
                    .map_or(0, |e| e.seq);
                let period = store
                    .read(|tx| templates::version(tx, &host, &s.template_id, s.template_version))?
                    .map_or(10, |t| t.period_secs);
                let score = sessions::score(store, &s).ok();
                Ok((s, missed, last_seq, period, score))
            })
            .await
            .map_err(|e| match e {
                RealtimeError::Proctoring(ProctoringError::NotFound(_)) => {
                    RealtimeError::NotFound(session.to_string())
                }
                other => other,
            })?;
        // Anything the caller may not see does not exist for them.
        let standing = access::standing(&s, &conn.who.principal, &conn.who.groups)
            .ok_or_else(|| RealtimeError::NotFound(session.to_string()))?;
        let more = missed.len() > page;
        let missed = &missed[..missed.len().min(page)];
        let period = Duration::from_secs(u64::from(period.max(1)));
        let mut joined = json!({
            "type": "joined", "session": s.id, "status": s.status, "locked": s.locked,
            "student": s.student,
            "subject": s.subject, "you": part(standing), "last_seq": last_seq,
            "missed": missed, "more": more,
            // Students' heartbeats decide n1: twice per sampling period.
            "heartbeat_ms": period.as_millis() / 2,
        });
        if let Some(r) = reference {
            joined["ref"] = r.clone();
        }
        if standing == Standing::Staff {
            joined["metrics"] = metrics_body(&s, score.as_ref().map(|s| s.review));
        }
        conn.send(&joined);
        if !again {
            held.room.state().members.push(Member {
                conn: conn.id,
                user: conn.user.clone(),
                standing,
                outbox: conn.outbox.clone(),
            });
            conn.joined().insert(s.id.clone(), standing);
        }
        if standing == Standing::Student {
            lock(&self.watches)
                .entry(key)
                .or_insert_with(|| Watch::new(period, Instant::now()))
                .heard(Instant::now());
        }
        held.room.send(&frame(&held.room.presence(&s.id)), None);
        Ok(())
    }

    async fn samples(
        &self,
        conn: &Conn,
        reference: Option<&Value>,
        session: String,
        mut values: BTreeMap<Metric, f64>,
    ) -> Result<(), RealtimeError> {
        if conn.standing(&session)? != Standing::Student {
            return Err(RealtimeError::Forbidden(
                "metric samples come from the student's browser".into(),
            ));
        }
        if let Some(m) = values.keys().find(|m| m.server_side()) {
            return Err(RealtimeError::invalid(
                "values",
                format!("{m} is measured by the server, not the browser"),
            ));
        }
        // The samples came over the socket, so the network was there.
        values.insert(Metric::N1, 0.0);
        let key = (conn.who.host_id.clone(), session.clone());
        let by = conn.user.clone();
        self.record_period(&key, by, values.clone()).await?;
        self.lock_on_violation(&key, values).await?;
        conn.send(&frames::ack(reference, &session, None));
        Ok(())
    }

    /// Records one metric period and sends the new values to the staff.
    pub(super) async fn record_period(
        &self,
        key: &RoomKey,
        by: String,
        values: BTreeMap<Metric, f64>,
    ) -> Result<Session, RealtimeError> {
        let held = self.hold(key);
        let _order = held.room.order.lock().await;
        let (host, id) = key.clone();
        let period = values.clone();
        let s = self
            .blocking(move |s| sessions::add_period(s, &host, &id, &by, &values, now_secs()))
            .await?;
        let mut out = json!({ "type": "metrics", "session": s.id, "period": period });
        if let (Value::Object(o), Value::Object(body)) = (&mut out, metrics_body(&s, None)) {
            o.extend(body);
        }
        held.room.send_metrics(&s.id, &frame(&out));
        Ok(s)
    }

    /// Applies the template's lock-on-violation rule to a period and sends
    /// the lock to everyone in the room (the student's page covers itself).
    pub(super) async fn lock_on_violation(
        &self,
        key: &RoomKey,
        values: BTreeMap<Metric, f64>,
    ) -> Result<(), RealtimeError> {
        let held = self.hold(key);
        let _order = held.room.order.lock().await;
        let (host, id) = key.clone();
        let locked = self
            .blocking(move |s| live::lock_on_violation(s, &host, &id, &values, now_secs()))
            .await?;
        if let Some(e) = locked {
            held.room.send(&frame(&action_frame(&key.1, &e)), None);
        }
        Ok(())
    }

    async fn action(
        &self,
        conn: &Conn,
        reference: Option<&Value>,
        session: String,
        action: LiveAction,
        positive: Option<bool>,
        comment: Option<String>,
    ) -> Result<(), RealtimeError> {
        if conn.standing(&session)? != Standing::Staff {
            return Err(RealtimeError::Forbidden(
                "only proctors and administrators act on a session".into(),
            ));
        }
        let key = (conn.who.host_id.clone(), session.clone());
        let (host, id, by) = (key.0.clone(), session.clone(), conn.user.clone());
        let held = self.hold(&key);
        let _order = held.room.order.lock().await;
        let status_action = match action {
            LiveAction::Warn | LiveAction::Lock | LiveAction::Unlock => {
                let live_action = match action {
                    LiveAction::Lock => live::Live::Lock,
                    LiveAction::Unlock => live::Live::Unlock,
                    _ => live::Live::Warn,
                };
                let comment = comment.unwrap_or_default();
                let e = self
                    .blocking(move |s| {
                        live::act(s, &host, &id, &by, live_action, &comment, now_secs())
                    })
                    .await?;
                conn.send(&frames::ack(reference, &session, Some(e.seq)));
                held.room
                    .send(&frame(&action_frame(&session, &e)), Some(conn.id));
                return Ok(());
            }
            LiveAction::Pause => Action::Pause,
            LiveAction::Resume => Action::Resume,
            LiveAction::Stop => Action::Stop,
            LiveAction::Conclude => Action::Conclude,
        };
        let conclusion = match (status_action, positive) {
            (Action::Conclude, Some(p)) => Some((p, comment.unwrap_or_default())),
            (Action::Conclude, None) => {
                return Err(RealtimeError::invalid(
                    "positive",
                    "a conclusion needs positive: true or false",
                ));
            }
            _ => None,
        };
        let s = self
            .blocking(move |s| {
                sessions::act(s, &host, &id, &by, status_action, now_secs(), conclusion)
            })
            .await?;
        if status_action == Action::Resume {
            // A pause is not a network outage: n1 counts from the resume.
            if let Some(w) = lock(&self.watches).get_mut(&key) {
                w.heard(Instant::now());
            }
        }
        let mut ack = frames::ack(reference, &session, None);
        ack["status"] = json!(s.status);
        conn.send(&ack);
        let out = json!({ "type": "status", "session": s.id, "status": s.status,
                          "action": status_action.as_str(), "by": conn.user, "conclusion": s.conclusion });
        held.room.send(&frame(&out), Some(conn.id));
        Ok(())
    }
}

impl Hub {
    /// Tells a session's room about a status change made elsewhere (REST, the
    /// deadline timer), so connected clients see it without rejoining.
    pub fn announce_status(&self, s: &Session, action: Action, by: &str) {
        let out = json!({ "type": "status", "session": s.id, "status": s.status,
                          "action": action.as_str(), "by": by, "conclusion": s.conclusion });
        if let Some(room) = self.existing_room(&s.host_id, &s.id) {
            room.send(&frame(&out), None);
        }
    }

    /// Tells a session's room about a live action recorded elsewhere (the
    /// lock-on-violation rule on a period posted over REST).
    pub fn announce_action(&self, s: &Session, e: &protocol::Entry) {
        if let Some(room) = self.existing_room(&s.host_id, &s.id) {
            room.send(&frame(&action_frame(&s.id, e)), None);
        }
    }

    /// Tells the staff in a session's room about a metric period posted over REST.
    pub fn announce_metrics(&self, s: &Session, period: &BTreeMap<Metric, f64>) {
        let mut out = json!({ "type": "metrics", "session": s.id, "period": period });
        if let (Value::Object(o), Value::Object(body)) = (&mut out, metrics_body(s, None)) {
            o.extend(body);
        }
        if let Some(room) = self.existing_room(&s.host_id, &s.id) {
            room.send_metrics(&s.id, &frame(&out));
        }
    }

    /// The room of a session if anyone is in it (announcing never creates one).
    fn existing_room(&self, host_id: &str, id: &str) -> Option<Arc<super::room::Room>> {
        lock(&self.rooms)
            .get(&(host_id.to_string(), id.to_string()))
            .cloned()
    }
}

/// A live action (warn, lock, unlock) as the room sees it.
fn action_frame(session: &str, e: &protocol::Entry) -> Value {
    let mut out = json!({ "type": "action", "session": session, "by": e.author,
                          "seq": e.seq, "time": e.time });
    if let (Value::Object(o), Value::Object(data)) = (&mut out, &e.data) {
        for (k, v) in data {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

fn part(s: Standing) -> &'static str {
    match s {
        Standing::Student => "student",
        Standing::Staff => "staff",
    }
}

/// The live figures of a session as the staff see them.
fn metrics_body(s: &Session, review: Option<bool>) -> Value {
    let averages: BTreeMap<String, f64> = s
        .averages
        .all()
        .into_iter()
        .map(|(m, v)| (m.code().to_string(), v))
        .collect();
    json!({ "averages": averages, "score": s.score, "review": review.unwrap_or(s.review) })
}
