//! A small TURN client over UDP or a stream (TCP, TLS): what `invigil
//! turn-check` and the tests use to talk to a TURN server (ours or another).

use super::TurnError;
use super::link::{Link, Stream};
use super::message::{self as msg, Integrity};
use std::net::SocketAddr;
use std::time::Duration;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_REFRESH, METHOD_SEND,
    Message, MessageType, Method,
};
use tokio::net::UdpSocket;

/// What arrived from a peer through the relay.
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    Channel(u16, Vec<u8>),
    Data(SocketAddr, Vec<u8>),
}

/// One client 5-tuple with long-term credentials.
pub struct Client {
    sock: Link,
    server: SocketAddr,
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<String>,
    /// Replies retransmitted after this long, three times.
    pub rto: Duration,
}

impl Client {
    /// A client on a fresh loopback (or unspecified) UDP port.
    pub async fn new(
        server: SocketAddr,
        username: &str,
        password: &str,
    ) -> Result<Self, TurnError> {
        let local: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| TurnError::Invalid("address".into()))?
        } else {
            "[::]:0"
                .parse()
                .map_err(|_| TurnError::Invalid("address".into()))?
        };
        let sock = UdpSocket::bind(local).await?;
        sock.connect(server).await?;
        Ok(Self::with(Link::Udp(sock), server, username, password))
    }

    /// A client over an established stream to `server` (TCP, or TLS whose
    /// handshake is done).
    pub fn over_stream(
        stream: impl Stream + 'static,
        server: SocketAddr,
        username: &str,
        password: &str,
    ) -> Self {
        Self::with(Link::stream(stream), server, username, password)
    }

    fn with(sock: Link, server: SocketAddr, username: &str, password: &str) -> Self {
        Self {
            sock,
            server,
            username: username.to_string(),
            password: password.to_string(),
            realm: None,
            nonce: None,
            rto: Duration::from_millis(500),
        }
    }

    pub fn local_addr(&self) -> Result<SocketAddr, TurnError> {
        match &self.sock {
            Link::Udp(s) => Ok(s.local_addr()?),
            Link::Stream { .. } => Err(TurnError::Invalid("a stream client".into())),
        }
    }

    /// Sends raw bytes to the server (tests use it for malformed input).
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<(), TurnError> {
        self.sock.send(bytes).await?;
        Ok(())
    }

    /// Receives one datagram from the server within `wait`.
    pub async fn recv_raw(&self, wait: Duration) -> Result<Vec<u8>, TurnError> {
        let mut buf = vec![0u8; 65_536];
        let n = tokio::time::timeout(wait, self.sock.recv(&mut buf))
            .await
            .map_err(|_| TurnError::Timeout("a datagram from the TURN server"))??;
        buf.truncate(n);
        Ok(buf)
    }

    /// Uses other credentials on the same 5-tuple from now on.
    pub fn set_credentials(&mut self, username: &str, password: &str) {
        self.username = username.to_string();
        self.password = password.to_string();
    }

    /// Replaces the nonce (tests use it to send stale or foreign ones).
    pub fn set_nonce(&mut self, nonce: Option<String>) {
        self.nonce = nonce;
    }

    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    fn build(
        &self,
        method: Method,
        tid: TransactionId,
        add: &dyn Fn(&mut Message),
    ) -> Result<Vec<u8>, TurnError> {
        let mut m = Message::new();
        m.typ = MessageType::new(method, CLASS_REQUEST);
        m.transaction_id = tid;
        m.write_header();
        add(&mut m);
        let key = match (&self.realm, &self.nonce) {
            (Some(realm), Some(nonce)) => {
                m.add(ATTR_USERNAME, self.username.as_bytes());
                m.add(ATTR_REALM, realm.as_bytes());
                m.add(ATTR_NONCE, nonce.as_bytes());
                Some(super::credentials::long_term_key(
                    &self.username,
                    realm,
                    &self.password,
                ))
            }
            _ => None,
        };
        msg::seal(&mut m, key.as_deref().map(|k| (k, Integrity::Sha1)))?;
        Ok(m.raw)
    }

    /// Sends `bytes` and waits for the response to `tid`, retransmitting.
    async fn exchange(&self, bytes: &[u8], tid: &TransactionId) -> Result<Message, TurnError> {
        for _ in 0..4 {
            self.sock.send(bytes).await?;
            let deadline = tokio::time::Instant::now() + self.rto;
            loop {
                let mut buf = vec![0u8; 65_536];
                let n = match tokio::time::timeout_at(deadline, self.sock.recv(&mut buf)).await {
                    Ok(r) => r?,
                    Err(_) => break,
                };
                let Ok(m) = msg::parse(&buf[..n]) else {
                    continue;
                };
                if m.transaction_id == *tid {
                    return Ok(m);
                }
            }
        }
        Err(TurnError::Timeout("a TURN response"))
    }

    /// A request with the long-term credential dance: the first 401 (or a
    /// 438) teaches realm and nonce, and the request is sent again.
    pub async fn request(
        &mut self,
        method: Method,
        add: &dyn Fn(&mut Message),
    ) -> Result<Message, TurnError> {
        for _ in 0..3 {
            let tid = TransactionId::new();
            let bytes = self.build(method, tid, add)?;
            let m = self.exchange(&bytes, &tid).await?;
            if m.typ.class == CLASS_SUCCESS_RESPONSE {
                return Ok(m);
            }
            if m.typ.class != CLASS_ERROR_RESPONSE {
                return Err(TurnError::Invalid("unexpected message class".into()));
            }
            let code = msg::error_code(&m).unwrap_or(0);
            let retry = (code == 401 && self.nonce.is_none()) || code == 438;
            if retry {
                self.realm = msg::text(&m, ATTR_REALM).map(str::to_string);
                self.nonce = msg::text(&m, ATTR_NONCE).map(str::to_string);
                if self.realm.is_some() && self.nonce.is_some() {
                    continue;
                }
            }
            return Err(TurnError::Refused {
                code,
                reason: msg::reason(code).to_string(),
            });
        }
        Err(TurnError::Invalid(
            "the server keeps asking for credentials".into(),
        ))
    }

    /// Allocates a UDP relay: (relayed address, mapped address, lifetime).
    pub async fn allocate(&mut self) -> Result<(SocketAddr, SocketAddr, u32), TurnError> {
        let m = self
            .request(METHOD_ALLOCATE, &|m| {
                m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            })
            .await?;
        let tid = m.transaction_id.0;
        let relayed = msg::attr(&m, ATTR_XOR_RELAYED_ADDRESS)
            .and_then(|v| msg::xor_addr(v, &tid))
            .ok_or_else(|| TurnError::Invalid("no XOR-RELAYED-ADDRESS".into()))?;
        let mapped = msg::attr(&m, ATTR_XORMAPPED_ADDRESS)
            .and_then(|v| msg::xor_addr(v, &tid))
            .ok_or_else(|| TurnError::Invalid("no XOR-MAPPED-ADDRESS".into()))?;
        Ok((relayed, mapped, lifetime(&m)))
    }

    /// Refreshes (0 deletes); returns the granted lifetime.
    pub async fn refresh(&mut self, seconds: u32) -> Result<u32, TurnError> {
        let m = self
            .request(METHOD_REFRESH, &|m| {
                m.add(ATTR_LIFETIME, &seconds.to_be_bytes())
            })
            .await?;
        Ok(lifetime(&m))
    }

    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), TurnError> {
        self.request(METHOD_CREATE_PERMISSION, &|m| {
            let _ = msg::add_xor_addr(m, ATTR_XOR_PEER_ADDRESS, peer);
        })
        .await
        .map(|_| ())
    }

    pub async fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), TurnError> {
        self.request(METHOD_CHANNEL_BIND, &|m| {
            m.add(
                ATTR_CHANNEL_NUMBER,
                &[(channel >> 8) as u8, channel as u8, 0, 0],
            );
            let _ = msg::add_xor_addr(m, ATTR_XOR_PEER_ADDRESS, peer);
        })
        .await
        .map(|_| ())
    }

    pub async fn send_channel(&self, channel: u16, data: &[u8]) -> Result<(), TurnError> {
        let mut out = Vec::with_capacity(4 + data.len() + 3);
        out.extend_from_slice(&msg::channel_header(channel, data.len()));
        out.extend_from_slice(data);
        if self.sock.is_stream() {
            // Streams pad ChannelData to 4 bytes (RFC 8656 §12.5).
            out.resize(out.len().div_ceil(4) * 4, 0);
        }
        self.sock.send(&out).await?;
        Ok(())
    }

    pub async fn send_indication(&self, peer: SocketAddr, data: &[u8]) -> Result<(), TurnError> {
        let mut m = Message::new();
        m.typ = MessageType::new(METHOD_SEND, CLASS_INDICATION);
        m.transaction_id = TransactionId::new();
        m.write_header();
        msg::add_xor_addr(&mut m, ATTR_XOR_PEER_ADDRESS, peer)?;
        m.add(ATTR_DATA, data);
        msg::seal(&mut m, None)?;
        self.sock.send(&m.raw).await?;
        Ok(())
    }

    /// The next relayed packet within `wait`; other messages are skipped.
    pub async fn recv_relayed(&self, wait: Duration) -> Result<Relayed, TurnError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = tokio::time::timeout_at(deadline, self.sock.recv(&mut buf))
                .await
                .map_err(|_| TurnError::Timeout("relayed data"))??;
            let data = &buf[..n];
            if let Some((ch, payload)) = msg::channel_data(data) {
                return Ok(Relayed::Channel(ch, payload.to_vec()));
            }
            if let Ok(m) = msg::parse(data)
                && m.typ == MessageType::new(METHOD_DATA, CLASS_INDICATION)
                && let (Some(peer), Some(d)) = (
                    msg::attr(&m, ATTR_XOR_PEER_ADDRESS)
                        .and_then(|v| msg::xor_addr(v, &m.transaction_id.0)),
                    msg::attr(&m, ATTR_DATA),
                )
            {
                return Ok(Relayed::Data(peer, d.to_vec()));
            }
        }
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }
}

fn lifetime(m: &Message) -> u32 {
    msg::attr(m, ATTR_LIFETIME)
        .filter(|v| v.len() == 4)
        .map_or(0, |v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}
