//! The daemon in-process: health, errors, limits, redirects, certificates,
//! timeouts and graceful shutdown, through a real TLS client.

use crate::harness::{Daemon, error_code};
use axum::routing::get;
use rustls_pki_types::pem::PemObject;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn ping_answers_the_contract() {
    let d = Daemon::start(&[]).await;
    let r = d.client.get(d.url("/ping")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], invigil::VERSION);
    assert_eq!(v["tls"], "self-signed");
    d.stop().await;
}

#[tokio::test]
async fn front_page_metrics_and_json_errors() {
    let d = Daemon::start(&[("MANAGER_USERNAME", "chief")]).await;
    let page = d.client.get(d.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["etag"].to_str().unwrap().starts_with('"'));
    let text = page.text().await.unwrap();
    assert!(text.contains(invigil::VERSION) && text.contains("chief"));

    let (status, code, _) =
        error_code(d.client.get(d.url("/api/v1/nothing")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, code, _) = error_code(d.client.delete(d.url("/ping")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));

    let metrics = d.client.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("invigil_http_requests_total{method=\"GET\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("status=\"404\""), "{text}");
    d.stop().await;
}

#[tokio::test]
async fn bodies_over_upload_limit_get_413_json() {
    let d = Daemon::start(&[("UPLOAD_LIMIT", "1")]).await;
    let body = vec![b'x'; 1024 * 1024 + 1];
    let r = d
        .client
        .post(d.url("/api/v1/anything"))
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_code(r).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    assert!(message.contains("UPLOAD_LIMIT (1 MiB)"), "{message}");
    d.stop().await;
}

#[tokio::test]
async fn http_port_redirects_to_https() {
    let d = Daemon::start(&[]).await;
    let http = d.running.http_addr.expect("HTTP listener");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("http://{http}/some/path?x=1&y=2"))
        .header("host", format!("localhost:{}", http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!(
            "https://localhost:{}/some/path?x=1&y=2",
            d.running.https_addr.port()
        )
        .as_str()
    );
    d.stop().await;
}

fn peer_certificate(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("peer certificate")
        .to_vec()
}

#[tokio::test]
async fn certificate_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), &[], axum::Router::new())
        .await
        .unwrap();
    let first = peer_certificate(&d.client.get(d.url("/ping")).send().await.unwrap());
    let first_pem = crate::harness::self_signed_pem(dir.path());
    d.stop().await;
    let d = Daemon::start_in(dir.path(), &[], axum::Router::new())
        .await
        .unwrap();
    assert_eq!(first_pem, crate::harness::self_signed_pem(dir.path()));
    // A client that trusts only the first certificate still connects.
    let old_trust = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&first_pem).unwrap())
        .resolve("localhost", d.running.https_addr)
        .tls_info(true)
        .build()
        .unwrap();
    let second = peer_certificate(&old_trust.get(d.url("/ping")).send().await.unwrap());
    assert_eq!(first, second, "a restart must keep the certificate");
    d.stop().await;
}

#[tokio::test]
async fn second_daemon_on_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), &[], axum::Router::new())
        .await
        .unwrap();
    let err = Daemon::start_in(dir.path(), &[], axum::Router::new())
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("DATA_DIR") && text.contains("already using"),
        "{text}"
    );
    d.stop().await;
}

#[tokio::test]
async fn port_in_use_is_a_config_error_naming_the_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let err = Daemon::start_in(dir.path(), &[("PORT", &port)], axum::Router::new())
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("PORT:") && text.contains("already in use"),
        "{text}"
    );
    // Nothing half-started: the database was not even created.
    assert!(!dir.path().join("invigil.redb").exists());
}

#[tokio::test]
async fn silent_connections_are_closed_after_http_timeout() {
    let d = Daemon::start(&[("HTTP_TIMEOUT", "1")]).await;
    // A client that connects and never starts TLS.
    let mut tcp = tokio::net::TcpStream::connect(d.running.https_addr)
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed before 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A client that completes TLS, then sends half a request and stalls.
    let root = crate::harness::self_signed_pem(&d.data_dir);
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&root) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(invigil::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(d.running.https_addr)
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a stalled request is cut off by HTTP_TIMEOUT");
    d.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let slow = axum::Router::new().route(
        "/test/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            "done"
        }),
    );
    let d = Daemon::start_in(dir.path(), &[], slow).await.unwrap();
    let request = tokio::spawn(d.client.get(d.url("/test/slow")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let client = d.client.clone();
    let url = d.url("/ping");
    d.stop().await;
    let took = started.elapsed();
    let answered = request.await.unwrap().expect("in-flight request answered");
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "done");
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    assert!(client.get(url).send().await.is_err(), "no longer accepting");
    // The data directory is released: a new daemon can start on it at once.
    Daemon::start_in(dir.path(), &[], axum::Router::new())
        .await
        .unwrap()
        .stop()
        .await;
}
