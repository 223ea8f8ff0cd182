//! `invigil bench hostile`: broken and malicious clients against a real
//! `invigil serve` process on loopback, each with the figure that shows the
//! server held: slowloris sockets dribbling headers while a legitimate
//! client's requests are timed, decompression and pixel bombs against the
//! server's peak memory, a WebSocket flood against other students' latency,
//! and the answers to oversized headers and bodies.
//!
//! The integration tests run the same attacks at small sizes.

mod attacks;
mod wire;

pub use attacks::{Bomb, Flood, Limits, Refusal, Slowloris};

use super::hub_bench::client::{Server, usage};
use std::path::Path;
use std::time::Duration;

/// Sizes of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Slowloris sockets held open at once.
    pub sockets: usize,
    /// Seconds the slowloris sockets are held once open.
    pub hold_secs: u64,
    /// Seconds of WebSocket flood.
    pub flood_secs: u64,
}

/// A server under attack: `invigil serve` as a child process.
pub struct Target {
    server: Server,
    wire: std::sync::Arc<wire::Wire>,
}

impl Target {
    /// Starts `exe serve` on a fresh data directory with `vars` added.
    pub fn start(exe: &Path, vars: &[(&str, &str)]) -> anyhow::Result<Target> {
        let server = Server::start_from(exe, vars)?;
        let wire = std::sync::Arc::new(wire::Wire::new(&server)?);
        Ok(Target { server, wire })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Resident and peak resident memory of the server, in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let (rss, peak, _) = usage(self.pid());
        (rss, peak)
    }

    /// Open file descriptors of the server.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// Stops the server and removes its data.
    pub fn stop(self) {
        self.server.stop();
    }

    pub async fn slowloris(&self, sockets: usize, hold: Duration) -> anyhow::Result<Slowloris> {
        attacks::slowloris(self, sockets, hold).await
    }

    pub async fn bomb(&self) -> anyhow::Result<Bomb> {
        attacks::bomb(self).await
    }

    pub async fn flood(&self, secs: Duration) -> anyhow::Result<Flood> {
        attacks::flood(self, secs).await
    }

    pub async fn limits(&self) -> anyhow::Result<Limits> {
        attacks::limits(self).await
    }
}

/// Latencies in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    pub count: usize,
    pub errors: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latencies {
    pub fn of(mut ns: Vec<u64>, errors: usize) -> Latencies {
        ns.sort_unstable();
        let pct = |q: f64| {
            ns.get(((ns.len() as f64 - 1.0) * q).round() as usize)
                .map_or(f64::NAN, |n| *n as f64 / 1e6)
        };
        Latencies {
            count: ns.len(),
            errors,
            p50: pct(0.5),
            p99: pct(0.99),
            max: pct(1.0),
        }
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} timed, {} errors)",
            self.p50, self.p99, self.max, self.count, self.errors
        )
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// Runs every attack against a fresh server each and prints the figures.
pub fn run(o: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.sockets > 0, "--sockets must be at least 1");
    let exe = std::env::current_exe()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "invigil bench hostile: attacks on `invigil serve` over TLS on loopback, {} CPUs",
        super::cpus()
    );
    let target = Target::start(&exe, &[])?;
    let result = runtime.block_on(target.slowloris(o.sockets, Duration::from_secs(o.hold_secs)));
    target.stop();
    println!("{}", result?);

    let target = Target::start(&exe, &[])?;
    let result = runtime.block_on(target.bomb());
    target.stop();
    println!("{}", result?);

    let target = Target::start(&exe, &[])?;
    let result = runtime.block_on(target.flood(Duration::from_secs(o.flood_secs)));
    target.stop();
    println!("{}", result?);

    let target = Target::start(&exe, &[("UPLOAD_LIMIT", "1")])?;
    let result = runtime.block_on(target.limits());
    target.stop();
    println!("{}", result?);
    Ok(())
}
