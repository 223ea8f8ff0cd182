//! The embedded TURN relay (RFC 8656) with STUN (RFC 8489): listeners on UDP
//! and TCP, TURN over TLS handed over by the HTTPS port, long-term and
//! short-lived (REST) credentials, a relay policy that keeps the relay away
//! from internal networks, quotas and counters.
//!
//! No HTTP types here: the web layer hands connections in through
//! [`server::TurnServer::serve_stream`].

pub mod allocation;
pub mod bench;
pub mod check;
pub mod client;
pub mod credentials;
mod handler;
#[cfg(test)]
mod hot_path;
pub mod indication;
pub mod link;
pub mod message;
pub mod policy;
pub mod quota;
pub mod server;

use crate::config::{Config, IpNet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Everything that can go wrong in the TURN module.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("malformed STUN message: {0}")]
    Malformed(String),
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Stun(String),
    #[error("TURN server answered {code} {reason}")]
    Refused { code: u16, reason: String },
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Bench(String),
}

impl From<stun::Error> for TurnError {
    fn from(e: stun::Error) -> Self {
        TurnError::Stun(e.to_string())
    }
}

/// Lifetimes and expiries; configurable so that tests need not wait minutes.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub permission: Duration,
    pub channel: Duration,
    pub nonce: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission: Duration::from_secs(300),
            channel: Duration::from_secs(600),
            nonce: Duration::from_secs(600),
        }
    }
}

/// The relay's settings, derived from [`Config`] plus the credential secret.
#[derive(Debug, Clone)]
pub struct Settings {
    pub realm: String,
    /// Address the UDP and TCP listeners bind (port 0 picks a free one).
    pub listen: std::net::SocketAddr,
    /// Address relay sockets bind (the private side of `TURN_EXTERNAL_IP`).
    pub relay_ip: IpAddr,
    /// Address told to clients as their relayed address.
    pub advertised_ip: IpAddr,
    pub min_port: u16,
    pub max_port: u16,
    pub static_user: Option<(String, String)>,
    pub secret: Vec<u8>,
    pub allowed_peers: Vec<IpNet>,
    pub timings: Timings,
    pub quotas: quota::Quotas,
}

impl Settings {
    /// Settings from the configuration; `secret` is `TURN_AUTH_SECRET` or
    /// the generated one.
    pub fn from_config(config: &Config, secret: Vec<u8>) -> Settings {
        let (relay_ip, advertised_ip) = match config.turn_external_ip {
            Some((public, Some(private))) => (private, public),
            Some((public, None)) => (config.host, public),
            None => (config.host, advertise_for(config.host)),
        };
        Settings {
            realm: config
                .domain_name
                .clone()
                .unwrap_or_else(|| "invigil".to_string()),
            listen: std::net::SocketAddr::new(config.host, config.turn_port),
            relay_ip,
            advertised_ip,
            min_port: config.turn_min_port,
            max_port: config.turn_max_port,
            static_user: config
                .turn_user
                .as_ref()
                .map(|(u, p)| (u.clone(), p.expose().to_string())),
            secret,
            allowed_peers: config.turn_allowed_peers.clone(),
            timings: Timings::default(),
            quotas: quota::Quotas {
                allocations_per_user: usize::try_from(config.turn_max_allocations_per_user)
                    .unwrap_or(usize::MAX),
                allocations_per_ip: usize::try_from(config.turn_max_allocations_per_ip)
                    .unwrap_or(usize::MAX),
                allocation_bps: config.turn_bps_per_allocation,
                total_bps: config.turn_total_bps,
                ..quota::Quotas::default()
            },
        }
    }
}

/// The address to advertise when listening on every interface: the source
/// address of the default route. Connecting a UDP socket sends no packet.
fn advertise_for(host: IpAddr) -> IpAddr {
    if !host.is_unspecified() {
        return host;
    }
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
        Ok(s.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}
