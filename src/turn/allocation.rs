//! Allocations: the relayed transport address of one client 5-tuple, with its
//! lifetime, permissions and channels, and the table of all of them.

use super::quota::Bucket;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

/// Identifies a client 5-tuple: its UDP source address on our listener, or
/// one stream connection (TCP or TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Udp(SocketAddr),
    Stream(u64),
}

/// A stream's write half, shared by its reader (answers) and the relay task
/// (data from peers).
pub type StreamWriter = Arc<tokio::sync::Mutex<Pin<Box<dyn AsyncWrite + Send>>>>;

/// Where packets for the client go.
#[derive(Clone)]
pub enum Sink {
    Udp {
        socket: Arc<UdpSocket>,
        client: SocketAddr,
    },
    Stream(StreamWriter),
}

impl Sink {
    /// Sends one whole message (a datagram, or a framed message on a stream).
    pub async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Udp { socket, client } => socket.send_to(bytes, *client).await.map(|_| ()),
            Sink::Stream(w) => {
                let mut w = w.lock().await;
                w.write_all(bytes).await?;
                w.flush().await
            }
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(self, Sink::Stream(_))
    }
}

/// A channel binding.
#[derive(Debug, Clone, Copy)]
pub struct Channel {
    pub peer: SocketAddr,
    pub expires: Instant,
}

/// The mutable part of an allocation.
#[derive(Debug)]
pub struct State {
    pub expires: Instant,
    pub permissions: HashMap<IpAddr, Instant>,
    pub channels: HashMap<u16, Channel>,
    pub peer_channels: HashMap<SocketAddr, u16>,
    pub bucket: Bucket,
}

impl State {
    pub fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|e| *e > now)
    }

    /// The peer of a live channel whose peer still has a permission.
    pub fn channel_peer(&self, channel: u16, now: Instant) -> Option<SocketAddr> {
        let c = self.channels.get(&channel)?;
        (c.expires > now && self.permitted(c.peer.ip(), now)).then_some(c.peer)
    }

    /// The live channel bound to `peer`.
    pub fn channel_of(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let ch = *self.peer_channels.get(&peer)?;
        self.channels
            .get(&ch)
            .is_some_and(|c| c.expires > now)
            .then_some(ch)
    }

    /// Drops expired permissions and channels.
    pub fn sweep(&mut self, now: Instant) {
        self.permissions.retain(|_, e| *e > now);
        self.channels.retain(|_, c| c.expires > now);
        let channels = &self.channels;
        self.peer_channels.retain(|_, ch| channels.contains_key(ch));
    }
}

/// One allocation.
pub struct Allocation {
    pub key: ClientKey,
    pub client: SocketAddr,
    pub username: String,
    /// Transaction of the Allocate request, so a retransmission gets the same
    /// answer instead of 437.
    pub transaction: [u8; 12],
    pub relay: Arc<UdpSocket>,
    /// Address the relay socket is bound to.
    pub relay_local: SocketAddr,
    /// Address told to the client (differs behind a 1:1 NAT).
    pub relay_public: SocketAddr,
    pub sink: Sink,
    pub state: Mutex<State>,
    task: Mutex<Option<AbortHandle>>,
}

impl Allocation {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: ClientKey,
        client: SocketAddr,
        username: String,
        transaction: [u8; 12],
        relay: Arc<UdpSocket>,
        relay_local: SocketAddr,
        relay_public: SocketAddr,
        sink: Sink,
        expires: Instant,
        bps: u64,
    ) -> Self {
        Self {
            key,
            client,
            username,
            transaction,
            relay,
            relay_local,
            relay_public,
            sink,
            state: Mutex::new(State {
                expires,
                permissions: HashMap::new(),
                channels: HashMap::new(),
                peer_channels: HashMap::new(),
                bucket: Bucket::new(bps),
            }),
            task: Mutex::new(None),
        }
    }

    /// Locks the state; a poisoned lock (a panic elsewhere) is taken over,
    /// since the state stays consistent between single assignments.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_task(&self, handle: AbortHandle) {
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    fn stop(&self) {
        if let Some(h) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.abort();
        }
    }
}

/// Every allocation, by client 5-tuple, plus the set of relayed addresses
/// (which the policy lets peers reach).
#[derive(Default)]
pub struct Table {
    by_key: RwLock<HashMap<ClientKey, Arc<Allocation>>>,
    relays: RwLock<HashSet<SocketAddr>>,
    next_stream: AtomicU64,
}

impl Table {
    pub fn get(&self, key: &ClientKey) -> Option<Arc<Allocation>> {
        self.by_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub fn is_relay(&self, addr: SocketAddr) -> bool {
        self.relays
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&addr)
    }

    pub fn next_stream_id(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts of allocations in total, of `username` and from `ip`.
    pub fn counts(&self, username: &str, ip: IpAddr) -> (usize, usize, usize) {
        let map = self.by_key.read().unwrap_or_else(|p| p.into_inner());
        let user = map.values().filter(|a| a.username == username).count();
        let from = map.values().filter(|a| a.client.ip() == ip).count();
        (map.len(), user, from)
    }

    pub fn insert(&self, a: Arc<Allocation>) {
        {
            let mut relays = self.relays.write().unwrap_or_else(|p| p.into_inner());
            relays.insert(a.relay_local);
            relays.insert(a.relay_public);
        }
        self.by_key
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(a.key, a);
    }

    /// Removes an allocation and stops its relay task; true if it existed.
    pub fn remove(&self, key: &ClientKey) -> bool {
        let removed = self
            .by_key
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        let Some(a) = removed else {
            return false;
        };
        {
            let mut relays = self.relays.write().unwrap_or_else(|p| p.into_inner());
            relays.remove(&a.relay_local);
            relays.remove(&a.relay_public);
        }
        a.stop();
        true
    }

    /// Removes expired allocations (returned) and prunes the rest.
    pub fn sweep(&self, now: Instant) -> Vec<Arc<Allocation>> {
        let all: Vec<Arc<Allocation>> = self
            .by_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut expired = Vec::new();
        for a in all {
            let mut st = a.lock();
            if st.expires <= now {
                drop(st);
                if self.remove(&a.key) {
                    expired.push(a);
                }
            } else {
                st.sweep(now);
            }
        }
        expired
    }

    pub fn len(&self) -> usize {
        self.by_key.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every relay task (shutdown).
    pub fn clear(&self) {
        let keys: Vec<ClientKey> = self
            .by_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        for k in keys {
            self.remove(&k);
        }
    }
}
