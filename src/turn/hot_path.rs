//! Heap allocations per relayed packet, counted by a global allocator that
//! counts only on the relay's own thread: the relay runs on a dedicated
//! single-threaded runtime, the clients elsewhere. Run with `--nocapture` to
//! see the numbers.

use super::client::Client;
use super::server::TurnServer;
use super::{Settings, Timings, quota::Quotas};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Starts a relay on its own thread, counting that thread's allocations.
fn relay_thread() -> SocketAddr {
    let settings = Settings {
        realm: "hot".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        relay_ip: "127.0.0.1".parse().unwrap(),
        advertised_ip: "127.0.0.1".parse().unwrap(),
        min_port: 47000,
        max_port: 47999,
        static_user: Some(("u".into(), "p".into())),
        secret: vec![7; 16],
        allowed_peers: Vec::new(),
        timings: Timings::default(),
        quotas: Quotas::default(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = TurnServer::bind(settings).await.unwrap();
            tx.send(server.local_addr()).unwrap();
            COUNTED.set(true);
            server.serve_udp(std::future::pending()).await;
        });
    });
    rx.recv().unwrap()
}

const WAIT: Duration = Duration::from_secs(2);

/// Relays `n` packets each way; returns the relay's allocations per packet.
async fn per_packet(a: &Client, b: &Client, to_b: (u16, SocketAddr), n: u32) -> f64 {
    let payload = [0x5a; 1000];
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        a.send_channel(0x4000, &payload).await.unwrap();
        b.recv_relayed(WAIT).await.unwrap();
        match to_b {
            (0, peer) => b.send_indication(peer, &payload[..500]).await.unwrap(),
            (ch, _) => b.send_channel(ch, &payload[..500]).await.unwrap(),
        }
        a.recv_relayed(WAIT).await.unwrap();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / f64::from(2 * n)
}

#[tokio::test]
async fn relaying_over_udp_allocates_nothing_per_packet() {
    let server = relay_thread();
    let mut a = Client::new(server, "u", "p").await.unwrap();
    let mut b = Client::new(server, "u", "p").await.unwrap();
    let (ra, _, _) = a.allocate().await.unwrap();
    let (rb, _, _) = b.allocate().await.unwrap();
    a.channel_bind(0x4000, rb).await.unwrap();
    b.create_permission(ra).await.unwrap();

    // a's channel to b arrives as a Data indication; b answers with Send.
    per_packet(&a, &b, (0, ra), 50).await;
    let indications = per_packet(&a, &b, (0, ra), 500).await;
    // Both ways through channels: the path browsers use.
    b.channel_bind(0x4001, ra).await.unwrap();
    per_packet(&a, &b, (0x4001, ra), 50).await;
    let channels = per_packet(&a, &b, (0x4001, ra), 500).await;
    println!(
        "relay heap allocations per packet: {channels:.3} with channels both ways, \
         {indications:.3} with a channel one way and Send/Data indications the other"
    );
    assert!(channels < 0.01, "{channels} allocations per packet");
}
