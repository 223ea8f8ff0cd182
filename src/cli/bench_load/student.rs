//! One simulated student, as the browser behaves: signs in by the JWT link,
//! starts the session, keeps a hub socket (metric samples each period, chat
//! now and then) and an HTTPS connection for evidence (recording chunks over
//! tus, a snapshot every few seconds). Whatever fails is counted and tried
//! again on a new connection, so the same student carries on across a
//! server restart.

use super::Plan;
use super::ledger::{CHAT, CHUNK, JOIN, Ledger, SAMPLE, SIGN_IN, SNAPSHOT, START};
use crate::cli::hub_bench::client::{Dialer, Http, Ws};
use crate::cli::hub_bench::{Clock, TAGS, join, link, student_name};
use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// How long a student waits before trying a failed step again.
const RETRY: Duration = Duration::from_millis(500);
/// How long the end of a run waits for answers still owed.
const DRAIN: Duration = Duration::from_secs(30);

/// What every student shares.
pub(super) struct Shared {
    pub plan: Plan,
    pub dialer: Dialer,
    pub secret: String,
    pub sessions: Vec<String>,
    pub ledger: Arc<Ledger>,
    pub clock: Arc<Clock>,
    pub snapshot: Bytes,
    /// Recording bytes (content does not matter, only their amount).
    pub noise: Bytes,
    pub epoch: Instant,
}

/// Runs student `i` until `stop` turns true.
pub(super) async fn take_exam(shared: Arc<Shared>, i: usize, stop: watch::Receiver<bool>) {
    let n = shared.sessions.len().max(1) as f64;
    let arrival = shared.plan.ramp.mul_f64(i as f64 / n);
    tokio::time::sleep_until((shared.epoch + arrival).into()).await;
    if *stop.borrow() {
        return;
    }
    let Some(cookie) = sign_in_and_start(&shared, i, &stop).await else {
        return;
    };
    let hub = tokio::spawn(hub(shared.clone(), i, cookie.clone(), stop.clone()));
    evidence(&shared, i, &cookie, stop).await;
    let _ = hub.await;
}

/// True once `stop` is set; otherwise waits `RETRY`.
async fn retry_or_stop(stop: &watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::time::sleep(RETRY).await;
    *stop.borrow()
}

async fn sign_in_and_start(
    shared: &Shared,
    i: usize,
    stop: &watch::Receiver<bool>,
) -> Option<String> {
    let ledger = &shared.ledger;
    let session = &shared.sessions[i];
    let mut cookie = None;
    loop {
        let step = async {
            let mut http = shared.dialer.http().await?;
            if cookie.is_none() {
                let token = json!({ "token": link(&shared.secret, &student_name(i), "student")? });
                let t = Instant::now();
                let a = http
                    .expect(200, Method::POST, "/api/v1/auth/jwt", None, Some(&token))
                    .await?;
                ledger.time(SIGN_IN, t.elapsed());
                cookie = a.cookie;
            }
            let c = cookie.clone().unwrap_or_default();
            let t = Instant::now();
            let path = format!("/api/v1/sessions/{session}/start");
            let a = http.call(Method::POST, &path, Some(&c), None).await?;
            match a.status {
                200 => ledger.time(START, t.elapsed()),
                // Started before a restart took the answer away.
                409 => {
                    let s = http
                        .expect(
                            200,
                            Method::GET,
                            &format!("/api/v1/sessions/{session}"),
                            Some(&c),
                            None,
                        )
                        .await?;
                    anyhow::ensure!(s.body["status"] == "started", "start: {}", a.body);
                }
                _ => anyhow::bail!("start: {} {}", a.status, a.body),
            }
            anyhow::Ok(c)
        };
        match step.await {
            Ok(c) => return Some(c),
            Err(e) => {
                let op = if cookie.is_none() { SIGN_IN } else { START };
                ledger.error(op, format!("{e:#}"));
                if retry_or_stop(stop).await {
                    return None;
                }
            }
        }
    }
}

/// The hub socket: a sample each period (tagged so a proctor's receipt
/// can be timed), chat now and then; every answer is matched to its frame.
async fn hub(shared: Arc<Shared>, i: usize, cookie: String, mut stop: watch::Receiver<bool>) {
    let ledger = &shared.ledger;
    let session = shared.sessions[i].clone();
    let mut k: usize = 0;
    'connect: loop {
        let t = Instant::now();
        let mut ws = match connect(&shared.dialer, &cookie, &session).await {
            Ok(ws) => {
                ledger.time(JOIN, t.elapsed());
                ws
            }
            Err(e) => {
                ledger.error(JOIN, format!("{e:#}"));
                if retry_or_stop(&stop).await {
                    return;
                }
                continue;
            }
        };
        // Frames sent and not yet answered: ref -> (operation, sent at).
        let mut pending: HashMap<String, (usize, Instant)> = HashMap::new();
        let offset = Duration::from_millis(rand::random_range(0..1000));
        let period = shared.plan.period;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        let mut stopping = *stop.borrow();
        // Answers still owed are waited for this long once stopping.
        let mut until = tokio::time::Instant::now() + DRAIN;
        loop {
            if stopping && pending.is_empty() {
                let _ = ws.close(None).await;
                return;
            }
            let m = tokio::select! {
                _ = tick.tick(), if !stopping => {
                    let sent = send_period(&shared, i, &session, k, &mut ws, &mut pending).await;
                    k += 1;
                    if sent.is_err() {
                        break;
                    }
                    continue;
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    until = tokio::time::Instant::now() + DRAIN;
                    continue;
                }
                () = tokio::time::sleep_until(until), if stopping => break,
                m = ws.next() => m,
            };
            let Some(Ok(Message::Text(text))) = m else {
                if matches!(m, Some(Ok(_))) {
                    continue;
                }
                break;
            };
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let Some(key) = v["ref"].as_str() else {
                continue;
            };
            let Some((op, sent)) = pending.remove(key) else {
                continue;
            };
            match v["type"].as_str() {
                Some("ack") => {
                    ledger.time(op, sent.elapsed());
                    ledger.acked(i, |a| match op {
                        CHAT => a.chat.extend(v["seq"].as_u64()),
                        _ => a.samples += 1,
                    });
                }
                _ => ledger.error(op, &v),
            }
        }
        // The socket broke: what it still owed is unanswered, not lost.
        ledger
            .unanswered
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        if stopping || retry_or_stop(&stop).await {
            return;
        }
        continue 'connect;
    }
}

async fn connect(dialer: &Dialer, cookie: &str, session: &str) -> anyhow::Result<Ws> {
    let mut ws = dialer.ws(cookie).await?;
    join(&mut ws, session).await?;
    Ok(ws)
}

/// One period's sample, and a chat message now and then.
async fn send_period(
    shared: &Shared,
    i: usize,
    session: &str,
    k: usize,
    ws: &mut Ws,
    pending: &mut HashMap<String, (usize, Instant)>,
) -> anyhow::Result<()> {
    let tag = k % TAGS;
    shared.clock.sent[i][tag].store(shared.clock.now(), Ordering::Relaxed);
    let r = format!("s{k}");
    let sample = json!({ "type": "samples", "session": session, "ref": r,
                         "values": { "b1": tag, "b2": 0 } });
    pending.insert(r, (SAMPLE, Instant::now()));
    ws.send(Message::text(sample.to_string())).await?;
    let chat_every = shared.plan.chat_every.max(1);
    if rand::random_range(0..chat_every) == 0 {
        let r = format!("c{k}");
        let text = format!("bench {}", shared.clock.now());
        let chat = json!({ "type": "chat", "session": session, "text": text, "ref": r });
        pending.insert(r, (CHAT, Instant::now()));
        ws.send(Message::text(chat.to_string())).await?;
    }
    Ok(())
}

/// What the evidence connection is doing.
struct Evidence {
    http: Option<Http>,
    /// The recording's upload path, once created.
    recording: Option<String>,
    /// Bytes recorded so far (sent or waiting to be sent).
    recorded: u64,
    /// Bytes acknowledged.
    acked: u64,
}

/// Recording chunks and snapshots on one kept-alive connection, one request
/// at a time, as the browser's upload queue sends them.
async fn evidence(shared: &Shared, i: usize, cookie: &str, mut stop: watch::Receiver<bool>) {
    let plan = &shared.plan;
    let start = tokio::time::Instant::now() + Duration::from_millis(rand::random_range(0..1000));
    let mut chunks = tokio::time::interval_at(start, plan.chunk_every);
    let mut snapshots = tokio::time::interval_at(start + plan.chunk_every / 2, plan.snapshot_every);
    let mut e = Evidence {
        http: None,
        recording: None,
        recorded: 0,
        acked: 0,
    };
    let per_chunk = plan.bytes_per_sec * plan.chunk_every.as_millis() as u64 / 1000;
    loop {
        tokio::select! {
            _ = chunks.tick() => {
                e.recorded += per_chunk;
                // A kept-alive connection the server closed fails at once; a
                // browser then opens a new one, and so does the student.
                for _ in 0..2 {
                    match send_recording(shared, i, cookie, &mut e).await {
                        Ok(()) => break,
                        Err(err) => {
                            shared.ledger.error(CHUNK, format!("{err:#}"));
                            e.http = None;
                        }
                    }
                }
            }
            _ = snapshots.tick() => {
                for _ in 0..2 {
                    match send_snapshot(shared, i, cookie, &mut e).await {
                        Ok(()) => break,
                        Err(err) => {
                            shared.ledger.error(SNAPSHOT, format!("{err:#}"));
                            e.http = None;
                        }
                    }
                }
            }
            _ = stop.changed() => return,
        }
    }
}

async fn connection<'a>(shared: &Shared, e: &'a mut Evidence) -> anyhow::Result<&'a mut Http> {
    if e.http.is_none() {
        e.http = Some(shared.dialer.http().await?);
    }
    e.http
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("no connection"))
}

/// Creates an upload of `kind` (tus creation) with its length header;
/// returns the path to send its chunks to.
async fn create(
    http: &mut Http,
    session: &str,
    cookie: &str,
    length: (&'static str, String),
    kind: &str,
) -> anyhow::Result<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(kind);
    let a = http
        .raw(
            Method::POST,
            &format!("/api/v1/sessions/{session}/uploads"),
            Some(cookie),
            &[tus(), length, ("upload-metadata", format!("kind {b64}"))],
            Bytes::new(),
        )
        .await?;
    anyhow::ensure!(a.status == 201, "create: {} {}", a.status, body(&a));
    let location = a
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("create: no Location"))?;
    // Absolute or absolute-path; requests use the path.
    Ok(match location.find("/api/") {
        Some(p) => location[p..].to_string(),
        None => location.to_string(),
    })
}

fn body(a: &crate::cli::hub_bench::client::RawAnswer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

fn tus() -> (&'static str, String) {
    ("tus-resumable", "1.0.0".to_string())
}

/// Sends what is recorded and not yet acknowledged. After a failure the
/// server's offset is asked first: it may have stored more than it could
/// acknowledge, never less.
async fn send_recording(
    shared: &Shared,
    i: usize,
    cookie: &str,
    e: &mut Evidence,
) -> anyhow::Result<()> {
    let fresh = e.http.is_none();
    let (path, ask_offset) = match e.recording.clone() {
        Some(p) => (p, fresh),
        None => {
            let http = connection(shared, e).await?;
            let length = ("upload-defer-length", "1".to_string());
            let p = create(http, &shared.sessions[i], cookie, length, "webcam").await?;
            e.recording = Some(p.clone());
            (p, false)
        }
    };
    send_recording_at(shared, i, cookie, e, path, ask_offset).await
}

async fn send_recording_at(
    shared: &Shared,
    i: usize,
    cookie: &str,
    e: &mut Evidence,
    path: String,
    ask_offset: bool,
) -> anyhow::Result<()> {
    let ledger = &shared.ledger;
    let (recorded, acked) = (e.recorded, e.acked);
    let http = connection(shared, e).await?;
    let mut offset = acked;
    if ask_offset {
        let a = http
            .raw(Method::HEAD, &path, Some(cookie), &[tus()], Bytes::new())
            .await?;
        anyhow::ensure!(a.status == 200, "HEAD: {}", a.status);
        offset = header_u64(&a, "upload-offset")?;
        if offset < acked {
            ledger.regressions.fetch_add(1, Ordering::Relaxed);
        }
    }
    let len = recorded.saturating_sub(offset) as usize;
    if len == 0 {
        return Ok(());
    }
    // A backlog after an outage goes a buffer's worth at a time.
    let chunk = shared.noise.slice(..len.min(shared.noise.len()));
    let t = Instant::now();
    let a = patch(http, &path, cookie, offset, chunk).await?;
    let now = header_u64(&a, "upload-offset")?;
    ledger.time(CHUNK, t.elapsed());
    e.acked = now;
    ledger.acked(i, |s| s.offset = s.offset.max(now));
    Ok(())
}

/// A tus chunk at `offset`; the answer must be 204.
async fn patch(
    http: &mut Http,
    path: &str,
    cookie: &str,
    offset: u64,
    bytes: Bytes,
) -> anyhow::Result<crate::cli::hub_bench::client::RawAnswer> {
    let a = http
        .raw(
            Method::PATCH,
            path,
            Some(cookie),
            &[
                tus(),
                ("content-type", "application/offset+octet-stream".into()),
                ("upload-offset", offset.to_string()),
            ],
            bytes,
        )
        .await?;
    anyhow::ensure!(a.status == 204, "PATCH {path}: {} {}", a.status, body(&a));
    Ok(a)
}

fn header_u64(a: &crate::cli::hub_bench::client::RawAnswer, name: &str) -> anyhow::Result<u64> {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {name} in the answer"))
}

/// One snapshot: created with its length, sent in one request.
async fn send_snapshot(
    shared: &Shared,
    i: usize,
    cookie: &str,
    e: &mut Evidence,
) -> anyhow::Result<()> {
    let http = connection(shared, e).await?;
    let t = Instant::now();
    let length = ("upload-length", shared.snapshot.len().to_string());
    let path = create(http, &shared.sessions[i], cookie, length, "snapshot").await?;
    patch(http, &path, cookie, 0, shared.snapshot.clone()).await?;
    shared.ledger.time(SNAPSHOT, t.elapsed());
    shared.ledger.acked(i, |s| s.snapshots += 1);
    Ok(())
}
