//! `invigil bench hub`: the live hub under an exam's load over real sockets.
//! The server runs as its own process (so its memory and CPU are its own);
//! N students each send a metric sample every second and a chat message now
//! and then, M proctors watch walls of up to 30 sessions. Fan-out latency is
//! from a student's send to a proctor's receipt of the resulting frame.

pub(super) mod client;

use client::{Dialer, Server, Ws, usage};
use futures::{SinkExt, StreamExt};
use http::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub students: usize,
    /// Sessions per proctor's wall (at most the hub's 30).
    pub wall: usize,
    pub secs: u64,
    /// A student sends a chat message on average every this many seconds.
    pub chat_every: u64,
}

/// Sample tags cycle through this many send times per session.
pub(super) const TAGS: usize = 100;
/// How long the end of a run waits for answers still owed.
const DRAIN: Duration = Duration::from_secs(60);
/// Parallel connections for the set-up calls.
const SETUP_WORKERS: usize = 8;

/// Send times (ns since the bench's epoch) per session and sample tag.
pub(super) struct Clock {
    pub epoch: Instant,
    pub sent: Vec<Vec<AtomicU64>>,
}

impl Clock {
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// What the clients counted.
#[derive(Default)]
pub(super) struct Tally {
    pub frames_in_sent: AtomicU64,
    pub frames_in_acked: AtomicU64,
    errors: AtomicU64,
    pub chat_sent: AtomicU64,
    pub chat_seen: AtomicU64,
    pub metrics_seen: AtomicU64,
    pub frames_out: AtomicU64,
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.students > 0, "--students must be at least 1");
    anyhow::ensure!((1..=30).contains(&o.wall), "--wall must be 1 to 30");
    anyhow::ensure!(o.secs > 0, "--secs must be at least 1");
    let server = Server::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bench(o, &server));
    drop(runtime);
    server.stop();
    result
}

pub(super) struct Setup {
    /// Session ids, one per student.
    pub sessions: Vec<String>,
    pub students: Vec<String>,
    pub proctors: Vec<String>,
}

pub(super) fn link(secret: &str, username: &str, role: &str) -> anyhow::Result<String> {
    let now = crate::auth::now_secs();
    let claims = json!({ "username": username, "role": role, "iat": now, "exp": now + 3600 });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())?,
    )?)
}

/// An exam prepared by its manager: a template, a JWT signing secret for
/// sign-in links, proctors signed in, one session per student (not started).
pub(super) struct Exam {
    pub manager: String,
    pub secret: String,
    /// Session ids; student `i` is `bench-s{i}`.
    pub sessions: Vec<String>,
    pub proctors: Vec<String>,
}

pub(super) fn student_name(i: usize) -> String {
    format!("bench-s{i}")
}

/// Sets up an exam for `students` students on walls of `wall` sessions.
pub(super) async fn prepare(
    dialer: &Dialer,
    password: &str,
    students: usize,
    wall: usize,
    template: &Value,
) -> anyhow::Result<Exam> {
    let mut http = dialer.http().await?;
    let login = json!({ "username": "manager", "password": password });
    let manager = http
        .expect(200, Method::POST, "/api/v1/auth/login", None, Some(&login))
        .await?
        .cookie
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    let m = Some(manager.as_str());
    let t = http
        .expect(201, Method::POST, "/api/v1/templates", m, Some(template))
        .await?;
    let host_id = t.body["host_id"].as_str().unwrap_or_default().to_string();
    let roles = json!({ "jwt_roles": ["proctor"] });
    http.expect(
        200,
        Method::PATCH,
        &format!("/api/v1/hosts/{host_id}"),
        m,
        Some(&roles),
    )
    .await?;
    let secret = http
        .expect(201, Method::POST, "/api/v1/jwt-secrets", m, None)
        .await?
        .body["secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let mut proctors = Vec::new();
    for p in 0..students.div_ceil(wall) {
        let token = json!({ "token": link(&secret, &format!("bench-p{p}"), "proctor")? });
        let a = http
            .expect(200, Method::POST, "/api/v1/auth/jwt", None, Some(&token))
            .await?;
        proctors.push(a.cookie.unwrap_or_default());
    }

    let template_id = template["id"].as_str().unwrap_or_default().to_string();
    let mut workers = Vec::new();
    for w in 0..SETUP_WORKERS {
        let (dialer, manager, template_id) = (dialer.clone(), manager.clone(), template_id.clone());
        workers.push(tokio::spawn(async move {
            let mut http = dialer.http().await?;
            let mut made = Vec::new();
            for i in (w..students).step_by(SETUP_WORKERS) {
                let new = json!({ "student": student_name(i), "template": template_id,
                                  "proctors": [format!("bench-p{}", i / wall)] });
                let s = http
                    .expect(
                        201,
                        Method::POST,
                        "/api/v1/sessions",
                        Some(&manager),
                        Some(&new),
                    )
                    .await?;
                made.push((i, s.body["id"].as_str().unwrap_or_default().to_string()));
            }
            anyhow::Ok(made)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(Exam {
        manager,
        secret,
        sessions: all.into_iter().map(|(_, id)| id).collect(),
        proctors,
    })
}

/// The hub bench's exam: every student signed in by link and started.
pub(super) async fn setup(o: &Options, dialer: &Dialer, password: &str) -> anyhow::Result<Setup> {
    let template = json!({ "id": "bench", "name": "bench", "weights": { "b1": 0.1, "b2": 0.5 } });
    let exam = prepare(dialer, password, o.students, o.wall, &template).await?;
    let mut workers = Vec::new();
    for w in 0..SETUP_WORKERS {
        let (dialer, secret) = (dialer.clone(), exam.secret.clone());
        let sessions = exam.sessions.clone();
        workers.push(tokio::spawn(async move {
            let mut http = dialer.http().await?;
            let mut made = Vec::new();
            for i in (w..sessions.len()).step_by(SETUP_WORKERS) {
                let token = json!({ "token": link(&secret, &student_name(i), "student")? });
                let student = http
                    .expect(200, Method::POST, "/api/v1/auth/jwt", None, Some(&token))
                    .await?
                    .cookie
                    .unwrap_or_default();
                let start = format!("/api/v1/sessions/{}/start", sessions[i]);
                http.expect(200, Method::POST, &start, Some(&student), None)
                    .await?;
                made.push((i, student));
            }
            anyhow::Ok(made)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(Setup {
        sessions: exam.sessions,
        students: all.into_iter().map(|(_, c)| c).collect(),
        proctors: exam.proctors,
    })
}

/// Sends a join and waits for its `joined`.
pub(super) async fn join(ws: &mut Ws, session: &str) -> anyhow::Result<()> {
    let f = json!({ "type": "join", "session": session, "ref": session });
    ws.send(Message::text(f.to_string())).await?;
    while let Some(m) = ws.next().await {
        if let Message::Text(t) = m? {
            let v: Value = serde_json::from_str(t.as_str())?;
            if v["ref"] == session {
                anyhow::ensure!(v["type"] == "joined", "join {session}: {v}");
                return Ok(());
            }
        }
    }
    anyhow::bail!("the hub closed while joining {session}")
}

async fn bench(o: &Options, server: &Server) -> anyhow::Result<()> {
    let dialer = Dialer::new(server)?;
    let started = Instant::now();
    let setup = setup(o, &dialer, &server.password).await?;
    eprintln!(
        "set-up: {} students with a started session each, {} proctors, in {:.1} s",
        setup.students.len(),
        setup.proctors.len(),
        started.elapsed().as_secs_f64()
    );
    let index: Arc<HashMap<String, usize>> = Arc::new(
        setup
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect(),
    );
    let clock = Arc::new(Clock {
        epoch: Instant::now(),
        sent: (0..setup.sessions.len())
            .map(|_| (0..TAGS).map(|_| AtomicU64::new(0)).collect())
            .collect(),
    });
    let tally = Arc::new(Tally::default());
    let (stop_tx, stop) = watch::channel(false);
    let (drained_tx, drained) = watch::channel(false);

    // Proctors first, each joined to its wall.
    let mut proctors = Vec::new();
    for (p, cookie) in setup.proctors.iter().enumerate() {
        let mut ws = dialer.ws(cookie).await?;
        for s in setup.sessions.iter().skip(p * o.wall).take(o.wall) {
            join(&mut ws, s).await?;
        }
        let (index, clock, tally, drained) =
            (index.clone(), clock.clone(), tally.clone(), drained.clone());
        proctors.push(tokio::spawn(watch_wall(ws, index, clock, tally, drained)));
    }
    let mut students = Vec::new();
    for (i, cookie) in setup.students.iter().enumerate() {
        let mut ws = dialer.ws(cookie).await?;
        join(&mut ws, &setup.sessions[i]).await?;
        let (session, clock, tally, stop) = (
            setup.sessions[i].clone(),
            clock.clone(),
            tally.clone(),
            stop.clone(),
        );
        let chat_every = o.chat_every.max(1);
        students.push(tokio::spawn(take_exam(
            ws, i, session, chat_every, clock, tally, stop,
        )));
    }

    let (_, _, cpu_before) = usage(server.pid());
    let load_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.secs)).await;
    let (rss, peak, cpu_after) = usage(server.pid());
    let elapsed = load_started.elapsed().as_secs_f64();
    let t = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (sent_in_load, acked_in_load, out_in_load) = (
        t(&tally.frames_in_sent),
        t(&tally.frames_in_acked),
        t(&tally.frames_out),
    );
    let _ = stop_tx.send(true);
    // Students wait for the answers to everything they sent, then proctors
    // drain what that caused: the totals then show whether anything was lost.
    for s in students {
        s.await?;
    }
    let _ = drained_tx.send(true);
    let mut latencies = Vec::new();
    for p in proctors {
        latencies.extend(p.await?);
    }
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |ns| *ns as f64 / 1e6)
    };
    println!(
        "invigil bench hub: {} students (a sample every second, a chat message every ~{} s), \
         {} proctors on walls of {}; {} s over TLS WebSockets on loopback, {} CPUs",
        o.students,
        o.chat_every,
        setup.proctors.len(),
        o.wall,
        o.secs,
        super::cpus()
    );
    println!(
        "student frames sent          {:>9.1} /s  acknowledged {:>9.1} /s",
        sent_in_load as f64 / elapsed,
        acked_in_load as f64 / elapsed,
    );
    println!(
        "frames delivered to proctors {:>9.1} /s",
        out_in_load as f64 / elapsed
    );
    println!(
        "after the drain: {} of {} student frames acknowledged, {} errors; \
         {} of {} chat messages and {} live metrics reached the proctors",
        t(&tally.frames_in_acked),
        t(&tally.frames_in_sent),
        t(&tally.errors),
        t(&tally.chat_seen),
        t(&tally.chat_sent),
        t(&tally.metrics_seen),
    );
    println!(
        "fan-out latency (student send -> proctor receive)  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} frames)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        latencies.len()
    );
    println!(
        "server RSS {:.1} MiB (peak {:.1} MiB), CPU {:.1} s in {:.1} s ({:.0} % of one core)",
        rss as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        cpu_after - cpu_before,
        elapsed,
        100.0 * (cpu_after - cpu_before) / elapsed
    );
    Ok(())
}

/// A student: a sample each second (tagged so the proctor can find its send
/// time), chat now and then; answers are counted.
async fn take_exam(
    ws: Ws,
    i: usize,
    session: String,
    chat_every: u64,
    clock: Arc<Clock>,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = ws.split();
    let counter = tally.clone();
    // Answers (acks and errors) to this student's frames.
    let answered = Arc::new(AtomicU64::new(0));
    let mine = answered.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Text(t) = m
                && let Ok(v) = serde_json::from_str::<Value>(t.as_str())
            {
                match v["type"].as_str() {
                    Some("ack") => counter.frames_in_acked.fetch_add(1, Ordering::Relaxed),
                    Some("error") => counter.errors.fetch_add(1, Ordering::Relaxed),
                    _ => continue,
                };
                mine.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut sent = 0u64;
    // Spread the students over the second.
    let offset = Duration::from_millis(rand::random_range(0..1000));
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + offset, Duration::from_secs(1));
    let mut k: usize = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let tag = k % TAGS;
        clock.sent[i][tag].store(clock.now(), Ordering::Relaxed);
        let sample = json!({ "type": "samples", "session": session, "ref": k,
                             "values": { "b1": tag, "b2": if k.is_multiple_of(7) { 50 } else { 0 } } });
        if sink.send(Message::text(sample.to_string())).await.is_err() {
            break;
        }
        sent += 1;
        tally.frames_in_sent.fetch_add(1, Ordering::Relaxed);
        if rand::random_range(0..chat_every) == 0 {
            let text = format!("bench {}", clock.now());
            let chat = json!({ "type": "chat", "session": session, "text": text, "ref": "c" });
            if sink.send(Message::text(chat.to_string())).await.is_err() {
                break;
            }
            sent += 1;
            tally.frames_in_sent.fetch_add(1, Ordering::Relaxed);
            tally.chat_sent.fetch_add(1, Ordering::Relaxed);
        }
        k += 1;
    }
    // Every frame sent gets its answer (bounded, should the server stall).
    let until = Instant::now() + DRAIN;
    while answered.load(Ordering::Relaxed) < sent && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = sink.close().await;
    reader.abort();
}

/// A proctor's wall: every live metrics and chat frame is matched to its
/// send time. Returns the latencies in ns.
pub(super) async fn watch_wall(
    ws: Ws,
    index: Arc<HashMap<String, usize>>,
    clock: Arc<Clock>,
    tally: Arc<Tally>,
    mut drained: watch::Receiver<bool>,
) -> Vec<u64> {
    let (mut sink, mut stream) = ws.split();
    let mut latencies = Vec::new();
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        let deadline =
            stopping.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let m = tokio::select! {
            m = stream.next() => m,
            _ = ping.tick() => {
                let _ = sink.send(Message::text(r#"{"type":"ping"}"#)).await;
                continue;
            }
            _ = drained.changed(), if stopping.is_none() => {
                // Every student frame is answered: take what is in flight, then leave.
                stopping = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                continue;
            }
            () = tokio::time::sleep_until(deadline) => break,
        };
        let Some(Ok(m)) = m else { break };
        let Message::Text(t) = m else { continue };
        let now = clock.now();
        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
            continue;
        };
        tally.frames_out.fetch_add(1, Ordering::Relaxed);
        match v["type"].as_str() {
            Some("metrics") => {
                let session = v["session"].as_str().unwrap_or_default();
                let tag = v["period"]["b1"].as_f64().unwrap_or(-1.0);
                if let Some(i) = index.get(session)
                    && (0.0..TAGS as f64).contains(&tag)
                {
                    let sent = clock.sent[*i][tag as usize].load(Ordering::Relaxed);
                    latencies.push(now.saturating_sub(sent));
                    tally.metrics_seen.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some("chat") => {
                if let Some(sent) = v["text"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("bench "))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    latencies.push(now.saturating_sub(sent));
                    tally.chat_seen.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
    let _ = sink.close().await;
    latencies
}
