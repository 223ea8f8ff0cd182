//! Certificates end to end: own files reloaded on change and on SIGHUP, the
//! local CA, ACME against pebble (`certs/acme.rs`) and reverse-proxy mode
//! behind nginx and Apache (`certs/proxy.rs`). Every check uses a real TLS
//! client that trusts only what the scenario says it should.

mod acme;
mod proxy;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use invigil::tls::CertResolver;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::blackbox::{invigil, serve, sigterm, wait_exit};
use crate::harness::Daemon;

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A certificate and key as PEM, with the certificate's DER.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
    pub der: CertificateDer<'static>,
}

/// A self-signed certificate for `names`.
pub fn self_signed(names: &[&str]) -> Pem {
    let made =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    Pem {
        cert: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

/// A throwaway CA for peers' own TLS (pebble's listener, nginx).
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn leaf(&self, names: &[&str]) -> Pem {
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// Replaces `path` by rename, as certbot and configuration management do.
pub fn write_atomic(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A TLS 1.3 handshake with `addr` as `name`, trusting only `roots`, offering
/// HTTP/1.1.
pub async fn handshake(
    addr: SocketAddr,
    name: &str,
    roots: &[CertificateDer<'static>],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(std::io::Error::other)?;
    }
    let mut config = ClientConfig::builder_with_provider(invigil::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// The leaf certificate the server presented.
pub fn leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("peer certificates")[0]
        .clone()
}

pub fn serial(der: &CertificateDer<'_>) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("X.509");
    cert.tbs_certificate.raw_serial_as_string()
}

/// The leaf served to a new connection.
pub async fn served(
    addr: SocketAddr,
    name: &str,
    roots: &[CertificateDer<'static>],
) -> CertificateDer<'static> {
    leaf(&handshake(addr, name, roots).await.expect("handshake"))
}

/// One keep-alive HTTP/1.1 GET on an open connection: status and body.
pub async fn get(stream: &mut TlsStream<TcpStream>, host: &str, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let head = &text[..end];
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        if buf.len() >= end + 4 + length {
            let status = head
                .split_whitespace()
                .nth(1)
                .expect("status")
                .parse()
                .expect("code");
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string();
            return (status, body);
        }
    }
}

/// Polls `check` until it is true or `limit` passes.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// A client trusting only `roots` that resolves `name` to `addr`.
pub fn client(roots: &[&str], name: &str, addr: SocketAddr) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve(name, addr)
        .timeout(Duration::from_secs(10));
    for pem in roots {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("PEM"));
    }
    builder.build().expect("client")
}

async fn metric(client: &reqwest::Client, url: &str, line_prefix: &str) -> u64 {
    let text = client
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

const FILES_FAILURES: &str =
    "invigil_tls_certificate_updates_total{source=\"files\",result=\"failure\"} ";

#[tokio::test]
async fn own_certificate_follows_file_changes_and_refuses_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        self_signed(&["localhost"]),
        self_signed(&["localhost"]),
        self_signed(&["localhost"]),
    );
    let roots = [a.der.clone(), b.der.clone(), c.der.clone()];
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    write_atomic(&cert_path, &a.cert);
    write_atomic(&key_path, &a.key);
    let data = dir.path().join("data");
    let d = Daemon::start_in(
        &data,
        &[
            ("SSL_CERT", cert_path.to_str().unwrap()),
            ("SSL_KEY", key_path.to_str().unwrap()),
            ("SSL_RELOAD", "1"),
        ],
        axum::Router::new(),
    )
    .await
    .expect("daemon starts");
    let addr = d.running.https_addr;
    assert_eq!(served(addr, "localhost", &roots).await, a.der);
    let mut before = handshake(addr, "localhost", &roots).await.unwrap();
    assert_eq!(get(&mut before, "localhost", "/ping").await.0, 200);

    write_atomic(&key_path, &b.key);
    write_atomic(&cert_path, &b.cert);
    eventually(
        "b served after the files changed",
        Duration::from_secs(10),
        || async { served(addr, "localhost", &roots).await == b.der },
    )
    .await;
    // The connection opened before the change carries on with its certificate.
    let (status, body) = get(&mut before, "localhost", "/ping").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(leaf(&before), a.der);
    let ping: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ping["tls"], "files");
    let b_expires = invigil::tls::CertInfo::from_der(&b.der, "b")
        .unwrap()
        .not_after;
    let shown = time::OffsetDateTime::parse(
        ping["cert_expires"].as_str().expect("cert_expires"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(std::time::SystemTime::from(shown), b_expires);

    let metrics = client(&[&b.cert], "localhost", addr);
    let metrics_url = format!("https://localhost:{}/metrics", addr.port());
    let failures_before = metric(&metrics, &metrics_url, FILES_FAILURES).await;

    // Garbage: refused, b keeps serving, the failure is counted.
    write_atomic(&cert_path, "not a certificate\n");
    eventually(
        "garbage counted as a failure",
        Duration::from_secs(10),
        || async { metric(&metrics, &metrics_url, FILES_FAILURES).await > failures_before },
    )
    .await;
    assert_eq!(served(addr, "localhost", &roots).await, b.der);

    // c's certificate with b's key: refused, b keeps serving.
    let failures_garbage = metric(&metrics, &metrics_url, FILES_FAILURES).await;
    write_atomic(&cert_path, &c.cert);
    eventually(
        "mismatched key counted as a failure",
        Duration::from_secs(10),
        || async { metric(&metrics, &metrics_url, FILES_FAILURES).await > failures_garbage },
    )
    .await;
    assert_eq!(served(addr, "localhost", &roots).await, b.der);

    // The matching key completes c, which is then served.
    write_atomic(&key_path, &c.key);
    eventually(
        "c served once its key arrived",
        Duration::from_secs(10),
        || async { served(addr, "localhost", &roots).await == c.der },
    )
    .await;
    d.stop().await;
}

#[tokio::test]
async fn own_certificate_is_swapped_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (self_signed(&["localhost"]), self_signed(&["localhost"]));
    let roots = [a.der.clone(), b.der.clone()];
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    write_atomic(&cert_path, &a.cert);
    write_atomic(&key_path, &a.key);
    let data = dir.path().join("data");
    let mut server = serve(
        &data,
        &[
            ("SSL_CERT", cert_path.to_str().unwrap()),
            ("SSL_KEY", key_path.to_str().unwrap()),
            ("SSL_RELOAD", "off"),
        ],
    );
    let addr = server.https;
    assert_eq!(served(addr, "localhost", &roots).await, a.der);
    write_atomic(&key_path, &b.key);
    write_atomic(&cert_path, &b.cert);
    // SSL_RELOAD=off: nothing changes until SIGHUP.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(served(addr, "localhost", &roots).await, a.der);
    let hup = || {
        // SAFETY: signalling our own child process.
        let rc = unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0);
    };
    hup();
    eventually("b served after SIGHUP", Duration::from_secs(5), || async {
        served(addr, "localhost", &roots).await == b.der
    })
    .await;

    // A broken file on SIGHUP: refused with an error in the log, b stays.
    write_atomic(
        &key_path,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    hup();
    let log = data.with_extension("log");
    eventually("the refusal is logged", Duration::from_secs(5), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("certificate not reloaded")
    })
    .await;
    assert_eq!(served(addr, "localhost", &roots).await, b.der);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("SSL_KEY"),
        "the error names the variable:\n{text}"
    );
    assert!(!text.contains("AAAA"), "key material never logged");

    sigterm(&server.child);
    assert_eq!(
        wait_exit(&mut server.child, Duration::from_secs(5)),
        Some(0)
    );
}

#[tokio::test]
async fn local_ca_root_is_trusted_only_within_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| invigil(&data).args(args).output().expect("run invigil");
    let out = run(&[
        "ca",
        "init",
        "--name",
        "invigil.test",
        "--ip",
        "127.0.0.0/8",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = run(&["ca", "init", "--name", "invigil.test"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing CA is not replaced silently"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let pem = String::from_utf8(run(&["ca", "export"]).stdout).unwrap();
    let der = run(&["ca", "export", "--der"]).stdout;
    let root = invigil::tls::files::parse_certs("root", &pem)
        .unwrap()
        .remove(0);
    assert_eq!(
        root.as_ref(),
        &der[..],
        "PEM and DER exports are the same root"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("ca/root.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let d = Daemon::start_in(
        &data,
        &[("DOMAIN_NAME", "invigil.test")],
        axum::Router::new(),
    )
    .await
    .expect("daemon starts");
    let addr = d.running.https_addr;
    let by_name = client(&[&pem], "invigil.test", addr);
    let ping: serde_json::Value = by_name
        .get(format!("https://invigil.test:{}/ping", addr.port()))
        .send()
        .await
        .expect("a client trusting only the root connects")
        .json()
        .await
        .unwrap();
    assert_eq!(ping["tls"], "local-ca");
    assert!(ping["cert_expires"].is_string());
    // HOST 127.0.0.1 is inside 127.0.0.0/8, so the address works too.
    let by_ip = client(&[&pem], "unused.invalid", addr);
    let status = by_ip
        .get(format!("https://127.0.0.1:{}/ping", addr.port()))
        .send()
        .await
        .expect("IP address within the constraints")
        .status();
    assert_eq!(status, 200);
    d.stop().await;

    // A certificate from this CA for a name outside its constraints is
    // refused by the client; one inside them is accepted.
    let ca = invigil::tls::local_ca::load(&data).unwrap();
    for (name, accepted) in [("www.invigil.test", true), ("evil.example", false)] {
        let (_, _, certified, _) = ca
            .issue(&[name.to_string()], Duration::from_secs(3600))
            .unwrap();
        let addr = spawn_tls(certified).await;
        let result = handshake(addr, name, std::slice::from_ref(&root)).await;
        assert_eq!(result.is_ok(), accepted, "{name}: {:?}", result.err());
    }
}

/// A TLS server that completes handshakes with `certified` and nothing more.
async fn spawn_tls(certified: invigil::tls::CertifiedKey) -> SocketAddr {
    let config = invigil::tls::server_config(Arc::new(CertResolver::new(certified)));
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.read(&mut [0u8; 16]).await;
                }
            });
        }
    });
    addr
}
