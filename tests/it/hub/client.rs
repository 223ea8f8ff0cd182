//! Test clients for the live hub: REST set-up (users, template, sessions)
//! and real WebSocket clients over TLS that trust the daemon's certificate.

use crate::harness::{Daemon, self_signed_pem};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub const PW: &str = "Manager pass 123";
const WAIT: Duration = Duration::from_secs(10);

/// REST calls as in the sessions tests.
pub struct Rest {
    http: reqwest::Client,
    pub base: String,
}

impl Rest {
    pub fn new(d: &Daemon) -> Rest {
        let root = reqwest::Certificate::from_pem(&self_signed_pem(&d.data_dir)).unwrap();
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .resolve("localhost", d.running.https_addr)
            .http1_only()
            .build()
            .unwrap();
        Rest {
            http,
            base: format!("https://localhost:{}", d.running.https_addr.port()),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("origin", &self.base);
        if !cookie.is_empty() {
            req = req.header("cookie", format!("__Host-invigil={cookie}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{username}");
        r.headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("__Host-invigil="))
            .map(|v| v.split(';').next().unwrap().to_string())
            .unwrap()
    }

    /// A user made by the manager, first password already changed.
    pub async fn user(&self, manager: &str, username: &str, role: &str, groups: &[&str]) -> String {
        let body = json!({ "username": username, "role": role, "password": "Temporary pass 1", "groups": groups });
        assert_eq!(
            self.call(Method::POST, "/api/v1/users", manager, Some(body))
                .await
                .0,
            201
        );
        let first = self.login(username, "Temporary pass 1").await;
        let change = json!({ "old": "Temporary pass 1", "new": "Chosen pass 123" });
        let (s, _) = self
            .call(Method::POST, "/api/v1/auth/password", &first, Some(change))
            .await;
        assert_eq!(s, 200);
        self.login(username, "Chosen pass 123").await
    }

    pub async fn template(&self, cookie: &str, id: &str, period_secs: u32) {
        let t = json!({ "id": id, "name": id, "weights": { "b2": 0.5, "n1": 1.0 }, "threshold": 50, "period_secs": period_secs });
        assert_eq!(
            self.call(Method::POST, "/api/v1/templates", cookie, Some(t))
                .await
                .0,
            201
        );
    }

    /// Creates a session and returns (host_id, id).
    pub async fn session(
        &self,
        cookie: &str,
        student: &str,
        template: &str,
        proctors: &[&str],
    ) -> (String, String) {
        let new = json!({ "student": student, "template": template, "proctors": proctors, "proctor_group": "room-7" });
        let (s, body) = self
            .call(Method::POST, "/api/v1/sessions", cookie, Some(new))
            .await;
        assert_eq!(s, 201, "{body}");
        (
            body["host_id"].as_str().unwrap().into(),
            body["id"].as_str().unwrap().into(),
        )
    }

    pub async fn start(&self, student: &str, id: &str) {
        let (s, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/sessions/{id}/start"),
                student,
                None,
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
}

/// How a test opens a socket.
pub struct Open<'a> {
    pub cookie: &'a str,
    pub origin: Option<String>,
    pub host: Option<&'a str>,
    /// A tiny receive buffer, so a client that stops reading backs up fast.
    pub small_buffer: bool,
}

impl<'a> Open<'a> {
    pub fn new(d: &Daemon, cookie: &'a str) -> Open<'a> {
        Open {
            cookie,
            origin: Some(format!("https://localhost:{}", d.running.https_addr.port())),
            host: None,
            small_buffer: false,
        }
    }
}

/// A WebSocket client of the hub.
pub struct Peer {
    pub ws: WebSocketStream<TlsStream<TcpStream>>,
}

pub async fn connect(d: &Daemon, o: Open<'_>) -> Result<Peer, WsError> {
    let addr = d.running.https_addr;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&self_signed_pem(&d.data_dir)) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let socket = TcpSocket::new_v4().unwrap();
    if o.small_buffer {
        socket.set_recv_buffer_size(4096).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{}/api/v1/ws", addr.port())
        .into_client_request()
        .unwrap();
    let h = request.headers_mut();
    h.insert(
        "cookie",
        format!("__Host-invigil={}", o.cookie).parse().unwrap(),
    );
    if let Some(origin) = o.origin {
        h.insert("origin", origin.parse().unwrap());
    }
    if let Some(host) = o.host {
        h.insert("host", host.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::client_async(request, tls).await?;
    let mut peer = Peer { ws };
    assert_eq!(peer.next().await["type"], "hello");
    Ok(peer)
}

/// The HTTP status of a refused handshake.
pub fn refused_status(e: &WsError) -> u16 {
    match e {
        WsError::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

impl Peer {
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    /// The next frame as JSON (panics on close or after a long wait).
    pub async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
                .expect("a readable frame");
            if let Message::Text(t) = m {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    /// Frames up to and including the first that matches.
    pub async fn until(&mut self, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let v = self.next().await;
            let done = matches(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
    }

    /// The first frame of a type (others skipped).
    pub async fn expect(&mut self, kind: &str) -> Value {
        self.until(|v| v["type"] == kind).await.pop().unwrap()
    }

    pub async fn join(&mut self, session: &str, after_seq: Option<u64>) -> Value {
        let mut f = json!({ "type": "join", "session": session, "ref": "j" });
        if let Some(a) = after_seq {
            f["after_seq"] = a.into();
        }
        self.send(f).await;
        let v = self.until(|v| v["ref"] == "j").await.pop().unwrap();
        assert_eq!(v["type"], "joined", "{v}");
        v
    }

    /// Sends a frame with a ref and returns the answer to it (ack or error).
    pub async fn ask(&mut self, mut f: Value) -> Value {
        f["ref"] = "q".into();
        self.send(f).await;
        self.until(|v| v["ref"] == "q").await.pop().unwrap()
    }

    /// Reads until the server closes; returns the close code (if sent) and
    /// the frames before it.
    pub async fn until_closed(&mut self) -> (Option<u16>, Vec<Value>) {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("closed in time")
            {
                Some(Ok(Message::Text(t))) => seen.push(serde_json::from_str(t.as_str()).unwrap()),
                Some(Ok(Message::Close(c))) => return (c.map(|c| u16::from(c.code)), seen),
                Some(Ok(_)) => {}
                Some(Err(_)) => return (None, seen),
                None => return (None, seen),
            }
        }
    }
}
