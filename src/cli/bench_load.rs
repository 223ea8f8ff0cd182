//! `invigil bench load`: an exam day on one box. The server runs as its own
//! process on a fresh data directory; N simulated students arrive as at a
//! 09:00 start, each signing in by JWT link, starting the session, holding a
//! hub socket (samples each period, chat now and then) and uploading a
//! snapshot every few seconds and a recording at a set bit rate over tus;
//! proctors watch walls of up to 30. At the end every acknowledgement is
//! checked against what the server has. `invigil bench crash` runs the same
//! students while the server is killed with SIGKILL and started again.

pub(crate) mod ledger;
pub(super) mod student;

use super::hub_bench::client::{Dialer, Server, usage};
use super::hub_bench::{self, Clock, TAGS, Tally, join, prepare, student_name};
use bytes::Bytes;
use http::Method;
use ledger::{FAN_OUT, Ledger, Missing};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use student::Shared;
use tokio::sync::watch;

/// What the students do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub students: usize,
    /// Sessions per proctor's wall (at most the hub's 30); 0: no proctors.
    pub wall: usize,
    /// Students arrive evenly over this long.
    pub ramp: Duration,
    /// The exam after the last arrival.
    pub hold: Duration,
    /// Metric sampling period (the template's `period_secs`).
    pub period: Duration,
    pub snapshot_every: Duration,
    pub chunk_every: Duration,
    /// Recording bytes per second and student.
    pub bytes_per_sec: u64,
    /// A student chats on average every this many periods.
    pub chat_every: u64,
}

/// Parallel connections for the set-up calls and the final check.
const WORKERS: usize = 8;

/// What a run found.
pub(super) struct Outcome {
    pub ledger: Arc<Ledger>,
    pub missing: Missing,
    /// Server RSS now and at its peak, CPU seconds and wall seconds of the
    /// exam after the ramp (of the last server process).
    pub rss: (u64, u64),
    pub cpu: f64,
    pub client_cpu: f64,
    pub elapsed: f64,
    pub snapshots: Value,
    pub proctors: usize,
    pub sessions: Vec<String>,
    /// The manager's session cookie.
    pub manager: String,
}

pub fn run(plan: &Plan) -> anyhow::Result<bool> {
    check(plan)?;
    crate::web::serve::connection_cap();
    let server = Arc::new(Mutex::new(Server::start()?));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(drive(plan, &server, None));
    drop(runtime);
    stop(server);
    let outcome = result?;
    print(plan, &outcome);
    Ok(goal_met(&outcome))
}

pub(super) fn check(plan: &Plan) -> anyhow::Result<()> {
    anyhow::ensure!(plan.students > 0, "--students must be at least 1");
    anyhow::ensure!(plan.wall <= 30, "--wall must be 0 to 30");
    anyhow::ensure!(
        (1..=3600).contains(&plan.period.as_secs()),
        "--period must be 1 to 3600 seconds"
    );
    anyhow::ensure!(
        !plan.snapshot_every.is_zero() && !plan.chunk_every.is_zero(),
        "--snapshot-every and --chunk-every must be at least 1 second"
    );
    Ok(())
}

pub(super) fn stop(server: Arc<Mutex<Server>>) {
    if let Ok(m) = Arc::try_unwrap(server)
        && let Ok(s) = m.into_inner()
    {
        s.stop();
    }
}

fn pid(server: &Mutex<Server>) -> u32 {
    server.lock().map_or(0, |s| s.pid())
}

/// Runs the exam day against `server`; `exam` is awaited after the ramp in
/// place of the hold (the crash campaign's kills); then the students stop,
/// answers are drained and everything acknowledged is checked.
pub(super) async fn drive(
    plan: &Plan,
    server: &Arc<Mutex<Server>>,
    exam: Option<std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>>,
) -> anyhow::Result<Outcome> {
    let (dialer, password) = {
        let s = server.lock().map_err(|_| anyhow::anyhow!("server lock"))?;
        (Dialer::new(&s)?, s.password.clone())
    };
    let template = json!({ "id": "bench", "name": "bench", "period_secs": plan.period.as_secs(),
                           "weights": { "b1": 0.1, "b2": 0.5 } });
    let t = Instant::now();
    let exam_setup = prepare(
        &dialer,
        &password,
        plan.students,
        plan.wall.max(1),
        &template,
    )
    .await?;
    eprintln!(
        "set-up: {} sessions, {} proctors, in {:.1} s",
        exam_setup.sessions.len(),
        exam_setup.proctors.len(),
        t.elapsed().as_secs_f64()
    );
    let clock = Arc::new(Clock {
        epoch: Instant::now(),
        sent: (0..plan.students)
            .map(|_| (0..TAGS).map(|_| AtomicU64::new(0)).collect())
            .collect(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (drained_tx, drained) = watch::channel(false);

    // Proctors watch their walls from the start, as at 09:00.
    let tally = Arc::new(Tally::default());
    let mut proctors = Vec::new();
    if plan.wall > 0 {
        let index: Arc<HashMap<String, usize>> = Arc::new(
            exam_setup
                .sessions
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i))
                .collect(),
        );
        for (p, cookie) in exam_setup.proctors.iter().enumerate() {
            let mut ws = dialer.ws(cookie).await?;
            for s in exam_setup
                .sessions
                .iter()
                .skip(p * plan.wall)
                .take(plan.wall)
            {
                join(&mut ws, s).await?;
            }
            let (index, clock, tally, drained) =
                (index.clone(), clock.clone(), tally.clone(), drained.clone());
            proctors.push(tokio::spawn(hub_bench::watch_wall(
                ws, index, clock, tally, drained,
            )));
        }
    }

    let ledger = Arc::new(Ledger::new(plan.students));
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        dialer: dialer.clone(),
        secret: exam_setup.secret.clone(),
        sessions: exam_setup.sessions.clone(),
        ledger: ledger.clone(),
        clock: clock.clone(),
        snapshot: snapshot_jpeg()?,
        noise: Bytes::from(
            (0..(plan.bytes_per_sec * plan.chunk_every.as_secs().max(1)) as usize)
                .map(|_| rand::random::<u8>())
                .collect::<Vec<u8>>(),
        ),
        epoch: Instant::now(),
    });
    let students: Vec<_> = (0..plan.students)
        .map(|i| tokio::spawn(student::take_exam(shared.clone(), i, stop_rx.clone())))
        .collect();

    tokio::time::sleep(plan.ramp).await;
    let (_, _, cpu_before) = usage(pid(server));
    let (_, _, client_before) = usage(std::process::id());
    let held = Instant::now();
    match exam {
        Some(exam) => exam.await?,
        None => tokio::time::sleep(plan.hold).await,
    }
    let (rss, peak, cpu_after) = usage(pid(server));
    let (_, _, client_after) = usage(std::process::id());
    let elapsed = held.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    for s in students {
        s.await?;
    }
    let _ = drained_tx.send(true);
    let n_proctors = proctors.len();
    for p in proctors {
        for ns in p.await? {
            ledger.time_ns(FAN_OUT, ns);
        }
    }
    let mut missing =
        check_all(&dialer, &exam_setup.manager, &exam_setup.sessions, &ledger).await?;
    missing.regressions = ledger.regressions.load(Ordering::Relaxed);
    let mut http = dialer.http().await?;
    let status = http
        .expect(
            200,
            Method::GET,
            "/api/v1/instance/status",
            Some(&exam_setup.manager),
            None,
        )
        .await?
        .body;
    let snapshots = status["recognition"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.starts_with("snapshots_") || *k == "engine")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<serde_json::Map<_, _>>()
        })
        .map(Value::Object)
        .unwrap_or(Value::Null);
    Ok(Outcome {
        ledger,
        missing,
        rss: (rss, peak),
        cpu: cpu_after - cpu_before,
        client_cpu: client_after - client_before,
        elapsed,
        snapshots,
        proctors: n_proctors,
        sessions: exam_setup.sessions,
        manager: exam_setup.manager,
    })
}

/// Every session checked against its acknowledgements, `WORKERS` at a time.
async fn check_all(
    dialer: &Dialer,
    manager: &str,
    sessions: &[String],
    ledger: &Arc<Ledger>,
) -> anyhow::Result<Missing> {
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (dialer, manager, ledger) = (dialer.clone(), manager.to_string(), ledger.clone());
        let sessions = sessions.to_vec();
        workers.push(tokio::spawn(async move {
            let mut http = dialer.http().await?;
            let mut found = Vec::new();
            for i in (w..sessions.len()).step_by(WORKERS) {
                let acked = ledger.students[i]
                    .lock()
                    .map_err(|_| anyhow::anyhow!("ledger lock"))?
                    .clone();
                let name = student_name(i);
                found.push(
                    ledger::check_session(&mut http, &manager, &sessions[i], &name, &acked).await?,
                );
            }
            anyhow::Ok(found)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    Ok(ledger::sum(all))
}

/// A 640×480 JPEG of 20–50 KB, like a webcam frame at the browser's quality.
pub(super) fn snapshot_jpeg() -> anyhow::Result<Bytes> {
    use image::codecs::jpeg::JpegEncoder;
    let (w, h) = (640u32, 480u32);
    let mut seed: u32 = 0x9e37_79b9;
    let frame = image::RgbImage::from_fn(w, h, |x, y| {
        // A soft gradient with sensor-like noise.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed % 9) as i32 - 4;
        let c = |v: u32| (v as i32 + n).clamp(0, 255) as u8;
        image::Rgb([
            c(60 + x * 120 / w),
            c(80 + y * 100 / h),
            c(110 + (x + y) * 60 / (w + h)),
        ])
    });
    for quality in (30..=90).rev().step_by(5) {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality).encode_image(&frame)?;
        if out.len() <= 50_000 {
            anyhow::ensure!(out.len() >= 20_000, "snapshot of {} bytes", out.len());
            return Ok(Bytes::from(out));
        }
    }
    anyhow::bail!("no quality gives a snapshot of 20–50 KB")
}

/// The goal of the exam day: every operation's p99 under 250 ms, nothing
/// acknowledged missing, every frame answered.
pub(super) fn goal_met(o: &Outcome) -> bool {
    o.missing.none()
        && o.ledger.unanswered.load(Ordering::Relaxed) == 0
        && o.ledger
            .report()
            .iter()
            .all(|(_, l, _)| l.errors == 0 && (l.count == 0 || l.p99 < 250.0))
}

pub(super) fn print(plan: &Plan, o: &Outcome) {
    println!(
        "invigil bench load: {} students arriving over {} s, then {} s of exam; a sample every {} s, \
         a {} KB snapshot every {} s, {} kbit/s of recording in {} s chunks, chat every ~{} samples; \
         {} proctors on walls of {}; TLS on loopback, {} CPUs",
        plan.students,
        plan.ramp.as_secs(),
        plan.hold.as_secs(),
        plan.period.as_secs(),
        snapshot_jpeg().map_or(0, |s| s.len() / 1000),
        plan.snapshot_every.as_secs(),
        plan.bytes_per_sec * 8 / 1000,
        plan.chunk_every.as_secs(),
        plan.chat_every,
        o.proctors,
        plan.wall,
        super::cpus()
    );
    print_operations(o);
    let t = o.ledger.totals();
    println!(
        "acknowledged: {:.1} MB of recording, {} snapshots, {} samples, {} chat messages",
        t.offset as f64 / 1e6,
        t.snapshots,
        t.samples,
        t.chat.len()
    );
    let m = &o.missing;
    println!(
        "missing after the run (checked in {} sessions through the API): {} recording bytes \
         ({} offsets found behind an acknowledgement), {} snapshots, {} samples, {} chat messages; \
         {} frames never answered",
        m.sessions,
        m.recording_bytes,
        m.regressions,
        m.snapshots,
        m.samples,
        m.chat,
        o.ledger.unanswered.load(Ordering::Relaxed)
    );
    println!("snapshot analysis: {}", o.snapshots);
    println!(
        "server: RSS {:.1} MiB (peak {:.1} MiB), CPU {:.1} s in {:.1} s ({:.0} % of one core); \
         the load generator on the same box: {:.0} % of one core",
        o.rss.0 as f64 / 1048576.0,
        o.rss.1 as f64 / 1048576.0,
        o.cpu,
        o.elapsed,
        100.0 * o.cpu / o.elapsed.max(0.001),
        100.0 * o.client_cpu / o.elapsed.max(0.001)
    );
    println!(
        "goal (every p99 < 250 ms, no error, nothing lost): {}",
        if goal_met(o) { "met" } else { "MISSED" }
    );
}

pub(super) fn print_operations(o: &Outcome) {
    println!(
        "{:<26} {:>8} {:>7} {:>9} {:>9} {:>9}",
        "operation", "timed", "errors", "p50 ms", "p99 ms", "max ms"
    );
    let mut first_errors = Vec::new();
    for (name, l, first) in o.ledger.report() {
        println!(
            "{:<26} {:>8} {:>7} {:>9.1} {:>9.1} {:>9.1}",
            name, l.count, l.errors, l.p50, l.p99, l.max
        );
        if let Some(e) = first {
            first_errors.push(format!("  {name}: {e}"));
        }
    }
    if !first_errors.is_empty() {
        println!("first error of each operation:");
        for e in first_errors {
            println!("{e}");
        }
    }
}
