//! `invigil bench ingest`: recording ingest over TLS with durable
//! acknowledgements against `dd oflag=dsync` writing the same number of bytes
//! in the same block size to the same disk.
//!
//! invigil runs in-process on a fresh data directory under `--dir`; a
//! student's session is set up over the REST API, then tus uploads send the
//! chunks (each PATCH answered only once the chunk's object and its protocol
//! entry are fsynced). dd then writes the same bytes with one synchronous
//! write per block. Both are timed from the first byte to the last
//! acknowledgement.

use crate::app;
use crate::config::Config;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

const PW: &str = "Bench manager pass 1";

pub struct Options {
    /// Megabytes per run.
    pub mb: u64,
    /// Chunk (and dd block) size in KiB.
    pub chunk_kb: u64,
    /// Concurrent uploads (and dd processes) per run.
    pub parallel: Vec<usize>,
    /// Where the data directory and dd's files go (the disk under test).
    pub dir: PathBuf,
}

pub fn run(options: Options) -> ExitCode {
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(bench(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("invigil: bench ingest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(o: &Options) -> Result<()> {
    if o.mb == 0 || o.chunk_kb == 0 || o.parallel.contains(&0) {
        bail!("--mb, --chunk-kb and --parallel must be at least 1");
    }
    let root = o
        .dir
        .join(format!("invigil-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = measure(&root, o).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// A small HTTPS client that trusts only the instance's self-signed certificate.
struct Http {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Http {
    fn new(cert: &Path, port: u16) -> Result<Http> {
        let pem = std::fs::read(cert).context("reading the self-signed certificate")?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.context("parsing the certificate")?)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Ok(Http {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: format!("https://localhost:{port}"),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        cookie: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::ORIGIN, &self.base);
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, format!("__Host-invigil={cookie}"));
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let response = self.client.request(req.body(Full::new(body))?).await?;
        let (parts, body) = response.into_parts();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        })
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        cookie: &str,
        body: serde_json::Value,
        expect: u16,
    ) -> Result<Answer> {
        let a = self
            .send(
                method,
                path,
                cookie,
                &[("content-type", "application/json".into())],
                serde_json::to_vec(&body)?.into(),
            )
            .await?;
        if a.status.as_u16() != expect {
            bail!(
                "{path} answered {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        Ok(a)
    }

    async fn login(&self, username: &str, password: &str) -> Result<String> {
        let body = serde_json::json!({ "username": username, "password": password });
        let a = self
            .json(Method::POST, "/api/v1/auth/login", "", body, 200)
            .await?;
        a.headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("__Host-invigil="))
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
            .context("no session cookie")
    }
}

async fn measure(root: &Path, o: &Options) -> Result<()> {
    let data = root.join("data");
    let chunk = o.chunk_kb * 1024;
    let limit_mb = (chunk / (1024 * 1024) + 1).to_string();
    let vars = [
        ("DATA_DIR", data.to_string_lossy().to_string()),
        ("HOST", "127.0.0.1".into()),
        ("PORT", "0".into()),
        ("HTTP_PORT", "off".into()),
        ("TURN_PORT", "0".into()),
        ("MANAGER_PASSWORD", PW.into()),
        ("UPLOAD_LIMIT", limit_mb),
    ];
    let config = Config::load(None, vars.map(|(k, v)| (k.to_string(), v)))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .config;
    let running = app::start(config, axum::Router::new()).await?;
    let http = Arc::new(Http::new(
        &data.join("tls/self-signed.crt"),
        running.https_addr.port(),
    )?);
    let (session, student) = setup(&http).await?;

    let total = o.mb * 1024 * 1024;
    println!(
        "ingest of {} MiB in {} KiB chunks over TLS (HTTP/1.1, tus PATCH, durable acks) vs dd oflag=dsync, in {}",
        o.mb,
        o.chunk_kb,
        root.display()
    );
    println!("streams | invigil MB/s | dd MB/s | ratio");
    for &p in &o.parallel {
        let ours = ingest(&http, &student, &session, p, total, chunk).await?;
        let dd = dd(root, p, total, chunk).await?;
        let mbps = |secs: f64| total as f64 / 1e6 / secs;
        println!(
            "{p:>7} | {:>12.1} | {:>7.1} | {:>5.2}",
            mbps(ours),
            mbps(dd),
            dd / ours
        );
    }
    running.stop().await;
    Ok(())
}

/// A started session of a student; returns its id and the student's cookie.
async fn setup(http: &Http) -> Result<(String, String)> {
    let manager = http.login("manager", PW).await?;
    let user = serde_json::json!({ "username": "bench", "role": "student", "password": "Temporary pass 1" });
    http.json(Method::POST, "/api/v1/users", &manager, user, 201)
        .await?;
    let first = http.login("bench", "Temporary pass 1").await?;
    let change = serde_json::json!({ "old": "Temporary pass 1", "new": "Chosen bench pass 1" });
    http.json(Method::POST, "/api/v1/auth/password", &first, change, 200)
        .await?;
    let student = http.login("bench", "Chosen bench pass 1").await?;
    let template = serde_json::json!({ "id": "bench", "name": "bench" });
    http.json(Method::POST, "/api/v1/templates", &manager, template, 201)
        .await?;
    let new = serde_json::json!({ "student": "bench", "template": "bench" });
    let created = http
        .json(Method::POST, "/api/v1/sessions", &manager, new, 201)
        .await?;
    let session: serde_json::Value = serde_json::from_slice(&created.body)?;
    let id = session["id"].as_str().context("session id")?.to_string();
    let started = http
        .send(
            Method::POST,
            &format!("/api/v1/sessions/{id}/start"),
            &student,
            &[],
            Bytes::new(),
        )
        .await?;
    if started.status != StatusCode::OK {
        bail!("starting the session answered {}", started.status);
    }
    Ok((id, student))
}

/// Uploads `total` bytes as `streams` concurrent tus uploads; seconds taken.
async fn ingest(
    http: &Arc<Http>,
    cookie: &str,
    session: &str,
    streams: usize,
    total: u64,
    chunk: u64,
) -> Result<f64> {
    // Not zeros, so nothing on the way can shortcut them.
    let payload: Bytes = (0..chunk)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into();
    let per_stream = total / streams as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (http, cookie, session, payload) = (
            http.clone(),
            cookie.to_string(),
            session.to_string(),
            payload.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let tus = |extra: &[(&'static str, String)]| {
                let mut h = vec![("tus-resumable", "1.0.0".to_string())];
                h.extend_from_slice(extra);
                h
            };
            let created = http
                .send(
                    Method::POST,
                    &format!("/api/v1/sessions/{session}/uploads"),
                    &cookie,
                    &tus(&[
                        ("upload-length", per_stream.to_string()),
                        ("upload-metadata", "kind d2ViY2Ft".into()),
                    ]),
                    Bytes::new(),
                )
                .await?;
            let location = created
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .context("no Location for the upload")?
                .to_string();
            let mut offset = 0;
            while offset < per_stream {
                let n = chunk.min(per_stream - offset);
                let a = http
                    .send(
                        Method::PATCH,
                        &location,
                        &cookie,
                        &tus(&[
                            ("content-type", "application/offset+octet-stream".into()),
                            ("upload-offset", offset.to_string()),
                        ]),
                        payload.slice(..n as usize),
                    )
                    .await?;
                if a.status != StatusCode::NO_CONTENT {
                    bail!(
                        "PATCH answered {}: {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    );
                }
                offset += n;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Writes `total` bytes with `streams` concurrent `dd oflag=dsync`; seconds taken.
async fn dd(root: &Path, streams: usize, total: u64, chunk: u64) -> Result<f64> {
    let count = (total / streams as u64).div_ceil(chunk);
    let started = Instant::now();
    let mut children = Vec::new();
    for i in 0..streams {
        let file = root.join(format!("dd-{i}.bin"));
        children.push(
            tokio::process::Command::new("dd")
                .arg("if=/dev/zero")
                .arg(format!("of={}", file.display()))
                .arg(format!("bs={chunk}"))
                .arg(format!("count={count}"))
                .arg("oflag=dsync")
                .arg("status=none")
                .spawn()
                .context("running dd")?,
        );
    }
    for mut c in children {
        let status = c.wait().await?;
        if !status.success() {
            bail!("dd failed: {status}");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    for i in 0..streams {
        let _ = std::fs::remove_file(root.join(format!("dd-{i}.bin")));
    }
    Ok(secs)
}
