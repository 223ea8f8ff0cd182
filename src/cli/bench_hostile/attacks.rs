//! The attacks, each returning what it measured.

use super::wire::{Body, full};
use super::{Latencies, Target, mib};
use crate::cli::hub_bench::client::Ws;
use crate::cli::hub_bench::{self, join, setup};
use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// TLS handshakes the slowloris side runs at once.
const OPENING: usize = 64;
/// A legitimate request every this often during a slowloris run.
const LEGIT_EVERY: Duration = Duration::from_millis(100);

/// What a slowloris run measured.
#[derive(Debug, Clone)]
pub struct Slowloris {
    pub sockets: usize,
    /// Sockets that finished the handshake and sent the request line.
    pub opened: usize,
    /// Seconds it took to open them all.
    pub ramp_secs: f64,
    /// Sockets the server closed while they dribbled.
    pub cut: usize,
    /// New connection + `GET /ping`, during the ramp and the hold.
    pub legit: Latencies,
    pub fds_idle: usize,
    pub fds_peak: usize,
    pub rss_idle: u64,
    pub rss_peak: u64,
}

impl std::fmt::Display for Slowloris {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "slowloris: {} of {} sockets open in {:.1} s, dribbling a header byte a second; {} cut by the server",
            self.opened, self.sockets, self.ramp_secs, self.cut
        )?;
        writeln!(
            f,
            "  legitimate client (new TLS connection + GET /ping every {} ms): {}",
            LEGIT_EVERY.as_millis(),
            self.legit
        )?;
        write!(
            f,
            "  server fds {} idle, {} peak; RSS {:.1} MiB idle, {:.1} MiB peak ({:.1} KiB per socket)",
            self.fds_idle,
            self.fds_peak,
            mib(self.rss_idle),
            mib(self.rss_peak),
            self.rss_peak.saturating_sub(self.rss_idle) as f64 / 1024.0 / self.sockets as f64
        )
    }
}

/// `sockets` connections that finish TLS and then send a request's header
/// one byte a second, never ending it; meanwhile a legitimate client opens a
/// new connection for `GET /ping` every [`LEGIT_EVERY`].
pub async fn slowloris(t: &Target, sockets: usize, hold: Duration) -> anyhow::Result<Slowloris> {
    let (rss_idle, _) = t.memory();
    let fds_idle = t.fds();
    let wire = t.wire.clone();
    let (stop_tx, stop) = watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let started = Instant::now();
    let mut dribblers = Vec::new();
    for i in 0..sockets {
        let (wire, opened, cut, gate) = (wire.clone(), opened.clone(), cut.clone(), gate.clone());
        let (failed, mut stop) = (failed.clone(), stop.clone());
        dribblers.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let head = format!(
                "GET /ping HTTP/1.1\r\nHost: {}\r\nX-Slow-{i}: ",
                wire.authority
            );
            let connected = tokio::time::timeout(Duration::from_secs(30), async {
                let mut tls = wire.connect().await?;
                tls.write_all(head.as_bytes()).await?;
                anyhow::Ok(tls)
            })
            .await;
            let Ok(Ok(mut tls)) = connected else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            opened.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            let mut buf = [0u8; 512];
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    read = tls.read(&mut buf) => {
                        // The server gave up on us (timeout) or answered.
                        if matches!(read, Ok(0) | Err(_)) {
                            cut.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        if tls.write_all(b"a").await.is_err() {
                            cut.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }));
    }
    let pid = t.pid();
    let peak = Arc::new((AtomicUsize::new(fds_idle), AtomicU64::new(rss_idle)));
    let sampler = {
        let (peak, mut stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                let (rss, _, _) = crate::cli::hub_bench::client::usage(pid);
                peak.0.fetch_max(fds, Ordering::Relaxed);
                peak.1.fetch_max(rss, Ordering::Relaxed);
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        })
    };
    // The legitimate client runs through the ramp and the hold.
    let legit = {
        let (wire, mut stop) = (wire.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ns, mut errors) = (Vec::new(), 0);
            let mut tick = tokio::time::interval(LEGIT_EVERY);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => {}
                }
                let sent = Instant::now();
                let answer = tokio::time::timeout(
                    Duration::from_secs(10),
                    wire.request(Method::GET, "/ping", &[], full(Bytes::new())),
                )
                .await;
                match answer {
                    Ok(Ok(a)) if a.status == 200 => ns.push(sent.elapsed().as_nanos() as u64),
                    _ => errors += 1,
                }
            }
            Latencies::of(ns, errors)
        })
    };
    // Every socket opened (or failed), then the hold.
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < sockets {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let _ = stop_tx.send(true);
    for d in dribblers {
        let _ = d.await;
    }
    let legit = legit.await?;
    let _ = sampler.await;
    Ok(Slowloris {
        sockets,
        opened: opened.load(Ordering::Relaxed),
        ramp_secs,
        cut: cut.load(Ordering::Relaxed),
        legit,
        fds_idle,
        fds_peak: peak.0.load(Ordering::Relaxed),
        rss_idle,
        rss_peak: peak.1.load(Ordering::Relaxed),
    })
}

/// One bomb and what the server answered.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub what: &'static str,
    pub status: u16,
    pub message: String,
}

/// What the bombs measured.
#[derive(Debug, Clone)]
pub struct Bomb {
    pub answers: Vec<Refusal>,
    pub rss_idle: u64,
    pub peak_after: u64,
}

impl Bomb {
    /// The server's peak resident memory above its idle resident memory.
    pub fn peak_above_idle(&self) -> u64 {
        self.peak_after.saturating_sub(self.rss_idle)
    }
}

impl std::fmt::Display for Bomb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "bombs:")?;
        for a in &self.answers {
            writeln!(f, "  {}: {} {}", a.what, a.status, a.message)?;
        }
        write!(
            f,
            "  server RSS {:.1} MiB idle, peak (VmHWM) {:.1} MiB after: {:.1} MiB above idle",
            mib(self.rss_idle),
            mib(self.peak_after),
            mib(self.peak_above_idle())
        )
    }
}

/// A PNG of `width`×`height` black pixels (RGB, or RGBA with `alpha`): a few
/// dozen KiB that decode to width × height × 3 or 4 bytes.
fn black_png(width: u32, height: u32, alpha: bool) -> anyhow::Result<Vec<u8>> {
    use image::ImageEncoder;
    let (channels, colour) = if alpha {
        (4, image::ExtendedColorType::Rgba8)
    } else {
        (3, image::ExtendedColorType::Rgb8)
    };
    let pixels = vec![0u8; width as usize * height as usize * channels];
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(&pixels, width, height, colour)?;
    Ok(out)
}

/// The committed PNG declaring 50000×50000 pixels in 57 bytes.
const HEADER_BOMB: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/images/pixel-bomb-50000x50000.png"
));

fn cookie(c: &str) -> (String, String) {
    ("cookie".into(), format!("__Host-invigil={c}"))
}

/// A snapshot upload of `bytes` by the student signed in with `student`.
async fn snapshot(
    t: &Target,
    session: &str,
    student: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    let kind = base64::engine::general_purpose::STANDARD.encode("snapshot");
    let created = t
        .wire
        .request(
            Method::POST,
            &format!("/api/v1/sessions/{session}/uploads"),
            &[
                cookie(student),
                ("tus-resumable".into(), "1.0.0".into()),
                ("upload-length".into(), bytes.len().to_string()),
                ("upload-metadata".into(), format!("kind {kind}")),
            ],
            full(Bytes::new()),
        )
        .await?;
    let Some(location) = created
        .headers
        .get("location")
        .and_then(|l| l.to_str().ok())
    else {
        return Ok((created.status, message(&created.json)));
    };
    let appended = t
        .wire
        .request(
            Method::PATCH,
            location,
            &[
                cookie(student),
                ("tus-resumable".into(), "1.0.0".into()),
                ("upload-offset".into(), "0".into()),
                (
                    "content-type".into(),
                    "application/offset+octet-stream".into(),
                ),
            ],
            full(bytes),
        )
        .await?;
    Ok((appended.status, message(&appended.json)))
}

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

/// Snapshots that decode huge, four at once, a PNG declaring a vast canvas,
/// and a gzip-encoded JSON body; then the server's peak memory.
pub async fn bomb(t: &Target) -> anyhow::Result<Bomb> {
    let o = hub_bench::Options {
        students: 4,
        wall: 4,
        secs: 1,
        chat_every: 1,
    };
    let s = setup(&o, &t.wire.dialer, &t.wire.password).await?;
    // In service: one ordinary snapshot analysed, so the face models are
    // loaded (once per process) before idle is measured.
    let warm = black_png(640, 480, false)?;
    snapshot(t, &s.sessions[3], &s.students[3], warm).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_idle, _) = t.memory();
    let mut answers = Vec::new();
    // The largest snapshot that decodes: 4K, RGB (24 MB), four at once.
    let big = black_png(3840, 2160, false)?;
    let mut uploads = Vec::new();
    for i in 0..4 {
        let (session, student, big) = (s.sessions[i].clone(), s.students[i].clone(), big.clone());
        uploads.push(async move { snapshot(t, &session, &student, big).await });
    }
    for (status, message) in futures::future::try_join_all(uploads).await? {
        answers.push(Refusal {
            what: "4 snapshots at once, 3840×2160 RGB PNG of one colour",
            status,
            message,
        });
    }
    let biggest = black_png(4096, 2304, true)?;
    let (status, said) = snapshot(t, &s.sessions[1], &s.students[1], biggest).await?;
    answers.push(Refusal {
        what: "snapshot 4096×2304 RGBA PNG of one colour",
        status,
        message: said,
    });
    let (status, said) = snapshot(t, &s.sessions[0], &s.students[0], HEADER_BOMB.to_vec()).await?;
    answers.push(Refusal {
        what: "snapshot PNG declaring 50000×50000 in 57 bytes",
        status,
        message: said,
    });
    // No endpoint inflates Content-Encoding: the body is taken as it is and
    // fails as JSON, whatever it would inflate to.
    let a = t
        .wire
        .request(
            Method::POST,
            "/api/v1/auth/login",
            &[
                ("content-type".into(), "application/json".into()),
                ("content-encoding".into(), "gzip".into()),
            ],
            full(vec![
                0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03,
            ]),
        )
        .await?;
    answers.push(Refusal {
        what: "a JSON body marked Content-Encoding: gzip",
        status: a.status,
        message: message(&a.json),
    });
    // The snapshot analysis runs after the acknowledgement.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, peak_after) = t.memory();
    Ok(Bomb {
        answers,
        rss_idle,
        peak_after,
    })
}

/// What a WebSocket flood measured.
#[derive(Debug, Clone)]
pub struct Flood {
    pub flood_frames: u64,
    pub flood_secs: f64,
    /// Close codes the flooder got, each followed by a reconnect.
    pub closes: Vec<u16>,
    /// Other students' samples to the proctor's wall, before the flood.
    pub calm: Latencies,
    /// The same, during the flood.
    pub flooded: Latencies,
}

impl std::fmt::Display for Flood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut codes = self.closes.clone();
        codes.dedup();
        writeln!(
            f,
            "WebSocket flood: one student sent {} frames in {:.1} s ({:.0}/s), closed {} times (codes {:?}), reconnecting each time",
            self.flood_frames,
            self.flood_secs,
            self.flood_frames as f64 / self.flood_secs,
            self.closes.len(),
            codes
        )?;
        writeln!(
            f,
            "  other students' samples to the proctor, calm:    {}",
            self.calm
        )?;
        write!(
            f,
            "  other students' samples to the proctor, flooded: {} (p99 {:.2}× calm)",
            self.flooded,
            self.flooded.p99 / self.calm.p99
        )
    }
}

/// Sample tags per student; a tag's send time is kept until it comes round.
const TAGS: usize = 100;

/// Three students send a sample every 200 ms to a proctor's wall; after a
/// calm stretch a fourth floods its socket with samples as fast as it can,
/// reconnecting whenever it is closed.
pub async fn flood(t: &Target, secs: Duration) -> anyhow::Result<Flood> {
    let o = hub_bench::Options {
        students: 4,
        wall: 4,
        secs: 1,
        chat_every: 1,
    };
    let s = setup(&o, &t.wire.dialer, &t.wire.password).await?;
    let epoch = Instant::now();
    let sent: Arc<Vec<Vec<AtomicU64>>> = Arc::new(
        (0..4)
            .map(|_| (0..TAGS).map(|_| AtomicU64::new(0)).collect())
            .collect(),
    );
    let flood_start = Arc::new(AtomicU64::new(u64::MAX));
    let mut wall = t.wire.dialer.ws(&s.proctors[0]).await?;
    for session in &s.sessions {
        join(&mut wall, session).await?;
    }
    let (stop_tx, stop) = watch::channel(false);
    let watcher = {
        let (sessions, sent, flood_start, mut stop) = (
            s.sessions.clone(),
            sent.clone(),
            flood_start.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let (mut calm, mut flooded) = (Vec::new(), Vec::new());
            loop {
                let m = tokio::select! {
                    m = wall.next() => m,
                    _ = stop.changed() => break,
                };
                let text = match m {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => break,
                };
                let now = epoch.elapsed().as_nanos() as u64;
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if v["type"] != "metrics" {
                    continue;
                }
                let Some(i) = sessions.iter().position(|x| v["session"] == x.as_str()) else {
                    continue;
                };
                let tag = v["period"]["b1"].as_f64().unwrap_or(-1.0);
                if i == 0 || !(0.0..TAGS as f64).contains(&tag) {
                    continue;
                }
                let at = sent[i][tag as usize].load(Ordering::Relaxed);
                let latency = now.saturating_sub(at);
                if at >= flood_start.load(Ordering::Relaxed) {
                    flooded.push(latency);
                } else {
                    calm.push(latency);
                }
            }
            (calm, flooded)
        })
    };
    let mut students = Vec::new();
    for i in 1..4 {
        let mut ws = t.wire.dialer.ws(&s.students[i]).await?;
        join(&mut ws, &s.sessions[i]).await?;
        let (session, sent, mut stop) = (s.sessions[i].clone(), sent.clone(), stop.clone());
        students.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let reader = tokio::spawn(async move { while stream.next().await.is_some() {} });
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            for k in 0usize.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let tag = k % TAGS;
                sent[i][tag].store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
                let sample = json!({ "type": "samples", "session": session, "ref": k,
                                     "values": { "b1": tag } });
                if sink.send(Message::text(sample.to_string())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
            reader.abort();
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    flood_start.store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let flooding = Instant::now();
    let (mut frames, mut closes) = (0u64, Vec::new());
    let sample =
        json!({ "type": "samples", "session": s.sessions[0], "values": { "b1": 1 } }).to_string();
    while flooding.elapsed() < secs {
        let mut ws = t.wire.dialer.ws(&s.students[0]).await?;
        join(&mut ws, &s.sessions[0]).await?;
        let until = tokio::time::Instant::now() + secs.saturating_sub(flooding.elapsed());
        let code = flood_one(ws, &sample, &mut frames, until).await;
        if let Some(code) = code {
            closes.push(code);
        }
    }
    let flood_secs = flooding.elapsed().as_secs_f64();
    // The last samples sent reach the wall.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    for st in students {
        let _ = st.await;
    }
    let (calm, flooded) = watcher.await?;
    Ok(Flood {
        flood_frames: frames,
        flood_secs,
        closes,
        calm: Latencies::of(calm, 0),
        flooded: Latencies::of(flooded, 0),
    })
}

/// Sends `sample` as fast as the socket takes it until `until` or the
/// server closes; returns the close code if it did.
async fn flood_one(
    ws: Ws,
    sample: &str,
    frames: &mut u64,
    until: tokio::time::Instant,
) -> Option<u16> {
    let (mut sink, mut stream) = ws.split();
    let reader = async {
        while let Some(m) = stream.next().await {
            match m {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let writer = async {
        loop {
            if sink.send(Message::text(sample)).await.is_err() {
                // The server closed: wait for the reader to see why.
                std::future::pending::<()>().await;
            }
            *frames += 1;
        }
    };
    tokio::select! {
        code = reader => code,
        () = writer => None,
        () = tokio::time::sleep_until(until) => None,
    }
}

/// What the limits answered.
#[derive(Debug, Clone)]
pub struct Limits {
    pub answers: Vec<Refusal>,
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "limits:")?;
        for a in &self.answers {
            write!(f, "\n  {}: {} {}", a.what, a.status, a.message)?;
        }
        Ok(())
    }
}

/// A body that sends `bytes` and then never ends.
fn endless(bytes: Vec<u8>) -> Body {
    let first = Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(bytes)));
    let stream = futures::stream::iter([first]).chain(futures::stream::pending());
    BodyExt::boxed(http_body_util::StreamBody::new(stream))
}

/// Too many headers, too large headers, and bodies over `UPLOAD_LIMIT`
/// (declared and streamed).
pub async fn limits(t: &Target) -> anyhow::Result<Limits> {
    let mut answers = Vec::new();
    // A refusal may come while the client still writes the body; the server
    // then closes, and the write can fail before the answer is read. Such a
    // request is sent again (a few times) until its answer is read.
    let mut ask = async |what: &'static str,
                         method: Method,
                         headers: Vec<(String, String)>,
                         body: fn() -> Body| {
        let mut tries = 0;
        let a = loop {
            tries += 1;
            match t
                .wire
                .request(method.clone(), "/api/v1/auth/login", &headers, body())
                .await
            {
                Ok(a) => break a,
                Err(e) if tries < 5 => tracing::debug!("{what}: {e:#}; sending again"),
                Err(e) => return Err(e),
            }
        };
        answers.push(Refusal {
            what,
            status: a.status,
            message: message(&a.json),
        });
        anyhow::Ok(())
    };
    let many = (0..150)
        .map(|i| (format!("x-many-{i}"), "1".to_string()))
        .collect();
    let empty: fn() -> Body = || full(Bytes::new());
    ask("150 header fields", Method::GET, many, empty).await?;
    let large = vec![("cookie".to_string(), "a".repeat(40 * 1024))];
    ask("a 40 KiB header", Method::GET, large, empty).await?;
    let huge = vec![("cookie".to_string(), "a".repeat(300 * 1024))];
    ask(
        "a 300 KiB header (hyper's own limit)",
        Method::GET,
        huge,
        empty,
    )
    .await?;
    let declared = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("content-length".to_string(), (64u64 << 20).to_string()),
    ];
    ask("a body declaring 64 MiB", Method::POST, declared, || {
        endless(b"{".to_vec())
    })
    .await?;
    let chunked = vec![("content-type".to_string(), "application/json".to_string())];
    ask(
        "a 4 MiB body without a length",
        Method::POST,
        chunked,
        || {
            let stream = futures::stream::iter((0..64).map(|_| {
                Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![
                    b' ';
                    64 * 1024
                ])))
            }));
            BodyExt::boxed(http_body_util::StreamBody::new(stream))
        },
    )
    .await?;
    Ok(Limits { answers })
}
