//! Test clients for the live hub: REST set-up (users, template, sessions)
//! and real WebSocket clients over TLS that trust the daemon's certificate.

use crate::harness::{Daemon, self_signed_pem};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;

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

pub use crate::rest::Rest;

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
        Open::at(d.running.https_addr, cookie)
    }

    /// For a daemon listening on `addr` (one started as a separate process).
    pub fn at(addr: SocketAddr, cookie: &'a str) -> Open<'a> {
        Open {
            cookie,
            origin: Some(format!("https://localhost:{}", addr.port())),
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
    connect_to(d.running.https_addr, &d.data_dir, o).await
}

/// Connects to the daemon on `addr` whose data directory is `data_dir`.
pub async fn connect_to(addr: SocketAddr, data_dir: &Path, o: Open<'_>) -> Result<Peer, WsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&self_signed_pem(data_dir)) {
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
