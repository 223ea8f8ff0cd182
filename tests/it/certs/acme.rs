//! ACME against Debian's pebble on loopback, with its random nonce rejections
//! left on so that the client's retries are exercised.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use invigil::config::Config;

use super::{TestCa, eventually, free_port, get, handshake, leaf, serial, served};
use crate::harness::{Daemon, config};

const DOMAIN: &str = "invigil.test";

/// pebble and its DNS (pebble-challtestsrv), killed when dropped.
struct Pebble {
    children: Vec<Child>,
    dir: tempfile::TempDir,
    directory: String,
    management: u16,
    tls_root: PathBuf,
    tls_root_pem: String,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    cmd.stdout(log.try_clone().expect("log")).stderr(log);
    cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {:?} (tests/run installs the Debian package pebble): {e}",
            cmd.get_program()
        )
    })
}

impl Pebble {
    /// Starts pebble validating http-01 on `http_port` and tls-alpn-01 on
    /// `tls_port` of 127.0.0.1, where the daemon under test will listen.
    async fn start(http_port: u16, tls_port: u16) -> Pebble {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::new("pebble listener test CA");
        let listener = ca.leaf(&["localhost", "127.0.0.1"]);
        let tls_root = dir.path().join("ca.pem");
        std::fs::write(&tls_root, &ca.pem).unwrap();
        std::fs::write(dir.path().join("cert.pem"), &listener.cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), &listener.key).unwrap();
        let (listen, management, challtest) = (free_port(), free_port(), free_port());
        let dns = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap().port()
        };
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut children = Vec::new();
        children.push(spawn(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{challtest}")])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .stdin(Stdio::null()),
            &dir.path().join("challtestsrv.log"),
        ));
        children.push(spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                // No random 0-15 s validation sleep; nonce rejections stay on.
                .env("PEBBLE_VA_NOSLEEP", "1")
                .stdin(Stdio::null()),
            &dir.path().join("pebble.log"),
        ));
        let pebble = Pebble {
            children,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            tls_root,
            tls_root_pem: ca.pem.clone(),
            dir,
        };
        let client = pebble.client();
        eventually("pebble answers", Duration::from_secs(20), || async {
            client
                .get(&pebble.directory)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        pebble
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.tls_root_pem.as_bytes()).unwrap(),
            )
            .build()
            .unwrap()
    }

    /// The root that pebble issues certificates under (new every start).
    async fn issuing_root(&self) -> rustls::pki_types::CertificateDer<'static> {
        let pem = self
            .client()
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .expect("pebble root")
            .text()
            .await
            .unwrap();
        invigil::tls::files::parse_certs("pebble root", &pem)
            .unwrap()
            .remove(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

/// A daemon configuration pointing at `pebble`; `extra` as variables.
fn acme_config(data: &Path, pebble: &Pebble, https: u16, extra: &[(&str, &str)]) -> Config {
    let https = https.to_string();
    let root = pebble.tls_root.to_str().unwrap().to_string();
    let mut vars: Vec<(&str, &str)> = vec![
        ("PORT", &https),
        ("DOMAIN_NAME", DOMAIN),
        ("ACME_DIRECTORY", &pebble.directory),
        ("ACME_CA_ROOT", &root),
        ("ACME_EMAIL", "exams@invigil.test"),
    ];
    vars.extend_from_slice(extra);
    let mut config = config(data, &vars);
    // Pebble's random failures are meant to be retried quickly here.
    config.acme_retry_after = Duration::from_millis(500);
    config
}

/// Waits until the daemon serves a certificate that chains to pebble's root.
async fn wait_for_acme(
    addr: SocketAddr,
    pebble: &Pebble,
) -> rustls::pki_types::CertificateDer<'static> {
    let root = pebble.issuing_root().await;
    let roots = [root];
    let mut got = None;
    let until = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < until {
        if let Ok(stream) = handshake(addr, DOMAIN, &roots).await {
            got = Some(leaf(&stream));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    got.unwrap_or_else(|| {
        panic!(
            "no certificate from pebble within 90 s; pebble log:\n{}",
            pebble.log()
        )
    })
}

async fn ping(
    addr: SocketAddr,
    roots: &[rustls::pki_types::CertificateDer<'static>],
) -> serde_json::Value {
    let mut stream = handshake(addr, DOMAIN, roots).await.expect("handshake");
    let (status, body) = get(&mut stream, DOMAIN, "/ping").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn acme_http01_issues_persists_and_renews_live() {
    let (https, http) = (free_port(), free_port());
    let pebble = Pebble::start(http, https).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http_s = http.to_string();
    let vars = [
        ("HTTP_PORT", http_s.as_str()),
        ("ACME_CHALLENGE", "http-01"),
    ];

    let d = Daemon::start_config(&data, acme_config(&data, &pebble, https, &vars))
        .await
        .expect("daemon starts");
    let addr = d.running.https_addr;
    let first = wait_for_acme(addr, &pebble).await;
    let roots = [pebble.issuing_root().await];
    let p = ping(addr, &roots).await;
    assert_eq!(p["tls"], "acme");
    assert!(p["cert_expires"].is_string());
    let account = std::fs::metadata(data.join("acme/account.json")).expect("account kept");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&account.permissions()) & 0o777,
        0o600
    );
    d.stop().await;

    // A restart serves the saved certificate without a new order. Then a
    // renewal margin that makes it due a few seconds later forces renewal.
    let info = invigil::tls::CertInfo::from_der(&first, "first").unwrap();
    let left = info.not_after.duration_since(SystemTime::now()).unwrap();
    let mut config = acme_config(&data, &pebble, https, &vars);
    config.acme_renew_before = left.saturating_sub(Duration::from_secs(6));
    let d = Daemon::start_config(&data, config)
        .await
        .expect("daemon restarts");
    let addr = d.running.https_addr;
    let mut before = handshake(addr, DOMAIN, &roots).await.expect("handshake");
    assert_eq!(
        serial(&leaf(&before)),
        serial(&first),
        "restart re-used the saved certificate"
    );
    assert_eq!(get(&mut before, DOMAIN, "/ping").await.0, 200);

    let first_serial = serial(&first);
    eventually(
        "a renewed certificate is served",
        Duration::from_secs(90),
        || async { serial(&served(addr, DOMAIN, &roots).await) != first_serial },
    )
    .await;
    // The connection opened before the renewal carries on.
    let (status, _) = get(&mut before, DOMAIN, "/ping").await;
    assert_eq!(status, 200);
    assert_eq!(serial(&leaf(&before)), first_serial);
    let saved = std::fs::read_to_string(data.join("tls/acme.crt")).unwrap();
    let saved = invigil::tls::files::parse_certs("saved", &saved)
        .unwrap()
        .remove(0);
    assert_ne!(serial(&saved), first_serial, "the renewal is persisted");
    d.stop().await;
}

#[tokio::test]
async fn acme_tls_alpn01_issues_on_the_https_port() {
    let (https, unused_http) = (free_port(), free_port());
    let pebble = Pebble::start(unused_http, https).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let vars = [("HTTP_PORT", "off")];
    let d = Daemon::start_config(&data, acme_config(&data, &pebble, https, &vars))
        .await
        .expect("daemon starts");
    let addr = d.running.https_addr;
    let cert = wait_for_acme(addr, &pebble).await;
    let info = invigil::tls::CertInfo::from_der(&cert, "acme").unwrap();
    assert!(info.covers(DOMAIN), "{:?}", info.names);
    d.stop().await;
}

#[tokio::test]
async fn acme_failure_is_counted_and_the_self_signed_certificate_stays() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Nothing listens there: every attempt fails.
    let directory = format!("https://127.0.0.1:{}/dir", free_port());
    let mut config = config(
        &data,
        &[
            ("DOMAIN_NAME", DOMAIN),
            ("ACME_DIRECTORY", &directory),
            ("HTTP_PORT", "off"),
        ],
    );
    config.acme_retry_after = Duration::from_millis(200);
    let d = Daemon::start_config(&data, config)
        .await
        .expect("daemon starts");
    let failures = "invigil_tls_certificate_updates_total{source=\"acme\",result=\"failure\"} ";
    eventually(
        "two failed attempts counted",
        Duration::from_secs(10),
        || async {
            let text = d
                .client
                .get(d.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(failures))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|n| n >= 2)
        },
    )
    .await;
    // Still served: the self-signed certificate the harness client trusts.
    let p: serde_json::Value = d
        .client
        .get(d.url("/ping"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["tls"], "acme");
    d.stop().await;
}
