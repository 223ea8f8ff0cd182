//! One WebSocket connection: a reader that handles client frames in order,
//! a writer that drains the connection's outbox, and the ways it ends (the
//! client leaves, falls silent, floods, cannot keep up, or invigil stops).

use super::RealtimeError;
use super::frames;
use super::hub::{Conn, Hub, Identity};
use super::outbox::{Closed, Next};
use super::ratelimit::Verdict;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;

/// How long the last frames and the close may take to reach a client.
const DRAIN: Duration = Duration::from_secs(5);

/// Close codes (RFC 6455).
const NORMAL: u16 = 1000;
const GOING_AWAY: u16 = 1001;
const POLICY: u16 = 1008;
const TOO_BIG: u16 = 1009;

/// Serves one upgraded connection until it ends.
pub async fn serve(hub: Arc<Hub>, socket: WebSocket, who: Identity) {
    let conn = hub.connect(who);
    let (mut sink, mut stream) = socket.split();
    let writer = async {
        loop {
            match conn.outbox.next().await {
                Next::Frame(f) => {
                    if sink.send(Message::Text(f)).await.is_err() {
                        return;
                    }
                }
                Next::Closed(Closed::Done) => {
                    let (code, reason) = conn.close.lock().map(|c| c.clone()).unwrap_or_default();
                    let close = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return;
                }
                Next::Closed(Closed::Overflow) => return,
            }
        }
    };
    tokio::pin!(writer);
    let overflow = async {
        while conn.outbox.dead().await != Closed::Overflow {
            // Closed normally: the writer drains; keep waiting for it.
            std::future::pending::<()>().await;
        }
    };
    let end = tokio::select! {
        () = &mut writer => None,
        end = read(&hub, &conn, &mut stream) => Some(end),
        () = overflow => {
            tracing::info!(user = conn.user, "closing a connection that cannot keep up");
            None
        }
        () = hub.shutdown.clone().requested() => Some((GOING_AWAY, "invigil is stopping")),
    };
    if let Some((code, reason)) = end {
        conn.close(code, reason);
        // The closing handshake: send what is queued and the close, then
        // discard what the client still sends until it answers, so it can
        // read everything before the socket goes.
        let _ = tokio::time::timeout(DRAIN, async {
            (&mut writer).await;
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    hub.disconnect(&conn);
}

/// Reads and handles frames until the connection should end; returns the
/// close code and reason.
async fn read(
    hub: &Hub,
    conn: &Conn,
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> (u16, &'static str) {
    loop {
        let message = match tokio::time::timeout(hub.limits.idle, stream.next()).await {
            Err(_) => return (NORMAL, "no frame for too long"),
            Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return (NORMAL, ""),
            Ok(Some(Err(e))) => {
                // The WebSocket layer gave up on the stream (an oversized or
                // broken frame): it cannot be resynchronised.
                tracing::debug!(user = conn.user, "WebSocket read: {e}");
                let too_big = RealtimeError::TooLarge(0, hub.limits.hard_frame_bytes);
                conn.send(&frames::error(None, None, &too_big));
                return (TOO_BIG, "unreadable or oversized frame");
            }
            Ok(Some(Ok(m))) => m,
        };
        hub.heard(conn);
        let text = match message {
            Message::Text(t) => t,
            Message::Binary(_) => {
                conn.send(&frames::error(None, None, &RealtimeError::Binary));
                continue;
            }
            // The WebSocket layer answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
        match conn.admit() {
            Verdict::Accept => {}
            Verdict::Refuse => {
                conn.send(&frames::error(None, None, &RealtimeError::RateLimited));
                continue;
            }
            Verdict::Close => {
                conn.send(&frames::error(None, None, &RealtimeError::RateLimited));
                return (POLICY, "too many messages");
            }
        }
        if text.len() > hub.limits.frame_bytes {
            let e = RealtimeError::TooLarge(text.len(), hub.limits.frame_bytes);
            conn.send(&frames::error(None, None, &e));
            continue;
        }
        let (reference, parsed) = frames::parse(text.as_str());
        let result = match parsed {
            Ok(f) => {
                let session = frames::session_of(&f).map(str::to_string);
                hub.dispatch(conn, reference.as_ref(), f)
                    .await
                    .map_err(|e| (session, e))
            }
            Err(e) => Err((None, e)),
        };
        if let Err((session, e)) = result {
            conn.send(&frames::error(reference.as_ref(), session.as_deref(), &e));
        }
        // Frames already buffered are read without waiting; yielding lets
        // the writer (and other connections) run between them.
        tokio::task::yield_now().await;
    }
}
