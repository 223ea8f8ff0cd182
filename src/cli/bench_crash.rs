//! `invigil bench crash`: the exam day of `bench load` while the server is
//! killed with SIGKILL at random moments and started again on the same data
//! directory. The students carry on as browsers do (new connections, the
//! upload's offset asked again); at the end every acknowledged recording
//! byte, snapshot, sample and chat message must be there, and every
//! session's evidence bundle, protocol chain included, must verify.

use super::bench_load::{self, Outcome, Plan};
use super::hub_bench::client::{Dialer, Server};
use http::Method;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Options {
    pub plan: Plan,
    pub rounds: usize,
    /// Running time between kills, chosen at random in this range.
    pub between: (Duration, Duration),
}

pub fn run(o: &Options) -> anyhow::Result<bool> {
    bench_load::check(&o.plan)?;
    anyhow::ensure!(o.rounds > 0, "--rounds must be at least 1");
    crate::web::serve::connection_cap();
    let server = Arc::new(Mutex::new(Server::start()?));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(campaign(o, &server));
    drop(runtime);
    bench_load::stop(server);
    let (outcome, restarts, bundles) = result?;
    report(o, &outcome, &restarts, &bundles);
    Ok(outcome.missing.none() && bundles.failed.is_empty())
}

/// Sessions whose evidence bundle verified, and the first failures.
#[derive(Default)]
struct Bundles {
    verified: usize,
    entries: u64,
    failed: Vec<String>,
}

async fn campaign(
    o: &Options,
    server: &Arc<Mutex<Server>>,
) -> anyhow::Result<(Outcome, Vec<Duration>, Bundles)> {
    let restarts = Arc::new(Mutex::new(Vec::new()));
    let kills = {
        let (server, restarts) = (server.clone(), restarts.clone());
        let (rounds, (lo, hi)) = (o.rounds, o.between);
        Box::pin(async move {
            for round in 0..rounds {
                let wait = rand::random_range(lo.as_millis()..=hi.as_millis().max(lo.as_millis()));
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                let server = server.clone();
                let took = tokio::task::spawn_blocking(move || {
                    let t = Instant::now();
                    let mut s = server.lock().map_err(|_| anyhow::anyhow!("server lock"))?;
                    s.crash_and_restart()?;
                    anyhow::Ok(t.elapsed())
                })
                .await??;
                if let Ok(mut r) = restarts.lock() {
                    r.push(took);
                }
                eprintln!(
                    "kill {}/{rounds}: back in {:.0} ms",
                    round + 1,
                    took.as_secs_f64() * 1e3
                );
            }
            // A last stretch without kills, so what waited can be sent.
            tokio::time::sleep(Duration::from_secs(3)).await;
            anyhow::Ok(())
        })
            as std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>
    };
    let outcome = bench_load::drive(&o.plan, server, Some(kills)).await?;
    let bundles = verify_bundles(server, &outcome).await?;
    let restarts = restarts.lock().map(|r| r.clone()).unwrap_or_default();
    Ok((outcome, restarts, bundles))
}

/// Exports every session's signed bundle and verifies it offline: every
/// file against the manifest, the protocol chain from its first entry.
async fn verify_bundles(server: &Arc<Mutex<Server>>, out: &Outcome) -> anyhow::Result<Bundles> {
    let dialer = {
        let s = server.lock().map_err(|_| anyhow::anyhow!("server lock"))?;
        Dialer::new(&s)?
    };
    let mut http = dialer.http().await?;
    let (ids, manager) = (&out.sessions, &out.manager);
    let mut b = Bundles::default();
    for id in ids {
        let a = http
            .raw(
                Method::GET,
                &format!("/api/v1/sessions/{id}/export"),
                Some(manager),
                &[],
                bytes::Bytes::new(),
            )
            .await?;
        if a.status != 200 {
            b.failed.push(format!("{id}: export answered {}", a.status));
            continue;
        }
        match crate::proctoring::bundle::verify(std::io::Cursor::new(a.body), None) {
            Ok(v) => {
                b.verified += 1;
                b.entries += v.manifest.chain.entries;
            }
            Err(e) => b.failed.push(format!("{id}: {e}")),
        }
    }
    Ok(b)
}

fn report(o: &Options, out: &Outcome, restarts: &[Duration], bundles: &Bundles) {
    let mut r: Vec<f64> = restarts.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    r.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        r.get(((r.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "invigil bench crash: {} kills with SIGKILL, {}–{} ms apart, under {} students \
         (a sample every {} s, a snapshot every {} s, {} kbit/s of recording in {} s chunks); {} CPUs",
        restarts.len(),
        o.between.0.as_millis(),
        o.between.1.as_millis(),
        o.plan.students,
        o.plan.period.as_secs(),
        o.plan.snapshot_every.as_secs(),
        o.plan.bytes_per_sec * 8 / 1000,
        o.plan.chunk_every.as_secs(),
        super::cpus()
    );
    println!(
        "restart until listening: p50 {:.0} ms, max {:.0} ms",
        pct(0.5),
        pct(1.0)
    );
    bench_load::print_operations(out);
    let t = out.ledger.totals();
    let m = &out.missing;
    println!(
        "acknowledged: {:.1} MB of recording, {} snapshots, {} samples, {} chat messages; \
         missing after the kills: {} bytes ({} offsets found behind an acknowledgement), \
         {} snapshots, {} samples, {} chat messages",
        t.offset as f64 / 1e6,
        t.snapshots,
        t.samples,
        t.chat.len(),
        m.recording_bytes,
        m.regressions,
        m.snapshots,
        m.samples,
        m.chat
    );
    println!(
        "evidence bundles: {} verified ({} protocol entries in their chains), {} failed",
        bundles.verified,
        bundles.entries,
        bundles.failed.len()
    );
    for f in bundles.failed.iter().take(5) {
        println!("  {f}");
    }
    println!(
        "result: {}",
        if m.none() && bundles.failed.is_empty() {
            "nothing acknowledged was lost, every chain verifies"
        } else {
            "LOST DATA or a broken chain"
        }
    );
}
