//! `invigil bench turn`: coturn's `turnserver` and invigil's relay side by
//! side on loopback, each loaded by coturn's `turnutils_uclient` with the same
//! relay-to-relay load, and the ratios printed.

use super::client::Client;
use super::quota::Quotas;
use super::server::TurnServer;
use super::{Settings, Timings, TurnError};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::process::Command;

const USER: &str = "bench";
const PASS: &str = "benchpass";
const REALM: &str = "invigil.test";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub sizes: Vec<usize>,
    pub clients: Vec<usize>,
    pub messages: usize,
    pub gap_ms: u32,
    pub transports: Vec<Transport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sizes: vec![100, 1200],
            clients: vec![10, 50],
            messages: 500,
            gap_ms: 1,
            transports: vec![Transport::Udp, Transport::Tcp],
        }
    }
}

/// What one `turnutils_uclient` run measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub sent_msgs: u64,
    pub recv_msgs: u64,
    pub recv_bytes: u64,
    /// uclient's transmit time (whole seconds, at least 1).
    pub transmit_s: u64,
    pub lost_pct: f64,
    pub rtt_avg_ms: f64,
    pub rtt_max_ms: f64,
    pub cpu_s: f64,
}

impl Run {
    pub fn msgs_per_s(&self) -> f64 {
        self.recv_msgs as f64 / self.transmit_s.max(1) as f64
    }

    pub fn cpu_per_gb(&self) -> f64 {
        if self.recv_bytes == 0 {
            return f64::NAN;
        }
        self.cpu_s / (self.recv_bytes as f64 / 1e9)
    }
}

/// Parses uclient's summary lines.
pub fn parse_uclient(out: &str) -> Result<Run, TurnError> {
    let mut r = Run::default();
    let num = |s: &str| -> f64 {
        s.trim_matches(|c: char| !c.is_ascii_digit() && c != '.')
            .parse()
            .unwrap_or(0.0)
    };
    let mut seen_total = false;
    for line in out.lines() {
        if let Some(rest) = line.split("start_mclient: tot_send_msgs=").nth(1) {
            let mut parts = rest.split(", tot_recv_msgs=");
            r.sent_msgs = parts.next().map_or(0.0, num) as u64;
            r.recv_msgs = parts.next().map_or(0.0, num) as u64;
        } else if let Some(rest) = line.split("start_mclient: tot_send_bytes ~ ").nth(1) {
            r.recv_bytes = rest.split("tot_recv_bytes ~ ").nth(1).map_or(0.0, num) as u64;
        } else if let Some(rest) = line.split("Total transmit time is ").nth(1) {
            r.transmit_s = num(rest) as u64;
            seen_total = true;
        } else if let Some(rest) = line.split("Total lost packets ").nth(1) {
            r.lost_pct = rest
                .split('(')
                .nth(1)
                .and_then(|p| p.split('%').next())
                .map_or(0.0, num);
        } else if let Some(rest) = line.split("Average round trip delay ").nth(1) {
            r.rtt_avg_ms = rest.split(" ms").next().map_or(0.0, num);
            r.rtt_max_ms = rest.split("max = ").nth(1).map_or(0.0, num);
        }
    }
    if !seen_total {
        return Err(TurnError::Bench(format!(
            "turnutils_uclient did not finish:\n{}",
            out.lines().rev().take(5).collect::<Vec<_>>().join("\n")
        )));
    }
    Ok(r)
}

async fn uclient(
    port: u16,
    t: Transport,
    size: usize,
    clients: usize,
    o: &Options,
) -> Result<String, TurnError> {
    let mut cmd = Command::new("turnutils_uclient");
    if t == Transport::Tcp {
        cmd.arg("-t");
    }
    cmd.args(["-y", "-c", "-u", USER, "-w", PASS, "-p", &port.to_string()])
        .args(["-n", &o.messages.to_string(), "-l", &size.to_string()])
        .args(["-m", &clients.to_string(), "-z", &o.gap_ms.to_string()])
        .args(["-X", "-e", "127.0.0.1", "127.0.0.1"])
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| TurnError::Timeout("turnutils_uclient"))?
        .map_err(|e| {
            TurnError::Bench(format!(
                "cannot run turnutils_uclient (Debian package coturn): {e}"
            ))
        })?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// CPU seconds (user + system) of a process from /proc.
fn proc_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them.
    let Some(after) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks / if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU seconds used by this process so far.
fn self_cpu() -> f64 {
    proc_cpu(std::process::id())
}

async fn wait_ready(addr: SocketAddr) -> Result<(), TurnError> {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(mut c) = Client::new(addr, USER, PASS).await {
            c.rto = Duration::from_millis(100);
            // Any answer (a 401 is one) means the server is up.
            match c.allocate().await {
                Ok(_) => {
                    let _ = c.refresh(0).await;
                    return Ok(());
                }
                Err(TurnError::Refused { .. }) => return Ok(()),
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(TurnError::Timeout("the TURN server to answer"))
}

fn free_port() -> Result<u16, TurnError> {
    let u = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = u.local_addr()?.port();
    // TCP on the same number must be free too.
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    Ok(port)
}

/// A coturn started for the bench, killed on drop.
struct Coturn {
    child: tokio::process::Child,
    port: u16,
}

impl Coturn {
    async fn start(dir: &Path) -> Result<Coturn, TurnError> {
        let port = free_port()?;
        let log = dir.join("turn.log");
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .args(["--min-port=51000", "--max-port=51999"])
            .args(["--lt-cred-mech", "--fingerprint"])
            .arg(format!("--realm={REALM}"))
            .arg(format!("--user={USER}:{PASS}"))
            .args([
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
            ])
            .arg(format!("--log-file={}", log.display()))
            .arg("--simple-log")
            .arg(format!("--pidfile={}", dir.join("turn.pid").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TurnError::Bench(format!(
                    "cannot start turnserver (Debian package coturn): {e}"
                ))
            })?;
        let c = Coturn { child, port };
        wait_ready(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await?;
        Ok(c)
    }

    fn cpu(&self) -> f64 {
        self.child.id().map_or(0.0, proc_cpu)
    }
}

async fn start_invigil() -> Result<TurnServer, TurnError> {
    let settings = Settings {
        realm: REALM.into(),
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port()?),
        relay_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        advertised_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        min_port: 52000,
        max_port: 52999,
        static_user: Some((USER.into(), PASS.into())),
        secret: b"bench-secret-not-used-for-static-user".to_vec(),
        allowed_peers: Vec::new(),
        timings: Timings::default(),
        quotas: Quotas {
            allocations_per_user: 100_000,
            ..Quotas::default()
        },
    };
    let server = TurnServer::bind(settings).await?;
    tokio::spawn(server.clone().serve_udp(std::future::pending()));
    tokio::spawn(server.clone().serve_tcp(std::future::pending()));
    tokio::spawn(server.clone().sweep(std::future::pending()));
    wait_ready(server.local_addr()).await?;
    Ok(server)
}

/// One line of the result table.
#[derive(Debug, Clone)]
pub struct Row {
    pub transport: Transport,
    pub size: usize,
    pub clients: usize,
    pub coturn: Run,
    pub invigil: Run,
}

/// Runs the whole matrix, printing each row as it completes.
pub async fn run(o: &Options, out: &mut dyn std::io::Write) -> Result<Vec<Row>, TurnError> {
    let dir = tempfile_dir()?;
    let coturn = Coturn::start(&dir).await?;
    let ours = start_invigil().await?;
    let _ = writeln!(
        out,
        "turnutils_uclient -y relay-to-relay, {} messages per client, {} ms gap; loopback, {} CPUs",
        o.messages,
        o.gap_ms,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let _ = writeln!(
        out,
        "{:<4} {:>5} {:>4} | {:>9} {:>6} {:>7} {:>7} | {:>9} {:>6} {:>7} {:>7} | {:>6} {:>6}",
        "tr",
        "bytes",
        "cli",
        "coturn/s",
        "loss%",
        "rtt ms",
        "cpu/GB",
        "invigil/s",
        "loss%",
        "rtt ms",
        "cpu/GB",
        "thr x",
        "cpu x"
    );
    let mut rows = Vec::new();
    for &t in &o.transports {
        for &size in &o.sizes {
            for &clients in &o.clients {
                let tr = if t == Transport::Udp { "udp" } else { "tcp" };
                let c0 = coturn.cpu();
                let text = uclient(coturn.port, t, size, clients, o).await?;
                let theirs = parse_uclient(&text).map(|mut r| {
                    r.cpu_s = coturn.cpu() - c0;
                    r
                });
                let c0 = self_cpu();
                let text = uclient(ours.local_addr().port(), t, size, clients, o).await?;
                let mine = parse_uclient(&text).map(|mut r| {
                    r.cpu_s = self_cpu() - c0;
                    r
                });
                // A run that uclient itself could not finish is reported and
                // the matrix goes on.
                let (theirs, mine) = match (theirs, mine) {
                    (Ok(a), Ok(b)) => (a, b),
                    (a, b) => {
                        let _ = writeln!(
                            out,
                            "{tr:<4} {size:>5} {clients:>4} | coturn: {} | invigil: {}",
                            a.map_or_else(|e| e.to_string().replace('\n', " "), |_| "ok".into()),
                            b.map_or_else(|e| e.to_string().replace('\n', " "), |_| "ok".into()),
                        );
                        continue;
                    }
                };

                let _ = writeln!(
                    out,
                    "{:<4} {:>5} {:>4} | {:>9.0} {:>6.2} {:>7.2} {:>7.2} | {:>9.0} {:>6.2} {:>7.2} {:>7.2} | {:>6.2} {:>6.2}",
                    tr,
                    size,
                    clients,
                    theirs.msgs_per_s(),
                    theirs.lost_pct,
                    theirs.rtt_avg_ms,
                    theirs.cpu_per_gb(),
                    mine.msgs_per_s(),
                    mine.lost_pct,
                    mine.rtt_avg_ms,
                    mine.cpu_per_gb(),
                    mine.msgs_per_s() / theirs.msgs_per_s().max(f64::MIN_POSITIVE),
                    mine.cpu_per_gb() / theirs.cpu_per_gb(),
                );
                let _ = out.flush();
                rows.push(Row {
                    transport: t,
                    size,
                    clients,
                    coturn: theirs,
                    invigil: mine,
                });
            }
        }
    }
    drop(coturn);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

fn tempfile_dir() -> Result<std::path::PathBuf, TurnError> {
    let dir = std::env::temp_dir().join(format!("invigil-bench-turn-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uclient_summary() {
        let out = "3: : start_mclient: msz=2, tot_send_msgs=20, tot_recv_msgs=20, tot_send_bytes ~ 2000, tot_recv_bytes ~ 2000\n\
                   4: : start_mclient: tot_send_msgs=40, tot_recv_msgs=39\n\
                   4: : start_mclient: tot_send_bytes ~ 4000, tot_recv_bytes ~ 3900\n\
                   4: : Total transmit time is 4\n\
                   4: : Total lost packets 1 (2.500000%), total send dropped 0 (0.000000%)\n\
                   4: : Average round trip delay 0.250000 ms; min = 0 ms, max = 3 ms\n";
        let r = parse_uclient(out).unwrap();
        assert_eq!(
            (r.sent_msgs, r.recv_msgs, r.recv_bytes, r.transmit_s),
            (40, 39, 3900, 4)
        );
        assert!((r.lost_pct - 2.5).abs() < 1e-9);
        assert!((r.rtt_avg_ms - 0.25).abs() < 1e-9);
        assert!((r.rtt_max_ms - 3.0).abs() < 1e-9);
        assert!(parse_uclient("ERROR: Cannot complete Allocation").is_err());
    }
}
