//! `invigil turn-check`: two allocations on a TURN server, a message relayed
//! from one to the other and back through channels, candidates and
//! round-trip times printed.

use super::TurnError;
use super::client::{Client, Relayed};
use super::credentials::{rest_password, unix_now};
use crate::config::Config;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The server and credentials to check.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
}

impl Target {
    /// From a `turn://user:pass@host:port` URI, else `TURN_URI`, else the
    /// embedded relay with `TURN_USER` or a credential minted with `secret`.
    pub fn resolve(
        config: &Config,
        uri: Option<&str>,
        secret: Option<&[u8]>,
    ) -> Result<Target, TurnError> {
        let parsed = match uri {
            Some(raw) => Some(
                crate::config::parse_multi_host(raw, &["turn"], 3478)
                    .map_err(TurnError::Invalid)?,
            ),
            None => config.turn_uri.clone(),
        };
        let rest = |secret: Option<&[u8]>| -> Result<(String, String), TurnError> {
            let secret = secret.ok_or_else(|| {
                TurnError::Invalid(
                    "no credentials: give user:pass in the URI or set TURN_USER".into(),
                )
            })?;
            let username = format!("{}:turn-check", unix_now() + 600);
            let password = rest_password(secret, &username);
            Ok((username, password))
        };
        match parsed {
            Some(u) => {
                let (host, port) = u
                    .hosts
                    .first()
                    .cloned()
                    .ok_or_else(|| TurnError::Invalid("the URI names no host".into()))?;
                let server = (host.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| TurnError::Invalid(format!("{host}: {e}")))?
                    .next()
                    .ok_or_else(|| TurnError::Invalid(format!("{host} has no address")))?;
                let (username, password) = match u.credentials.as_ref().and_then(|c| {
                    c.expose()
                        .split_once(':')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                }) {
                    Some(pair) => pair,
                    None => rest(secret)?,
                };
                Ok(Target {
                    server,
                    username,
                    password,
                })
            }
            None => {
                let ip = if config.host.is_unspecified() {
                    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                } else {
                    config.host
                };
                let (username, password) = match &config.turn_user {
                    Some((u, p)) => (u.clone(), p.expose().to_string()),
                    None => rest(secret)?,
                };
                Ok(Target {
                    server: SocketAddr::new(ip, config.turn_port),
                    username,
                    password,
                })
            }
        }
    }
}

/// What a check found.
#[derive(Debug, Clone)]
pub struct Report {
    pub relayed: [SocketAddr; 2],
    pub mapped: [SocketAddr; 2],
    pub rtts: Vec<Duration>,
}

const CHANNEL: u16 = 0x4000;
const ROUNDS: usize = 5;

/// Runs the check and prints what it finds to `out`.
pub async fn run(t: &Target, out: &mut dyn std::io::Write) -> Result<Report, TurnError> {
    let _ = writeln!(out, "TURN server {} as {}", t.server, t.username);
    let mut a = Client::new(t.server, &t.username, &t.password).await?;
    let mut b = Client::new(t.server, &t.username, &t.password).await?;
    let (ra, ma, life) = a.allocate().await?;
    let (rb, mb, _) = b.allocate().await?;
    for (name, r, m) in [("A", ra, ma), ("B", rb, mb)] {
        let _ = writeln!(
            out,
            "candidate {name}: relay {} {} typ relay raddr {} rport {} (lifetime {life} s)",
            r.ip(),
            r.port(),
            m.ip(),
            m.port()
        );
    }
    a.channel_bind(CHANNEL, rb).await?;
    b.channel_bind(CHANNEL, ra).await?;
    let mut rtts = Vec::new();
    for round in 0..ROUNDS {
        let payload = format!("invigil turn-check {round}");
        let start = Instant::now();
        a.send_channel(CHANNEL, payload.as_bytes()).await?;
        let got = b.recv_relayed(Duration::from_secs(2)).await?;
        let data = match got {
            Relayed::Channel(_, d) | Relayed::Data(_, d) => d,
        };
        if data != payload.as_bytes() {
            return Err(TurnError::Invalid("relayed data was altered".into()));
        }
        b.send_channel(CHANNEL, &data).await?;
        let back = a.recv_relayed(Duration::from_secs(2)).await?;
        if !matches!(&back, Relayed::Channel(_, d) | Relayed::Data(_, d) if d == payload.as_bytes())
        {
            return Err(TurnError::Invalid("echoed data was altered".into()));
        }
        rtts.push(start.elapsed());
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let min = rtts.iter().map(ms).fold(f64::INFINITY, f64::min);
    let max = rtts.iter().map(ms).fold(0.0, f64::max);
    let avg = rtts.iter().map(ms).sum::<f64>() / rtts.len() as f64;
    let _ = writeln!(
        out,
        "relayed {ROUNDS} messages A→B→A: round trip min {min:.3} ms, avg {avg:.3} ms, max {max:.3} ms"
    );
    let _ = a.refresh(0).await;
    let _ = b.refresh(0).await;
    Ok(Report {
        relayed: [ra, rb],
        mapped: [ma, mb],
        rtts,
    })
}
