//! The embedded TURN relay against real peers on loopback: coturn's
//! `turnutils_uclient`, the relay's own client, raw malformed input, and the
//! HTTPS port's hand-over.

use crate::harness::{self, Daemon};
use invigil::turn::client::{Client, Relayed};
use invigil::turn::credentials::rest_password;
use invigil::turn::message as msg;
use invigil::turn::server::TurnServer;
use invigil::turn::{Settings, Timings, TurnError};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::message::{BINDING_REQUEST, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const USER: &str = "bench";
const PASS: &str = "benchpass";
const WAIT: Duration = Duration::from_secs(2);

/// A relay on a free loopback port, settings adjusted by `tweak`.
async fn relay(tweak: impl FnOnce(&mut Settings)) -> (TurnServer, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = harness::config(
        dir.path(),
        &[
            ("TURN_PORT", "0"),
            ("TURN_USER", "bench:benchpass"),
            ("TURN_MIN_PORT", "40000"),
            ("TURN_MAX_PORT", "44999"),
        ],
    );
    let mut settings = Settings::from_config(&config, b"rest-secret-for-tests".to_vec());
    tweak(&mut settings);
    let server = TurnServer::bind(settings).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.clone().serve_udp(std::future::pending()));
    tokio::spawn(server.clone().serve_tcp(std::future::pending()));
    tokio::spawn(server.clone().sweep(std::future::pending()));
    (server, addr, dir)
}

fn code(r: Result<impl std::fmt::Debug, TurnError>) -> u16 {
    match r {
        Err(TurnError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Runs `turnutils_uclient` (Debian package `coturn`) against `port`.
fn uclient(port: u16, extra: &[&str], password: &str) -> (bool, String) {
    let out = Command::new("timeout")
        .arg("30")
        .arg("turnutils_uclient")
        .args(extra)
        .args(["-c", "-u", USER, "-w", password, "-p", &port.to_string()])
        .args(["-X", "-e", "127.0.0.1", "127.0.0.1"])
        .output()
        .expect("turnutils_uclient runs (tests/run installs the coturn package)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn uclient_relays(tcp: bool) {
    let (server, addr, _dir) = relay(|_| {}).await;
    let mut args = vec!["-y", "-n", "100", "-l", "500", "-m", "4", "-z", "2"];
    if tcp {
        args.push("-t");
    }
    let port = addr.port();
    let (ok, out) = tokio::task::spawn_blocking(move || uclient(port, &args, PASS))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("tot_send_msgs=400, tot_recv_msgs=400"),
        "{out}"
    );
    assert!(out.contains("Total lost packets 0 (0.000000%)"), "{out}");
    let m = server.metrics();
    assert!(m.packets_to_peers.load(Ordering::Relaxed) >= 400);
    assert!(m.packets_to_clients.load(Ordering::Relaxed) >= 400);
    assert!(m.allocations_total.load(Ordering::Relaxed) >= 4);
}

#[tokio::test]
async fn uclient_relays_between_two_allocations_over_udp() {
    uclient_relays(false).await;
}

#[tokio::test]
async fn uclient_relays_between_two_allocations_over_tcp() {
    uclient_relays(true).await;
}

#[tokio::test]
async fn uclient_wrong_password_is_refused() {
    let (server, addr, _dir) = relay(|_| {}).await;
    let port = addr.port();
    let (_, out) =
        tokio::task::spawn_blocking(move || uclient(port, &["-y", "-n", "5", "-m", "1"], "wrong"))
            .await
            .unwrap();
    assert!(out.contains("Cannot complete Allocation"), "{out}");
    assert_eq!(server.allocations(), 0);
    assert!(server.metrics().unauthorized.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn uclient_peer_that_is_not_a_relay_gets_403() {
    let (server, addr, _dir) = relay(|_| {}).await;
    let port = addr.port();
    // Without -y the peer is 127.0.0.1:3480, loopback and not a relay.
    let (_, out) =
        tokio::task::spawn_blocking(move || uclient(port, &["-n", "5", "-m", "1"], PASS))
            .await
            .unwrap();
    assert!(out.contains("channel bind: error 403"), "{out}");
    let m = server.metrics();
    assert!(m.policy_denials.load(Ordering::Relaxed) >= 1);
    assert_eq!(m.packets_to_peers.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn denied_peers_get_403_for_permission_channel_and_never_a_packet() {
    let (server, addr, _dir) = relay(|_| {}).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = Client::new(addr, USER, PASS).await.unwrap();
    c.allocate().await.unwrap();
    assert_eq!(code(c.create_permission(peer_addr).await), 403);
    assert_eq!(code(c.channel_bind(0x4000, peer_addr).await), 403);
    c.send_indication(peer_addr, b"leak?").await.unwrap();
    c.send_channel(0x4000, b"leak?").await.unwrap();
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_millis(300), peer.recv_from(&mut buf)).await;
    assert!(got.is_err(), "a denied peer received a packet");
    assert_eq!(server.metrics().packets_to_peers.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn channels_and_indications_relay_both_ways() {
    let (_server, addr, _dir) =
        relay(|s| s.allowed_peers = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = Client::new(addr, USER, PASS).await.unwrap();
    let (relayed, mapped, lifetime) = c.allocate().await.unwrap();
    assert_eq!(
        mapped,
        c.local_addr()
            .unwrap()
            .to_string()
            .replace("0.0.0.0", "127.0.0.1")
            .parse()
            .unwrap()
    );
    assert_eq!(lifetime, 600);

    // Without a permission nothing passes either way.
    c.send_indication(peer_addr, b"early").await.unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), peer.recv_from(&mut buf))
            .await
            .is_err()
    );

    c.create_permission(peer_addr).await.unwrap();
    c.send_indication(peer_addr, b"via send").await.unwrap();
    let (n, from) = tokio::time::timeout(WAIT, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"via send"[..], relayed));
    peer.send_to(b"via data", relayed).await.unwrap();
    assert_eq!(
        c.recv_relayed(WAIT).await.unwrap(),
        Relayed::Data(peer_addr, b"via data".to_vec())
    );

    c.channel_bind(0x4001, peer_addr).await.unwrap();
    c.channel_bind(0x4001, peer_addr).await.unwrap(); // refresh is fine
    c.send_channel(0x4001, b"via channel").await.unwrap();
    let (n, _) = tokio::time::timeout(WAIT, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"via channel");
    peer.send_to(b"back", relayed).await.unwrap();
    assert_eq!(
        c.recv_relayed(WAIT).await.unwrap(),
        Relayed::Channel(0x4001, b"back".to_vec())
    );

    // A channel is bound to one peer, a peer to one channel; numbers in range.
    let other: SocketAddr = format!("127.0.0.1:{}", peer_addr.port() + 1)
        .parse()
        .unwrap();
    assert_eq!(code(c.channel_bind(0x4001, other).await), 400);
    assert_eq!(code(c.channel_bind(0x4002, peer_addr).await), 400);
    assert_eq!(code(c.channel_bind(0x3FFF, other).await), 400);
    // An IPv6 peer on an IPv4 relay.
    assert_eq!(
        code(
            c.create_permission("[2606:4700::1]:9".parse().unwrap())
                .await
        ),
        443
    );
}

#[tokio::test]
async fn lifetimes_refresh_and_expiry() {
    let timings = Timings {
        default_lifetime: Duration::from_secs(2),
        max_lifetime: Duration::from_secs(4),
        permission: Duration::from_millis(800),
        channel: Duration::from_secs(3),
        nonce: Duration::from_secs(60),
    };
    let (server, addr, _dir) = relay(|s| {
        s.timings = timings;
        s.allowed_peers = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = Client::new(addr, USER, PASS).await.unwrap();
    let (relayed, _, lifetime) = c.allocate().await.unwrap();
    assert_eq!(lifetime, 2);
    assert_eq!(c.refresh(3600).await.unwrap(), 4, "capped at the maximum");

    // A permission lapses after its lifetime; data from the peer is dropped.
    c.create_permission(peer_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    peer.send_to(b"late", relayed).await.unwrap();
    assert!(c.recv_relayed(Duration::from_millis(300)).await.is_err());

    // Refresh with 0 deletes; afterwards requests get 437.
    assert_eq!(c.refresh(0).await.unwrap(), 0);
    assert_eq!(server.allocations(), 0);
    assert_eq!(code(c.create_permission(peer_addr).await), 437);

    // An allocation left alone expires.
    let mut c2 = Client::new(addr, USER, PASS).await.unwrap();
    c2.allocate().await.unwrap();
    assert_eq!(server.allocations(), 1);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(server.allocations(), 0);
    assert_eq!(code(c2.refresh(10).await), 437);
    assert_eq!(
        server.metrics().allocations_active.load(Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn allocate_twice_is_437_and_other_user_is_441() {
    let (_server, addr, _dir) = relay(|_| {}).await;
    let mut c = Client::new(addr, USER, PASS).await.unwrap();
    c.allocate().await.unwrap();
    assert_eq!(code(c.allocate().await), 437);
    // The same 5-tuple with another valid user (a REST credential): 441.
    let expiry = invigil::turn::credentials::unix_now() + 60;
    let username = format!("{expiry}:other");
    let password = rest_password(b"rest-secret-for-tests", &username);
    c.set_credentials(&username, &password);
    assert_eq!(code(c.refresh(60).await), 441);
    assert_eq!(
        code(c.channel_bind(0x4000, "127.0.0.1:9".parse().unwrap()).await),
        441
    );
}

#[tokio::test]
async fn stale_nonce_gets_438_and_client_recovers() {
    let (_server, addr, _dir) = relay(|s| s.timings.nonce = Duration::from_millis(300)).await;
    let mut c = Client::new(addr, USER, PASS).await.unwrap();
    c.allocate().await.unwrap();
    let old = c.nonce().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The client's retry logic takes the 438's fresh nonce.
    assert!(c.refresh(60).await.is_ok());
    assert_ne!(c.nonce().unwrap(), old);

    // A nonce replayed from another client address (here: another port) is
    // not accepted.
    let mut d = Client::new(addr, USER, PASS).await.unwrap();
    d.allocate().await.unwrap();
    let theirs = d.nonce().unwrap().to_string();
    let mut e = Client::new(addr, USER, PASS).await.unwrap();
    e.allocate().await.unwrap();
    e.set_nonce(Some("0".repeat(32)));
    assert!(e.refresh(60).await.is_ok(), "438 then recovery");
    // Raw replay: same nonce, other source → 438.
    let req = signed_refresh(&theirs, PASS, "invigil");
    e.send_raw(&req).await.unwrap();
    let reply = msg::parse(&e.recv_raw(WAIT).await.unwrap()).unwrap();
    assert_eq!(msg::error_code(&reply), Some(438));
}

/// A Refresh request with long-term credentials and a given nonce.
fn signed_refresh(nonce: &str, password: &str, realm: &str) -> Vec<u8> {
    let mut m = Message::new();
    m.typ = stun::message::MessageType::new(
        stun::message::METHOD_REFRESH,
        stun::message::CLASS_REQUEST,
    );
    m.transaction_id = TransactionId::new();
    m.write_header();
    m.add(ATTR_USERNAME, USER.as_bytes());
    m.add(ATTR_REALM, realm.as_bytes());
    m.add(ATTR_NONCE, nonce.as_bytes());
    let key = invigil::turn::credentials::long_term_key(USER, realm, password);
    msg::seal(&mut m, Some((&key, msg::Integrity::Sha1))).unwrap();
    m.raw
}

#[tokio::test]
async fn rest_credentials_work_until_they_expire() {
    let (_server, addr, _dir) = relay(|_| {}).await;
    let now = invigil::turn::credentials::unix_now();
    let user = format!("{}:student-1", now + 2);
    let pass = rest_password(b"rest-secret-for-tests", &user);
    let mut c = Client::new(addr, &user, &pass).await.unwrap();
    c.allocate().await.unwrap();
    let mut wrong = Client::new(addr, &user, "not-the-hmac").await.unwrap();
    assert_eq!(code(wrong.allocate().await), 401);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(code(c.refresh(60).await), 401, "expired credentials");
    let mut late = Client::new(addr, &user, &pass).await.unwrap();
    assert_eq!(code(late.allocate().await), 401);
}

#[tokio::test]
async fn quotas_refuse_with_486_and_rate_limit_401() {
    let (server, addr, _dir) = relay(|s| {
        s.quotas.allocations_per_user = 2;
        s.quotas.unauthorized_per_ip = 5;
    })
    .await;
    let mut keep = Vec::new();
    for _ in 0..2 {
        let mut c = Client::new(addr, USER, PASS).await.unwrap();
        c.allocate().await.unwrap();
        keep.push(c);
    }
    let mut c = Client::new(addr, USER, PASS).await.unwrap();
    assert_eq!(code(c.allocate().await), 486);
    assert!(server.metrics().quota_denials.load(Ordering::Relaxed) >= 1);

    // A storm of unauthenticated requests: at most 5 answers per second.
    let raw = Client::new(addr, USER, PASS).await.unwrap();
    let mut req = Message::new();
    req.typ = stun::message::MessageType::new(
        stun::message::METHOD_ALLOCATE,
        stun::message::CLASS_REQUEST,
    );
    for _ in 0..20 {
        req.transaction_id = TransactionId::new();
        req.raw.clear();
        req.length = 0;
        req.write_header();
        req.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        raw.send_raw(&req.raw).await.unwrap();
    }
    let mut answers = 0;
    while raw.recv_raw(Duration::from_millis(300)).await.is_ok() {
        answers += 1;
    }
    assert!((1..=5).contains(&answers), "{answers} answers");
}

#[tokio::test]
async fn per_allocation_bandwidth_is_enforced() {
    let (server, addr, _dir) = relay(|s| {
        s.quotas.allocation_bps = 10_000;
        s.allowed_peers = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = Client::new(addr, USER, PASS).await.unwrap();
    c.allocate().await.unwrap();
    c.channel_bind(0x4000, peer.local_addr().unwrap())
        .await
        .unwrap();
    for _ in 0..40 {
        c.send_channel(0x4000, &[7u8; 1000]).await.unwrap();
    }
    let mut got = 0;
    let mut buf = [0u8; 2048];
    while tokio::time::timeout(Duration::from_millis(300), peer.recv_from(&mut buf))
        .await
        .is_ok()
    {
        got += 1;
    }
    assert!(
        (5..=12).contains(&got),
        "{got} of 40 packets passed a 10 kB/s limit"
    );
    assert!(server.metrics().quota_denials.load(Ordering::Relaxed) >= 28);
}

#[tokio::test]
async fn bad_input_gets_the_rfc_answer_or_is_dropped() {
    let (_server, addr, _dir) = relay(|_| {}).await;
    let c = Client::new(addr, USER, PASS).await.unwrap();
    let mut binding = Message::new();
    binding
        .build(&[Box::new(BINDING_REQUEST), Box::new(TransactionId::new())])
        .unwrap();
    // Truncated, wrong lengths, oversized, garbage: dropped, server alive.
    let mut wrong_len = binding.raw.clone();
    wrong_len[3] = 8;
    let oversized = vec![0u8; 65_000];
    for bad in [
        &binding.raw[..10],
        &wrong_len[..],
        &oversized[..],
        b"\xff\xff\xff\xff",
    ] {
        c.send_raw(bad).await.unwrap();
    }
    assert!(c.recv_raw(Duration::from_millis(200)).await.is_err());
    // Unknown comprehension-required attribute: 420 listing it.
    let mut unknown = binding.clone();
    unknown.add(AttrType(0x7F01), b"abcd");
    msg::seal(&mut unknown, None).unwrap();
    c.send_raw(&unknown.raw).await.unwrap();
    let r = msg::parse(&c.recv_raw(WAIT).await.unwrap()).unwrap();
    assert_eq!(msg::error_code(&r), Some(420));
    assert_eq!(
        msg::attr(&r, ATTR_UNKNOWN_ATTRIBUTES),
        Some(&[0x7F, 0x01][..])
    );
    // A good binding still works and reports our address.
    c.send_raw(&binding.raw).await.unwrap();
    let r = msg::parse(&c.recv_raw(WAIT).await.unwrap()).unwrap();
    let mapped = msg::xor_addr(
        msg::attr(&r, ATTR_XORMAPPED_ADDRESS).unwrap(),
        &r.transaction_id.0,
    )
    .unwrap();
    assert_eq!(mapped.port(), c.local_addr().unwrap().port());

    // Bad integrity and wrong realm: 401 with a fresh nonce.
    let mut probe = Client::new(addr, USER, "wrong").await.unwrap();
    assert_eq!(code(probe.allocate().await), 401);
    let nonce = probe.nonce().unwrap().to_string();
    for (pass, realm) in [("wrong", "invigil"), (PASS, "elsewhere")] {
        probe
            .send_raw(&signed_refresh(&nonce, pass, realm))
            .await
            .unwrap();
        let r = msg::parse(&probe.recv_raw(WAIT).await.unwrap()).unwrap();
        assert_eq!(msg::error_code(&r), Some(401), "{pass} {realm}");
        assert!(msg::attr(&r, ATTR_NONCE).is_some());
    }
    // Tampered after signing: the FINGERPRINT no longer matches, dropped.
    let mut tampered = signed_refresh(&nonce, PASS, "invigil");
    tampered[24] ^= 1;
    probe.send_raw(&tampered).await.unwrap();
    assert!(probe.recv_raw(Duration::from_millis(300)).await.is_err());
}

#[tokio::test]
async fn tcp_stream_split_at_every_byte() {
    let (_server, addr, _dir) = relay(|_| {}).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut binding = Message::new();
    binding
        .build(&[Box::new(BINDING_REQUEST), Box::new(TransactionId::new())])
        .unwrap();
    msg::seal(&mut binding, None).unwrap();
    let mut stream = binding.raw.clone();
    // Stray ChannelData without an allocation is ignored, not fatal.
    stream.extend_from_slice(&msg::channel_header(0x4000, 3));
    stream.extend_from_slice(b"abc\0");
    stream.extend_from_slice(&binding.raw);
    for b in &stream {
        s.write_all(std::slice::from_ref(b)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut got = [0u8; 2 * 44];
    let mut have = 0;
    while have < 2 * 20 {
        let n = tokio::time::timeout(WAIT, s.read(&mut got[have..]))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        have += n;
    }
    let len = 20 + usize::from(u16::from_be_bytes([got[2], got[3]]));
    let first = msg::parse(&got[..len]).unwrap();
    assert_eq!(first.transaction_id, binding.transaction_id);
    // Bytes that start neither STUN nor ChannelData close the connection.
    s.write_all(b"\xff\xff\xff\xff").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .unwrap();
}

#[tokio::test]
async fn daemon_serves_turn_and_mints_credentials_it_accepts() {
    let d = Daemon::start(&[
        ("TURN_PORT", "0"),
        ("TURN_MIN_PORT", "45000"),
        ("TURN_MAX_PORT", "45999"),
    ])
    .await;
    let turn = d
        .running
        .turn
        .as_ref()
        .expect("embedded relay runs")
        .local_addr();
    let secret = std::fs::read_to_string(d.data_dir.join("turn.secret")).unwrap();
    assert_eq!(secret.trim().len(), 64);
    let ice = d.running.ice.mint("student-42", Duration::from_secs(600));
    let server = &ice.ice_servers[0];
    assert!(
        server
            .urls
            .contains(&format!("turn:127.0.0.1:{}?transport=udp", turn.port()))
    );
    assert!(server.urls.contains(&format!(
        "turns:127.0.0.1:{}?transport=tcp",
        d.running.https_addr.port()
    )));
    let mut c = Client::new(turn, &server.username, &server.credential)
        .await
        .unwrap();
    let (relayed, _, _) = c.allocate().await.unwrap();
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");

    // Plain TURN-over-TCP on the HTTPS port.
    let mut s = TcpStream::connect(d.running.https_addr).await.unwrap();
    let mut binding = Message::new();
    binding
        .build(&[Box::new(BINDING_REQUEST), Box::new(TransactionId::new())])
        .unwrap();
    s.write_all(&binding.raw).await.unwrap();
    let mut head = [0u8; 20];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head[8..], &binding.transaction_id.0);
    // TURN over TLS on the HTTPS port, chosen by ALPN `stun.turn`.
    let mut tls = tls_connect(&d, &[b"stun.turn"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"stun.turn"[..]));
    let mut c = Message::new();
    c.build(&[Box::new(BINDING_REQUEST), Box::new(TransactionId::new())])
        .unwrap();
    tls.write_all(&c.raw).await.unwrap();
    let mut head = [0u8; 20];
    tokio::time::timeout(WAIT, tls.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head[8..], &c.transaction_id.0);
    // HTTPS still works next to it.
    let r = d.client.get(d.url("/ping")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    d.stop().await;
}

/// A TLS connection to the daemon's HTTPS port offering `alpn`.
async fn tls_connect(d: &Daemon, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls::pki_types::CertificateDer::pem_slice_iter(&harness::self_signed_pem(&d.data_dir))
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(d.running.https_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn external_turn_uri_keeps_the_listener_off() {
    let d = Daemon::start(&[("TURN_URI", "turn://u:p@turn.example.org:3478?transport=udp")]).await;
    assert!(d.running.turn.is_none());
    let ice = d.running.ice.mint("p", Duration::from_secs(60));
    assert_eq!(
        ice.ice_servers[0].urls,
        ["turn:turn.example.org:3478?transport=udp"]
    );
    d.stop().await;
}

#[tokio::test]
async fn turn_over_tls_relays_with_and_without_alpn() {
    let d = Daemon::start(&[
        ("TURN_PORT", "0"),
        ("TURN_USER", "bench:benchpass"),
        ("TURN_MIN_PORT", "45000"),
        ("TURN_MAX_PORT", "45999"),
    ])
    .await;
    let turn = d.running.turn.as_ref().unwrap().local_addr();
    let mut peer = Client::new(turn, USER, PASS).await.unwrap();
    let (peer_relay, _, _) = peer.allocate().await.unwrap();
    for alpn in [&[&b"stun.turn"[..]][..], &[]] {
        let tls = tls_connect(&d, alpn).await;
        let mut c = Client::over_stream(tls, d.running.https_addr, USER, PASS);
        let (relay, _, _) = c.allocate().await.unwrap();
        peer.create_permission(relay).await.unwrap();
        c.channel_bind(0x4001, peer_relay).await.unwrap();
        // 7 bytes: the stream's ChannelData padding is exercised too.
        c.send_channel(0x4001, b"via tls").await.unwrap();
        assert_eq!(
            peer.recv_relayed(WAIT).await.unwrap(),
            Relayed::Data(relay, b"via tls".to_vec())
        );
        peer.send_indication(relay, b"back").await.unwrap();
        assert_eq!(
            c.recv_relayed(WAIT).await.unwrap(),
            Relayed::Channel(0x4001, b"back".to_vec())
        );
        assert_eq!(c.refresh(0).await.unwrap(), 0);
    }
    // HTTP without ALPN is still HTTP, its first bytes intact.
    let mut tls = tls_connect(&d, &[]).await;
    tls.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, tls.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The relay's counters are on /metrics.
    let text = d
        .client
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} in {text}"))
    };
    assert_eq!(value("invigil_turn_allocations_active"), 1);
    assert_eq!(value("invigil_turn_allocations_total"), 3);
    assert!(value("invigil_turn_relayed_packets_total{direction=\"to_peers\"}") >= 2);
    assert!(value("invigil_turn_relayed_packets_total{direction=\"to_clients\"}") >= 2);
    assert!(value("invigil_turn_relayed_bytes_total{direction=\"to_peers\"}") >= 14);
    assert!(value("invigil_turn_unauthorized_total") >= 3);
    assert_eq!(value("invigil_turn_denials_total{reason=\"policy\"}"), 0);
    d.stop().await;
}
