//! `GET /api/v1/sessions/{id}/ice` and real ICE through the embedded relay:
//! the credentials it mints, who gets them, and two `webrtc-ice` agents with
//! relay-only candidates that connect through our TURN and exchange data.

use crate::harness::Daemon;
use crate::rest::Rest;
use invigil::turn::client::Client;
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use webrtc_ice::agent::Agent;
use webrtc_ice::agent::agent_config::AgentConfig;
use webrtc_ice::candidate::candidate_base::unmarshal_candidate;
use webrtc_ice::candidate::{Candidate, CandidateType};
use webrtc_ice::mdns::MulticastDnsMode;
use webrtc_ice::network_type::NetworkType;
use webrtc_ice::url::Url;
use webrtc_util::Conn;

const PW: &str = "Manager pass 123";
const WAIT: Duration = Duration::from_secs(10);

/// A daemon with its relay, a session of ann's watched by p1, and cookies.
struct Exam {
    d: Daemon,
    c: Rest,
    id: String,
    ann: String,
    p1: String,
}

impl Exam {
    async fn start() -> Exam {
        let d = Daemon::start(&[
            ("MANAGER_PASSWORD", PW),
            ("TURN_PORT", "0"),
            ("TURN_MIN_PORT", "46000"),
            ("TURN_MAX_PORT", "46999"),
        ])
        .await;
        let c = Rest::new(&d);
        let manager = c.login("manager", PW).await;
        let admin = c.user(&manager, "adm", "administrator", &[]).await;
        let ann = c.user(&manager, "ann", "student", &[]).await;
        let p1 = c.user(&manager, "p1", "proctor", &[]).await;
        c.template(&admin, "t", 10).await;
        let (_, id) = c.session(&admin, "ann", "t", &["p1"]).await;
        Exam { d, c, id, ann, p1 }
    }

    async fn ice(&self, cookie: &str) -> (u16, Value) {
        let path = format!("/api/v1/sessions/{}/ice", self.id);
        self.c.call(Method::GET, &path, cookie, None).await
    }

    fn turn_port(&self) -> u16 {
        self.d.running.turn.as_ref().unwrap().local_addr().port()
    }
}

fn creds(v: &Value) -> (String, String) {
    let s = &v["iceServers"][0];
    (
        s["username"].as_str().unwrap().to_string(),
        s["credential"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn ice_servers_for_the_student_and_staff_only() {
    let e = Exam::start().await;
    let c = &e.c;
    let manager = c.login("manager", PW).await;
    let bob = c.user(&manager, "bob", "student", &[]).await;
    let p3 = c.user(&manager, "p3", "proctor", &[]).await;

    let (s, ann) = e.ice(&e.ann).await;
    assert_eq!(s, 200, "{ann}");
    let https = e.d.running.https_addr.port();
    let turn = e.turn_port();
    assert_eq!(
        ann["iceServers"][0]["urls"],
        serde_json::json!([
            format!("turn:localhost:{turn}?transport=udp"),
            format!("turn:localhost:{turn}?transport=tcp"),
            format!("turns:localhost:{https}?transport=tcp"),
        ])
    );
    let (user, pass) = creds(&ann);
    let (expiry, participant) = user.split_once(':').unwrap();
    assert_eq!(participant, format!("{}/ann", e.id));
    let ttl = ann["ttl"].as_u64().unwrap();
    assert!((1800..=86_400).contains(&ttl), "{ann}");
    assert_eq!(
        expiry.parse::<u64>().unwrap(),
        ann["expires"].as_u64().unwrap()
    );

    // Staff on the session get credentials of their own.
    let (s, staff) = e.ice(&e.p1).await;
    assert_eq!(s, 200);
    assert!(creds(&staff).0.ends_with(&format!("{}/p1", e.id)));
    // Others do not learn the session exists.
    assert_eq!(e.ice(&bob).await.0, 404);
    assert_eq!(e.ice(&p3).await.0, 404);
    assert_eq!(e.ice("").await.0, 401);
    let (s, _) = c
        .call(Method::GET, "/api/v1/sessions/nope/ice", &e.ann, None)
        .await;
    assert_eq!(s, 404);

    // The relay takes what the endpoint minted, and nothing altered.
    let server = e.d.running.turn.as_ref().unwrap().local_addr();
    let mut client = Client::new(server, &user, &pass).await.unwrap();
    client.allocate().await.unwrap();
    let mut forged = Client::new(server, &user.replace("/ann", "/bob"), &pass)
        .await
        .unwrap();
    assert!(forged.allocate().await.is_err());
    e.d.stop().await;
}

/// A relay-only agent for the relay at `turn` with the minted credentials.
async fn agent(turn: u16, (username, password): (String, String)) -> Arc<Agent> {
    let mut url = Url::parse_url(&format!("turn:127.0.0.1:{turn}?transport=udp")).unwrap();
    url.username = username;
    url.password = password;
    let config = AgentConfig {
        urls: vec![url],
        network_types: vec![NetworkType::Udp4],
        candidate_types: vec![CandidateType::Relay],
        // No multicast: every packet stays on loopback.
        multicast_dns_mode: MulticastDnsMode::Disabled,
        relay_acceptance_min_wait: Some(Duration::ZERO),
        ..AgentConfig::default()
    };
    Arc::new(Agent::new(config).await.unwrap())
}

/// Hands every candidate `from` gathers to `to`.
fn trickle(from: &Agent, to: &Arc<Agent>, seen: mpsc::UnboundedSender<String>) {
    let to = to.clone();
    from.on_candidate(Box::new(
        move |c: Option<Arc<dyn Candidate + Send + Sync>>| {
            let (to, seen) = (to.clone(), seen.clone());
            Box::pin(async move {
                if let Some(c) = c {
                    let line = c.marshal();
                    let remote: Arc<dyn Candidate + Send + Sync> =
                        Arc::new(unmarshal_candidate(&line).unwrap());
                    to.add_remote_candidate(&remote).unwrap();
                    let _ = seen.send(line);
                }
            })
        },
    ));
}

#[tokio::test]
async fn two_relay_only_agents_connect_through_our_turn() {
    let e = Exam::start().await;
    let turn = e.turn_port();
    let student = agent(turn, creds(&e.ice(&e.ann).await.1)).await;
    let proctor = agent(turn, creds(&e.ice(&e.p1).await.1)).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    trickle(&student, &proctor, seen_tx.clone());
    trickle(&proctor, &student, seen_tx);
    let (su, sp) = student.get_local_user_credentials().await;
    let (pu, pp) = proctor.get_local_user_credentials().await;
    student.gather_candidates().unwrap();
    proctor.gather_candidates().unwrap();

    let (_cancel_a, rx_a) = mpsc::channel(1);
    let (_cancel_b, rx_b) = mpsc::channel(1);
    let (dialed, accepted) = tokio::time::timeout(WAIT, async {
        tokio::join!(student.dial(rx_a, pu, pp), proctor.accept(rx_b, su, sp))
    })
    .await
    .expect("agents connect within the time");
    let (dialed, accepted) = (dialed.unwrap(), accepted.unwrap());

    // Both candidates are relayed by us.
    for _ in 0..2 {
        let line = seen.recv().await.unwrap();
        assert!(line.contains(" typ relay"), "{line}");
        assert!(line.contains("127.0.0.1"), "{line}");
    }
    let pair = student
        .get_selected_candidate_pair()
        .expect("a selected pair");
    assert_eq!(pair.local.candidate_type(), CandidateType::Relay);
    assert_eq!(pair.remote.candidate_type(), CandidateType::Relay);

    let mut buf = [0u8; 1500];
    for i in 0..20u8 {
        let msg = [i; 200];
        dialed.send(&msg).await.unwrap();
        let n = tokio::time::timeout(WAIT, accepted.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &msg[..]);
        accepted.send(&msg[..100]).await.unwrap();
        let n = tokio::time::timeout(WAIT, dialed.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &msg[..100]);
    }
    let relay = e.d.running.turn.as_ref().unwrap();
    assert_eq!(relay.allocations(), 2);
    assert!(
        relay
            .metrics()
            .packets_to_peers
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 40
    );
    student.close().await.unwrap();
    proctor.close().await.unwrap();
    e.d.stop().await;
}
