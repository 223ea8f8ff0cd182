//! A session's room: the connections that joined it, and the lock that
//! orders what is recorded for the session against joins, so a joining
//! client gets every entry either in its `joined` frame or live, never
//! neither (and never both).

use super::outbox::Outbox;
use crate::proctoring::access::Standing;
use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A serialized frame, shared by every connection it goes to.
pub type Frame = Utf8Bytes;

/// Serializes a frame once for any number of connections.
pub fn frame(v: &Value) -> Frame {
    Utf8Bytes::from(v.to_string())
}

/// One connection in a room.
pub struct Member {
    pub conn: u64,
    pub user: String,
    pub standing: Standing,
    pub outbox: Arc<Outbox<Frame>>,
}

#[derive(Default)]
pub struct RoomState {
    pub members: Vec<Member>,
    /// Joins and recordings in progress; the room is kept while any runs.
    pub holds: usize,
}

#[derive(Default)]
pub struct Room {
    /// Held while a recording for this session is written and fanned out,
    /// and while a join reads what it missed and enters the room.
    pub order: tokio::sync::Mutex<()>,
    state: Mutex<RoomState>,
}

impl Room {
    pub fn state(&self) -> MutexGuard<'_, RoomState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a frame that must arrive to every member but `except`.
    pub fn send(&self, f: &Frame, except: Option<u64>) {
        for m in &self.state().members {
            if Some(m.conn) != except {
                m.outbox.push(f.clone());
            }
        }
    }

    /// Sends a frame to every connection of `user`; false when there is none.
    pub fn send_to(&self, user: &str, f: &Frame) -> bool {
        let mut any = false;
        for m in self.state().members.iter().filter(|m| m.user == user) {
            m.outbox.push(f.clone());
            any = true;
        }
        any
    }

    /// Sets the latest live metrics for the staff in the room.
    pub fn send_metrics(&self, session: &str, f: &Frame) {
        for m in &self.state().members {
            if m.standing == Standing::Staff {
                m.outbox.push_latest(session, f.clone());
            }
        }
    }

    /// Who is connected: each user once, with their part.
    pub fn presence(&self, session: &str) -> Value {
        let mut users = BTreeMap::new();
        for m in &self.state().members {
            let part = match m.standing {
                Standing::Student => "student",
                Standing::Staff => "staff",
            };
            *users.entry((m.user.clone(), part)).or_insert(0u32) += 1;
        }
        let members: Vec<Value> = users
            .into_iter()
            .map(|((user, part), connections)| {
                json!({ "user": user, "role": part, "connections": connections })
            })
            .collect();
        json!({ "type": "presence", "session": session, "members": members })
    }
}
