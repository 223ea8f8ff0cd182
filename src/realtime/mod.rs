//! The live hub behind `GET /api/v1/ws`: per-session rooms with the student
//! and the proctors, presence, chat, WebRTC signaling, metric samples in and
//! live metrics out, proctor actions, and heartbeats that drive `n1`.
//!
//! Everything persisted goes through `proctoring` in store transactions
//! before it is acknowledged or relayed; this module only moves frames.
//! Each connection has a bounded queue: chat, actions and signaling are never
//! dropped (a connection that cannot keep up with them is closed and resumes
//! from its last sequence number), live metrics coalesce (latest wins).

mod conn;
pub mod frames;
mod heartbeat;
mod hub;
pub mod outbox;
mod ratelimit;
mod room;

pub use conn::serve;
pub use hub::{ConnStats, Hub, Identity};
pub use room::Frame;

use crate::proctoring::ProctoringError;
use std::time::Duration;

/// The hub's bounds. Fixed for now; one place to change them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest client frame handled; larger ones get an error frame.
    pub frame_bytes: usize,
    /// Largest frame the WebSocket layer reads at all; beyond it the
    /// connection is closed (it cannot be resynchronised).
    pub hard_frame_bytes: usize,
    /// Sessions one connection may join (a proctor's wall).
    pub rooms: usize,
    /// Frames that must never be dropped, queued per connection before the
    /// connection is closed as too slow.
    pub queue: usize,
    /// Token bucket per connection: burst and refill per second.
    pub burst: u32,
    pub per_second: u32,
    /// Refused frames (over the rate) before the connection is closed.
    pub strikes: u32,
    /// A connection that sends nothing for this long is closed.
    pub idle: Duration,
    /// Protocol entries sent in one `joined` frame; the client asks again
    /// from the last one when `more` is true.
    pub resume_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            frame_bytes: 64 * 1024,
            hard_frame_bytes: 1024 * 1024,
            rooms: 30,
            queue: 128,
            burst: 200,
            per_second: 40,
            strikes: 50,
            idle: Duration::from_secs(60),
            resume_page: 500,
        }
    }
}

/// Errors of the hub, each answered as an error frame with [`code`](RealtimeError::code).
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("frames are JSON text; binary frames are not accepted")]
    Binary,
    #[error("the frame has {0} bytes; the limit is {1}")]
    TooLarge(usize, usize),
    #[error("not JSON: {0}")]
    Json(String),
    #[error("unknown message type {0:?}; known: {known}", known = frames::KNOWN.join(", "))]
    UnknownType(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("session {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("join session {0} first")]
    NotJoined(String),
    #[error("one connection may join at most {0} sessions")]
    TooManyRooms(usize),
    #[error("{0} is not connected to session {1}")]
    NotConnected(String, String),
    #[error("too many messages; slow down")]
    RateLimited,
    #[error(transparent)]
    Proctoring(#[from] ProctoringError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RealtimeError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        RealtimeError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The stable code of the error frame (the REST API's codes where they
    /// mean the same).
    pub fn code(&self) -> &'static str {
        use ProctoringError as P;
        match self {
            RealtimeError::Binary => "unsupported_frame",
            RealtimeError::TooLarge(..) => "payload_too_large",
            RealtimeError::Json(_) => "invalid_json",
            RealtimeError::UnknownType(_) => "unknown_type",
            RealtimeError::Invalid { .. } => "invalid_field",
            RealtimeError::NotFound(_) => "not_found",
            RealtimeError::Forbidden(_) => "forbidden",
            RealtimeError::NotJoined(_) => "not_joined",
            RealtimeError::TooManyRooms(_) => "too_many_rooms",
            RealtimeError::NotConnected(..) => "not_connected",
            RealtimeError::RateLimited => "too_many_requests",
            RealtimeError::Proctoring(p) => match p {
                P::Invalid { .. } => "invalid_field",
                P::NotFound(_) => "not_found",
                P::Conflict(_) => "conflict",
                P::IllegalMove { .. } => "illegal_transition",
                P::NotOpen(_) => "session_not_open",
                P::Host(_) => "forbidden",
                P::Store(_) => "storage_error",
            },
            RealtimeError::Internal(_) => "internal",
        }
    }

    /// The message a client sees: internal details stay in the log.
    pub fn message(&self) -> String {
        match self {
            RealtimeError::Proctoring(ProctoringError::Store(e)) => {
                tracing::error!("hub: storage: {e}");
                "an internal error occurred; it has been logged".into()
            }
            RealtimeError::Internal(e) => {
                tracing::error!("hub: {e}");
                "an internal error occurred; it has been logged".into()
            }
            other => other.to_string(),
        }
    }
}
