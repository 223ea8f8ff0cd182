//! Reverse-proxy mode behind the shipped nginx configuration (live) and the
//! shipped Apache configuration (`apache2 -t`).
//!
//! Through nginx: health, the front page, forwarded addresses, sign-in and a
//! WebSocket round trip on the live hub.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{TestCa, eventually, free_port};
use crate::harness::Daemon;

const NGINX_CONF: &str = include_str!("../../../packaging/nginx/invigil.conf");
const APACHE_CONF: &str = include_str!("../../../packaging/apache/invigil.conf");
const NAME: &str = "exam.invigil.test";

/// Fills the `@…@` placeholders, checking that each one is there.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        let placeholder = format!("@{key}@");
        assert!(out.contains(&placeholder), "{placeholder} missing");
        out = out.replace(&placeholder, value);
    }
    assert!(!out.contains("@SERVER_NAME@") && !out.contains("@UPSTREAM@"));
    out
}

/// Replaces a line of the shipped file, checking that it is there.
fn replace_line(text: &str, line: &str, with: &str) -> String {
    assert!(
        text.contains(line),
        "{line:?} missing from the shipped file"
    );
    text.replace(line, with)
}

struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn start_nginx(upstream: SocketAddr, tls_port: u16, plain_port: u16, ca: &TestCa) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.leaf(&[NAME]);
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &leaf.cert).unwrap();
    std::fs::write(&key, &leaf.key).unwrap();
    let site = fill(
        NGINX_CONF,
        &[
            ("SERVER_NAME", NAME),
            ("CERTIFICATE", cert.to_str().unwrap()),
            ("CERTIFICATE_KEY", key.to_str().unwrap()),
            ("UPSTREAM", &upstream.to_string()),
        ],
    );
    let site = replace_line(
        &site,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{tls_port} ssl;"),
    );
    let site = replace_line(&site, "listen [::]:443 ssl;", "");
    let site = replace_line(
        &site,
        "listen 80;",
        &format!("listen 127.0.0.1:{plain_port};"),
    );
    let site = replace_line(&site, "listen [::]:80;", "");
    let run = dir.path();
    std::fs::write(run.join("site.conf"), site).unwrap();
    for t in ["b", "p", "f", "u", "s"] {
        std::fs::create_dir_all(run.join("tmp").join(t)).unwrap();
    }
    let r = run.display();
    let main = format!(
        "daemon off; worker_processes 1; pid {r}/nginx.pid; error_log {r}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log {r}/access.log; client_body_temp_path {r}/tmp/b; proxy_temp_path {r}/tmp/p;\n\
         fastcgi_temp_path {r}/tmp/f; uwsgi_temp_path {r}/tmp/u; scgi_temp_path {r}/tmp/s;\n\
         include {r}/site.conf; }}\n"
    );
    std::fs::write(run.join("nginx.conf"), main).unwrap();
    let conf = run.join("nginx.conf");
    let prefix = format!("{r}/");
    let check = Command::new("nginx")
        .args(["-p", &prefix, "-e", &format!("{r}/error.log"), "-t", "-c"])
        .arg(&conf)
        .output()
        .expect("nginx (tests/run installs the Debian package nginx)");
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("nginx")
        .args(["-p", &prefix, "-e", &format!("{r}/error.log"), "-c"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    Nginx { child, dir }
}

/// A client that trusts `ca`, reaches NAME at `addr` and connects from `from`.
fn client_from(ca: &TestCa, addr: SocketAddr, from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .resolve(NAME, addr)
        .local_address(from)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn client_view(r: reqwest::Response) -> (String, String) {
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    (
        v["address"].as_str().unwrap().to_string(),
        v["scheme"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn reverse_proxy_mode_behind_nginx() {
    let data = tempfile::tempdir().unwrap();
    let (tls_port, plain_port) = (free_port(), free_port());
    // Behind the proxy the manager signs in on the name and port the browser uses.
    let manager_host = format!("{NAME}:{tls_port}");
    let d = Daemon::start_in(
        data.path(),
        &[
            ("REVERSE_PROXY", "on"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("DOMAIN_NAME", NAME),
            ("MANAGER_HOST", &manager_host),
            ("MANAGER_PASSWORD", "Manager pass 123"),
        ],
        axum::Router::new(),
    )
    .await
    .expect("daemon starts");
    let upstream = d.running.https_addr;
    assert!(
        upstream.ip().is_loopback(),
        "plain HTTP only on loopback by default"
    );
    assert!(
        d.running.http_addr.is_none(),
        "no redirect listener behind a proxy"
    );
    let ca = TestCa::new("nginx test CA");
    let nginx = start_nginx(upstream, tls_port, plain_port, &ca);
    let front: SocketAddr = ([127, 0, 0, 1], tls_port).into();
    let via = client_from(&ca, front, [127, 0, 0, 2].into());
    let url = |path: &str| format!("https://{NAME}:{tls_port}{path}");
    eventually("nginx answers", Duration::from_secs(10), || async {
        via.get(url("/ping")).send().await.is_ok()
    })
    .await;

    let ping = via.get(url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), 200, "{}", nginx.error_log());
    let ping: serde_json::Value = ping.json().await.unwrap();
    assert_eq!(ping["tls"], "proxy");
    assert!(ping["cert_expires"].is_null());
    let page = via.get(url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
    // A Range request passes through nginx and gets 206 with Content-Range.
    let part = via
        .get(url("/style.css"))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    let content_range = part.headers()["content-range"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_range.starts_with("bytes 0-9/"), "{content_range}");
    assert_eq!(part.bytes().await.unwrap().len(), 10);

    // Through nginx invigil sees the real client and scheme, and a forged
    // X-Forwarded-For from the client does not get through.
    let seen = via
        .get(url("/api/v1/client"))
        .header("X-Forwarded-For", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        client_view(seen).await,
        ("127.0.0.2".to_string(), "https".to_string())
    );
    // nginx's port 80 redirects to HTTPS.
    let plain = via
        .get(format!("http://{NAME}:{plain_port}/x?y=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 301);
    assert_eq!(plain.headers()["location"], format!("https://{NAME}/x?y=1"));

    // Directly at invigil: the forwarded address counts only from a trusted
    // peer. From 127.0.0.1 (trusted) it is believed, and /metrics refuses
    // the non-loopback client it names; from 127.0.0.3 (untrusted) it is
    // ignored and the loopback peer may read /metrics.
    let direct = |from: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(IpAddr::from(from))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let plain_url = |path: &str| format!("http://{upstream}{path}");
    for (from, expect_addr, metrics_status) in [
        ([127, 0, 0, 1], "203.0.113.9", 403),
        ([127, 0, 0, 3], "127.0.0.3", 200),
    ] {
        let c = direct(from);
        let seen = c
            .get(plain_url("/api/v1/client"))
            .header("X-Forwarded-For", "203.0.113.9")
            .header("X-Forwarded-Proto", "https")
            .send()
            .await
            .unwrap();
        let (addr, scheme) = client_view(seen).await;
        assert_eq!(addr, expect_addr);
        assert_eq!(
            scheme,
            if from == [127, 0, 0, 1] {
                "https"
            } else {
                "http"
            }
        );
        let metrics = c
            .get(plain_url("/metrics"))
            .header("X-Forwarded-For", "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), metrics_status, "from {from:?}");
    }
    signs_in_and_talks_websocket_through(&ca, front, tls_port).await;
    drop(nginx);
    d.stop().await;
}

/// Signs the manager in through nginx and does a WebSocket round trip on the
/// hub through it: the cookie, `Origin` and `Upgrade` all survive the proxy.
async fn signs_in_and_talks_websocket_through(ca: &TestCa, front: SocketAddr, port: u16) {
    use futures::SinkExt;
    use rustls_pki_types::pem::PemObject;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let origin = format!("https://{NAME}:{port}");
    let via = client_from(ca, front, [127, 0, 0, 2].into());
    let login = via
        .post(format!("{origin}/api/v1/auth/login"))
        .header("origin", &origin)
        .json(&serde_json::json!({ "username": "manager", "password": "Manager pass 123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "sign-in through nginx");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = via
        .get(format!("{origin}/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(invigil::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(front).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(rustls_pki_types::ServerName::try_from(NAME).unwrap(), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://{NAME}:{port}/api/v1/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("upgrade through nginx");
    assert_eq!(next_text(&mut ws).await["type"], "hello");
    ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await["type"], "pong");
}

async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame");
        if let Message::Text(t) = frame.unwrap().unwrap() {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// `apache2 -t` with the modules the shipped file names accepts it, and
/// refuses it when one of them is missing (so the check is real).
#[test]
fn apache_configuration_passes_apache2_t() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let ca = TestCa::new("apache test CA");
    let leaf = ca.leaf(&[NAME]);
    std::fs::write(t.join("cert.pem"), &leaf.cert).unwrap();
    std::fs::write(t.join("key.pem"), &leaf.key).unwrap();
    let site = fill(
        APACHE_CONF,
        &[
            ("SERVER_NAME", NAME),
            ("CERTIFICATE", t.join("cert.pem").to_str().unwrap()),
            ("CERTIFICATE_KEY", t.join("key.pem").to_str().unwrap()),
            ("UPSTREAM", "127.0.0.1:8443"),
        ],
    );
    std::fs::write(t.join("site.conf"), site).unwrap();
    std::fs::create_dir_all(t.join("run")).unwrap();
    let modules: Vec<&str> = APACHE_CONF
        .lines()
        .find_map(|l| l.strip_prefix("# Modules:"))
        .expect("the file names its modules")
        .split_whitespace()
        .collect();
    assert!(modules.contains(&"proxy_http") && modules.contains(&"ssl"));
    let check = |without: Option<&str>| {
        let mut conf = format!(
            "ServerRoot \"/usr/lib/apache2\"\nDefaultRuntimeDir \"{r}/run\"\nPidFile \"{r}/run/httpd.pid\"\n\
             ErrorLog \"{r}/error.log\"\nServerName localhost\nListen 127.0.0.1:{p}\n",
            r = t.display(),
            p = free_port()
        );
        for m in ["mpm_event", "authz_core"].iter().chain(modules.iter()) {
            if Some(*m) != without {
                conf.push_str(&format!("LoadModule {m}_module modules/mod_{m}.so\n"));
            }
        }
        conf.push_str(&format!("Include \"{}/site.conf\"\n", t.display()));
        let path = t.join("test.conf");
        std::fs::write(&path, conf).unwrap();
        Command::new("apache2")
            .arg("-t")
            .arg("-f")
            .arg(&path)
            .env("APACHE_RUN_DIR", t.join("run"))
            .output()
            .expect("apache2 (tests/run installs the Debian package apache2)")
    };
    let ok = check(None);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(
        ok.status.success() && stderr.contains("Syntax OK"),
        "{stderr}"
    );
    let broken = check(Some("headers"));
    assert!(
        !broken.status.success(),
        "without mod_headers the file must be refused"
    );
}
