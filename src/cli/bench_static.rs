//! `invigil bench static`: the web interface's files and an API read from
//! `invigil serve` against nginx serving the identical bytes with the same
//! certificate. One load client for both: kept-alive HTTPS/1.1 connections,
//! each sending its next request when the last is answered; the servers are
//! loaded one after the other so neither shares the CPU with the other.

mod nginx;

use super::bench_hostile::Latencies;
use super::hub_bench::client::{Dialer, Server, usage};
use bytes::Bytes;
use http::Method;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds of load per target and server.
    pub secs: u64,
    /// Kept-alive connections, each with one request in flight.
    pub connections: usize,
}

/// One URL under test, with the bytes every answer must have.
struct Target {
    label: &'static str,
    path: String,
    body: Bytes,
}

/// What one server did under the load on one target.
struct Run {
    latencies: Latencies,
    per_sec: f64,
    cpu: f64,
}

/// Files of the web interface, and one API read needing a session cookie.
const FILES: [(&str, &str); 3] = [
    ("index.html", "/"),
    ("JS module", "/js/app.js"),
    ("stylesheet", "/style.css"),
];

pub fn run(o: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.secs > 0, "--secs must be at least 1");
    anyhow::ensure!(o.connections > 0, "--connections must be at least 1");
    let bin = nginx::find()?;
    let server = Server::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bench(o, &server, &bin));
    drop(runtime);
    server.stop();
    result
}

async fn bench(o: &Options, server: &Server, bin: &std::path::Path) -> anyhow::Result<()> {
    let dialer = Dialer::new(server)?;
    let (cookie, targets) = fetch(&dialer, &server.password).await?;
    let files: Vec<nginx::File<'_>> = targets
        .iter()
        .map(|t| nginx::File {
            path: &t.path,
            body: &t.body,
        })
        .collect();
    let tls = server.data_dir.join("tls");
    let peer = nginx::Nginx::start(
        bin,
        &tls.join("self-signed.crt"),
        &tls.join("self-signed.key"),
        &files,
        super::cpus(),
        o.connections,
    )?;
    let peer_dialer = dialer.at(peer.addr);
    println!(
        "invigil bench static: {} kept-alive HTTPS/1.1 connections, {} s per target and server, \
         on loopback, {} CPUs; {} with {} workers serves the same bytes with the same certificate",
        o.connections,
        o.secs,
        super::cpus(),
        peer.version,
        peer.workers
    );
    println!(
        "{:<34} {:>7} | {:>9} {:>7} {:>7} {:>6} | {:>9} {:>7} {:>7} {:>6} | {:>6}",
        "target",
        "bytes",
        "invigil/s",
        "p50 ms",
        "p99 ms",
        "CPU s",
        "nginx/s",
        "p50 ms",
        "p99 ms",
        "CPU s",
        "ratio"
    );
    let cookie = Arc::new(cookie);
    let mut errors = 0;
    for t in &targets {
        let ours = load(&dialer, t, &cookie, o, || usage(server.pid()).2).await?;
        let theirs = load(&peer_dialer, t, &cookie, o, || peer.cpu()).await?;
        errors += ours.latencies.errors + theirs.latencies.errors;
        let shown = if t.path.starts_with("/api/") {
            "/api/v1/sessions/{id}".to_string()
        } else {
            t.path.clone()
        };
        println!(
            "{:<34} {:>7} | {:>9.0} {:>7.2} {:>7.2} {:>6.1} | {:>9.0} {:>7.2} {:>7.2} {:>6.1} | {:>6.2}",
            format!("{shown} ({})", t.label),
            t.body.len(),
            ours.per_sec,
            ours.latencies.p50,
            ours.latencies.p99,
            ours.cpu,
            theirs.per_sec,
            theirs.latencies.p50,
            theirs.latencies.p99,
            theirs.cpu,
            ours.per_sec / theirs.per_sec
        );
    }
    println!(
        "ratio = invigil requests/s ÷ nginx requests/s; every answer checked: status 200 and \
         the expected bytes; {errors} errors"
    );
    drop(peer);
    anyhow::ensure!(
        errors == 0,
        "{errors} answers were errors or not the expected bytes"
    );
    Ok(())
}

/// Signs in as the manager, makes a template and a session, and fetches
/// every target's bytes from invigil. Returns the cookie and the targets.
async fn fetch(dialer: &Dialer, password: &str) -> anyhow::Result<(String, Vec<Target>)> {
    let mut http = dialer.http().await?;
    let login = json!({ "username": "manager", "password": password });
    let cookie = http
        .expect(200, Method::POST, "/api/v1/auth/login", None, Some(&login))
        .await?
        .cookie
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    let m = Some(cookie.as_str());
    let template = json!({ "id": "bench", "name": "bench", "weights": { "b1": 0.1, "b2": 0.5 } });
    http.expect(201, Method::POST, "/api/v1/templates", m, Some(&template))
        .await?;
    let new =
        json!({ "student": "bench-student", "template": "bench", "proctors": ["bench-proctor"] });
    let session = http
        .expect(201, Method::POST, "/api/v1/sessions", m, Some(&new))
        .await?;
    let id = session.body["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the new session has no id: {}", session.body))?;
    let paths = FILES
        .iter()
        .map(|(label, path)| (*label, path.to_string()))
        .chain([("API read", format!("/api/v1/sessions/{id}"))]);
    let mut targets = Vec::new();
    for (label, path) in paths {
        let (status, body) = http.get(&path, m).await?;
        anyhow::ensure!(status == 200, "GET {path} from invigil: {status}");
        targets.push(Target { label, path, body });
    }
    Ok((cookie, targets))
}

/// `o.connections` connections to one server, each looping GETs of `t` for
/// `o.secs`; every answer must be 200 with the expected bytes.
async fn load(
    dialer: &Dialer,
    t: &Target,
    cookie: &Arc<String>,
    o: &Options,
    cpu: impl Fn() -> f64,
) -> anyhow::Result<Run> {
    // Connections (and their TLS handshakes) before the clock starts.
    let mut conns = Vec::new();
    for _ in 0..o.connections {
        conns.push(dialer.http().await?);
    }
    let cpu_before = cpu();
    let started = Instant::now();
    let until = started + Duration::from_secs(o.secs);
    let mut tasks = Vec::new();
    for mut http in conns {
        let (dialer, path, cookie, want) = (
            dialer.clone(),
            t.path.clone(),
            cookie.clone(),
            t.body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (mut ns, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < until {
                let sent = Instant::now();
                match http.get(&path, Some(cookie.as_str())).await {
                    Ok((200, body)) if body == want => {
                        ns.push(sent.elapsed().as_nanos() as u64);
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        // The connection is gone: a new one, or this client stops.
                        match dialer.http().await {
                            Ok(h) => http = h,
                            Err(_) => break,
                        }
                    }
                }
            }
            (ns, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (ns, e) = task.await?;
        all.extend(ns);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu() - cpu_before;
    let latencies = Latencies::of(all, errors);
    Ok(Run {
        per_sec: latencies.count as f64 / elapsed,
        latencies,
        cpu,
    })
}
