//! The sockets: the UDP listener, the TCP listener, streams handed over by
//! the HTTPS port (TURN over TLS, or plain TURN-over-TCP there), one relay
//! socket per allocation, and the sweeper that expires allocations.

use super::allocation::{Allocation, ClientKey, Sink, StreamWriter, Table};
use super::credentials::Authenticator;
use super::handler::{self, Origin};
use super::indication;
use super::message::{self as msg, Kind};
use super::policy::{Denied, PeerPolicy};
use super::quota::{Bucket, StormGuard, TurnMetrics};
use super::{Settings, TurnError};
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, UdpSocket};

/// Largest datagram relayed; bigger ones are truncated by the kernel and dropped.
const MAX_DATAGRAM: usize = 65_535;

/// Socket buffers for the listener and relay sockets: bursts from many
/// clients must not overflow the kernel's default (~200 kB) and be lost.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Enlarges a UDP socket's buffers; the kernel may cap them, which is fine.
fn tune(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        let value = SOCKET_BUFFER;
        // SAFETY: a valid fd and a correctly sized int option value.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// State shared by every listener and relay task.
pub struct Shared {
    pub settings: Settings,
    pub auth: Authenticator,
    pub policy: PeerPolicy,
    pub table: Table,
    pub metrics: Arc<TurnMetrics>,
    pub storms: StormGuard,
    total: Mutex<Bucket>,
    next_port: AtomicU32,
}

impl Shared {
    /// The relay policy for one peer address (own relay addresses pass).
    pub fn permits(&self, peer: SocketAddr) -> Result<(), Denied> {
        let r = self.policy.check(peer, |a| self.table.is_relay(a));
        if r.is_err() {
            TurnMetrics::add(&self.metrics.policy_denials, 1);
        }
        r
    }

    /// The one place packets leave towards peers: the policy is checked for
    /// every packet, so no path can send to a denied address.
    pub async fn send_to_peer(&self, a: &Allocation, peer: SocketAddr, data: &[u8]) {
        if self.permits(peer).is_err() {
            return;
        }
        if !self.charge(a, data.len()) {
            return;
        }
        if a.relay.send_to(data, peer).await.is_ok() {
            TurnMetrics::add(&self.metrics.bytes_to_peers, data.len() as u64);
            TurnMetrics::add(&self.metrics.packets_to_peers, 1);
        }
    }

    /// Takes `n` bytes from the allocation's and the server's buckets.
    fn charge(&self, a: &Allocation, n: usize) -> bool {
        let now = Instant::now();
        let q = self.settings.quotas;
        let ok = (q.allocation_bps == 0 || a.lock().bucket.take(n, now))
            && (q.total_bps == 0
                || self
                    .total
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(n, now));
        if !ok {
            TurnMetrics::add(&self.metrics.quota_denials, 1);
        }
        ok
    }

    pub fn remove(&self, key: &ClientKey) {
        if self.table.remove(key) {
            self.metrics
                .allocations_active
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Binds a relay socket on a free port of the range.
    pub async fn bind_relay(&self, even: bool) -> Option<(UdpSocket, SocketAddr)> {
        let (lo, hi) = (
            u32::from(self.settings.min_port),
            u32::from(self.settings.max_port),
        );
        let span = hi - lo + 1;
        for _ in 0..span.min(256) {
            let mut port = lo + self.next_port.fetch_add(1, Ordering::Relaxed) % span;
            if even && port % 2 == 1 {
                port = if port < hi { port + 1 } else { lo + (lo % 2) };
            }
            let at = SocketAddr::new(self.settings.relay_ip, port as u16);
            if let Ok(s) = UdpSocket::bind(at).await
                && let Ok(local) = s.local_addr()
            {
                tune(&s);
                return Some((s, local));
            }
        }
        None
    }
}

/// A bound TURN server; cheap to clone.
#[derive(Clone)]
pub struct TurnServer {
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
    tcp: Arc<TcpListener>,
}

impl TurnServer {
    /// Binds UDP and TCP on the same port. With port 0 the UDP port is picked
    /// first and TCP follows it, retrying if another program holds it.
    pub async fn bind(settings: Settings) -> Result<TurnServer, TurnError> {
        let mut last = None;
        for _ in 0..8 {
            let udp = UdpSocket::bind(settings.listen)
                .await
                .map_err(|source| TurnError::Bind {
                    what: "UDP",
                    addr: settings.listen,
                    source,
                })?;
            let at = udp.local_addr()?;
            match TcpListener::bind(at).await {
                Ok(tcp) => return Ok(Self::new(settings, udp, tcp)),
                Err(e) if settings.listen.port() == 0 => last = Some((at, e)),
                Err(source) => {
                    return Err(TurnError::Bind {
                        what: "TCP",
                        addr: at,
                        source,
                    });
                }
            }
        }
        let (addr, source) = last.ok_or(TurnError::Timeout("a free port"))?;
        Err(TurnError::Bind {
            what: "TCP",
            addr,
            source,
        })
    }

    fn new(settings: Settings, udp: UdpSocket, tcp: TcpListener) -> Self {
        tune(&udp);
        let auth = Authenticator::new(
            &settings.realm,
            settings.static_user.clone(),
            settings.secret.clone(),
            settings.timings.nonce,
        );
        let start = rand::random::<u32>();
        let shared = Arc::new(Shared {
            policy: PeerPolicy::new(settings.allowed_peers.clone()),
            total: Mutex::new(Bucket::new(settings.quotas.total_bps)),
            settings,
            auth,
            table: Table::default(),
            metrics: Arc::new(TurnMetrics::default()),
            storms: StormGuard::default(),
            next_port: AtomicU32::new(start),
        });
        TurnServer {
            shared,
            udp: Arc::new(udp),
            tcp: Arc::new(tcp),
        }
    }

    /// The address UDP and TCP listen on (same port).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp.local_addr().unwrap_or(self.shared.settings.listen)
    }

    pub fn metrics(&self) -> Arc<TurnMetrics> {
        self.shared.metrics.clone()
    }

    pub fn allocations(&self) -> usize {
        self.shared.table.len()
    }

    /// Serves UDP until `shutdown`.
    pub async fn serve_udp(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = tokio::select! {
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    // ICMP errors from earlier sends surface here; keep going.
                    Err(_) => continue,
                },
                () = &mut shutdown => break,
            };
            let key = ClientKey::Udp(from);
            let data = &buf[..n];
            match msg::frame(data, false) {
                Ok(Some((Kind::ChannelData, _))) => {
                    if let Some(a) = self.shared.table.get(&key) {
                        channel_data(&self.shared, &a, data).await;
                    }
                }
                Ok(Some((Kind::Stun, _))) => {
                    let sink = Sink::Udp {
                        socket: self.udp.clone(),
                        client: from,
                    };
                    let origin = Origin {
                        key,
                        client: from,
                        sink: &sink,
                    };
                    if let Some(reply) = handler::handle(&self.shared, data, &origin).await {
                        let _ = self.udp.send_to(&reply, from).await;
                    }
                }
                _ => TurnMetrics::add(&self.shared.metrics.dropped, 1),
            }
        }
        self.shared.table.clear();
    }

    /// Accepts TCP connections until `shutdown`.
    pub async fn serve_tcp(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                r = self.tcp.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("TURN accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(self.clone().serve_stream(tcp, peer));
        }
    }

    /// Expires allocations until `shutdown`.
    pub async fn sweep(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let every = self
            .shared
            .settings
            .timings
            .permission
            .min(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = &mut shutdown => break,
            }
            for a in self.shared.table.sweep(Instant::now()) {
                self.shared
                    .metrics
                    .allocations_active
                    .fetch_sub(1, Ordering::Relaxed);
                tracing::debug!(relay = %a.relay_public, "allocation expired");
            }
        }
    }

    /// Serves one stream connection (TCP, or TLS from the HTTPS port): STUN
    /// and ChannelData framed back to back (RFC 8656 §12.5). `first` holds
    /// bytes already read from the stream by whoever handed it over.
    pub async fn serve_stream<S>(self, stream: S, client: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.serve_stream_with(stream, client, &[]).await;
    }

    pub async fn serve_stream_with<S>(self, stream: S, client: SocketAddr, first: &[u8])
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, wr) = tokio::io::split(stream);
        let writer: StreamWriter = Arc::new(tokio::sync::Mutex::new(Box::pin(wr)));
        let sink = Sink::Stream(writer);
        let key = ClientKey::Stream(self.shared.table.next_stream_id());
        let mut buf = BytesMut::with_capacity(8192);
        buf.extend_from_slice(first);
        let idle = Duration::from_secs(30);
        'conn: loop {
            loop {
                let frame = match msg::frame(&buf, true) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    // Not TURN: close the connection.
                    Err(_) => break 'conn,
                };
                let (kind, len) = frame;
                let data = &buf[..len];
                match kind {
                    Kind::ChannelData => {
                        if let Some(a) = self.shared.table.get(&key) {
                            channel_data(&self.shared, &a, data).await;
                        }
                    }
                    Kind::Stun => {
                        let origin = Origin {
                            key,
                            client,
                            sink: &sink,
                        };
                        if let Some(reply) = handler::handle(&self.shared, data, &origin).await
                            && sink.send(&reply).await.is_err()
                        {
                            break 'conn;
                        }
                    }
                }
                buf.advance(len);
            }
            match tokio::time::timeout(idle, rd.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                // Idle: keep the connection only while it holds an allocation.
                Err(_) if self.shared.table.get(&key).is_some() => {}
                Err(_) => break,
            }
        }
        self.shared.remove(&key);
    }
}

/// ChannelData from a client: to the channel's peer, without copying.
async fn channel_data(sh: &Shared, a: &Allocation, data: &[u8]) {
    let Some((channel, payload)) = msg::channel_data(data) else {
        return;
    };
    let peer = a.lock().channel_peer(channel, Instant::now());
    if let Some(peer) = peer {
        sh.send_to_peer(a, peer, payload).await;
    }
}

/// Reads the relay socket of one allocation and forwards what permitted
/// peers send: as ChannelData when a channel is bound, else as a Data
/// indication; either head is written in place in front of the payload, so
/// nothing is allocated or copied per packet.
pub async fn relay_loop(sh: Arc<Shared>, a: Arc<Allocation>) {
    let stream = a.sink.is_stream();
    // Room in front for the longest head, 3 bytes behind for padding.
    const AT: usize = indication::HEADROOM;
    let mut buf = vec![0u8; AT + MAX_DATAGRAM + 3];
    loop {
        let Ok((n, from)) = a.relay.recv_from(&mut buf[AT..AT + MAX_DATAGRAM]).await else {
            continue;
        };
        let now = Instant::now();
        let channel = {
            let st = a.lock();
            if !st.permitted(from.ip(), now) {
                continue;
            }
            st.channel_of(from, now)
        };
        if !sh.charge(&a, n) {
            continue;
        }
        let padded = AT + n.div_ceil(4) * 4;
        buf[AT + n..padded].fill(0);
        let frame = match channel {
            Some(ch) => {
                buf[AT - 4..AT].copy_from_slice(&msg::channel_header(ch, n));
                // Only streams pad ChannelData (RFC 8656 §12.5).
                &buf[AT - 4..if stream { padded } else { AT + n }]
            }
            None => {
                let start = AT - indication::data_head_len(from);
                let tid = stun::agent::TransactionId::new().0;
                if indication::write_data_head(&mut buf[start..AT], tid, from, n).is_none() {
                    continue;
                }
                &buf[start..padded]
            }
        };
        match a.sink.send(frame).await {
            Ok(()) => {
                TurnMetrics::add(&sh.metrics.bytes_to_clients, n as u64);
                TurnMetrics::add(&sh.metrics.packets_to_clients, 1);
            }
            // A closed stream ends its allocation.
            Err(_) if stream => {
                sh.remove(&a.key);
                return;
            }
            Err(_) => {}
        }
    }
}
