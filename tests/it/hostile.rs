//! Hostile clients against a real `invigil serve` process, at sizes that run
//! in seconds; `INVIGIL_HOSTILE_SOCKETS` raises the slowloris count, and
//! `invigil bench hostile` runs them all at full size and prints the figures.

use invigil::cli::bench_hostile::Target;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_invigil");
const MIB: u64 = 1024 * 1024;

fn start(vars: &[(&str, &str)]) -> Target {
    Target::start(std::path::Path::new(BIN), vars).expect("invigil serve starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_sockets_leave_a_legitimate_client_fast_and_the_server_bounded() {
    let sockets = std::env::var("INVIGIL_HOSTILE_SOCKETS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let target = start(&[]);
    let r = target.slowloris(sockets, Duration::from_secs(3)).await;
    target.stop();
    let r = r.expect("slowloris run");
    println!("{r}");
    assert_eq!(r.opened, sockets, "every slowloris socket got in");
    assert_eq!(r.cut, 0, "nothing timed out within HTTP_TIMEOUT");
    assert_eq!(r.legit.errors, 0, "{r}");
    assert!(r.legit.count >= 20, "{r}");
    assert!(r.legit.p99 < 1000.0, "{r}");
    // One descriptor per socket, and no growth beyond it.
    assert!(r.fds_peak <= r.fds_idle + sockets + 50, "{r}");
    assert!(r.rss_peak.saturating_sub(r.rss_idle) < 64 * MIB, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_dribbled_a_byte_a_second_is_cut_at_http_timeout() {
    let target = start(&[("HTTP_TIMEOUT", "2")]);
    let r = target.slowloris(20, Duration::from_secs(4)).await;
    target.stop();
    let r = r.expect("slowloris run");
    assert_eq!(r.opened, 20, "{r}");
    // Each socket sends a byte every second, yet the whole header must be in
    // within HTTP_TIMEOUT.
    assert_eq!(r.cut, 20, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pixel_and_decompression_bombs_keep_peak_memory_under_64_mib_above_idle() {
    let target = start(&[]);
    let r = target.bomb().await;
    target.stop();
    let r = r.expect("bomb run");
    println!("{r}");
    let header_bomb = r.answers.iter().find(|a| a.what.contains("50000")).unwrap();
    assert_eq!(header_bomb.status, 422, "{r}");
    assert!(header_bomb.message.contains("50000"), "{r}");
    let four_k = r.answers.iter().filter(|a| a.what.contains("3840×2160"));
    assert!(
        four_k.clone().count() == 4 && four_k.into_iter().all(|a| a.status == 204),
        "{r}"
    );
    let rgba = r.answers.iter().find(|a| a.what.contains("RGBA")).unwrap();
    assert_eq!(rgba.status, 422, "{r}");
    let gzip = r.answers.iter().find(|a| a.what.contains("gzip")).unwrap();
    assert_eq!(gzip.status, 400, "{r}");
    assert!(r.peak_above_idle() < 64 * MIB, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_flood_is_closed_and_does_not_slow_the_room() {
    let target = start(&[]);
    let r = target.flood(Duration::from_secs(5)).await;
    target.stop();
    let r = r.expect("flood run");
    println!("{r}");
    assert!(!r.closes.is_empty(), "the flooder was never closed: {r}");
    assert!(r.closes.iter().all(|c| *c == 1008), "{r}");
    assert!(r.calm.count >= 20 && r.flooded.count >= 40, "{r}");
    // Bounded, with slack for a test run sharing the cores with others.
    assert!(r.flooded.p99 < 1000.0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_and_bodies_413_naming_the_limit() {
    let target = start(&[("UPLOAD_LIMIT", "1")]);
    let r = target.limits().await;
    target.stop();
    let r = r.expect("limits run");
    println!("{r}");
    let answer = |what: &str| r.answers.iter().find(|a| a.what.contains(what)).unwrap();
    let many = answer("150 header fields");
    assert_eq!(many.status, 431, "{r}");
    assert!(many.message.contains("at most 100"), "{r}");
    let large = answer("40 KiB");
    assert_eq!(large.status, 431, "{r}");
    assert!(large.message.contains("at most 32768"), "{r}");
    assert_eq!(answer("300 KiB").status, 431, "{r}");
    for what in ["declaring 64 MiB", "without a length"] {
        let a = answer(what);
        assert_eq!(a.status, 413, "{r}");
        assert!(a.message.contains("UPLOAD_LIMIT"), "{r}");
    }
}
