//! The live hub with real WebSocket clients: a whole exam with a student and
//! two proctors, resume after a reconnect, a slow consumer, heartbeats that
//! drive n1, and everyone and everything that must be refused.

mod attachments;
mod client;
mod crash;
mod lock;

use crate::harness::Daemon;
use client::{Open, PW, Peer, Rest, connect, refused_status};
use invigil::proctoring::protocol::{self, Kind};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn chat(session: &str, text: &str) -> Value {
    json!({ "type": "chat", "session": session, "text": text })
}

fn act(session: &str, action: &str) -> Value {
    json!({ "type": "action", "session": session, "action": action })
}

fn types(frames: &[Value]) -> Vec<&str> {
    frames.iter().map(|f| f["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_whole_exam_over_the_hub() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    let p1 = c.user(&manager, "p1", "proctor", &[]).await;
    let p2 = c.user(&manager, "p2", "proctor", &["room-7"]).await;
    c.template(&manager, "final", 60).await;
    let (host_id, id) = c.session(&manager, "ann", "final", &["p1"]).await;
    c.start(&ann, &id).await;

    let mut pa = connect(&d, Open::new(&d, &p1)).await.unwrap();
    let joined = pa.join(&id, None).await;
    assert_eq!(
        (joined["you"].as_str(), joined["status"].as_str()),
        (Some("staff"), Some("started"))
    );
    assert!(joined["metrics"].is_object(), "staff see the live figures");
    let mut st = connect(&d, Open::new(&d, &ann)).await.unwrap();
    let joined = st.join(&id, None).await;
    assert_eq!(joined["you"], "student");
    assert!(
        joined.get("metrics").is_none(),
        "students do not see their score"
    );
    let mut pb = connect(&d, Open::new(&d, &p2)).await.unwrap();
    pb.join(&id, None).await;
    // Presence: all three, seen by the first proctor.
    let presence = pa
        .until(|v| v["type"] == "presence" && v["members"].as_array().unwrap().len() == 3)
        .await
        .pop()
        .unwrap();
    let users: Vec<&str> = presence["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["ann", "p1", "p2"]);

    // Chat both ways, acknowledged with the stored sequence number.
    let ack = st.ask(chat(&id, "May I use a calculator?")).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seq = ack["seq"].as_u64().unwrap();
    for p in [&mut pa, &mut pb] {
        let m = p.expect("chat").await;
        assert_eq!(
            (m["seq"].as_u64(), m["author"].as_str(), m["text"].as_str()),
            (Some(seq), Some("ann"), Some("May I use a calculator?"))
        );
    }
    let ack = pa.ask(chat(&id, "Yes, a basic one.")).await;
    let answer = st.expect("chat").await;
    assert_eq!(
        (answer["seq"].clone(), answer["author"].as_str()),
        (ack["seq"].clone(), Some("p1"))
    );

    // Samples in, live metrics out to the proctors.
    let ack = st
        .ask(json!({ "type": "samples", "session": id, "values": { "b2": 40 } }))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    for p in [&mut pa, &mut pb] {
        let m = p.expect("metrics").await;
        // b2 40 × 0.5 = 20; n1 is 0 because the samples came over the socket.
        assert_eq!(
            (
                m["score"].as_f64(),
                m["averages"]["b2"].as_f64(),
                m["averages"]["n1"].as_f64()
            ),
            (Some(80.0), Some(40.0), Some(0.0)),
            "{m}"
        );
    }
    let e = st
        .ask(json!({ "type": "samples", "session": id, "values": { "c4": 100 } }))
        .await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("invalid_field"))
    );
    let e = pa
        .ask(json!({ "type": "samples", "session": id, "values": { "b2": 1 } }))
        .await;
    assert_eq!(e["code"], "forbidden");

    // A warning reaches the student; a student cannot act.
    let mut warn = act(&id, "warn");
    warn["comment"] = "Eyes on your own screen, please.".into();
    let ack = pa.ask(warn).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let w = st.expect("action").await;
    assert_eq!(
        (
            w["action"].as_str(),
            w["comment"].as_str(),
            w["by"].as_str(),
            w["seq"].clone()
        ),
        (
            Some("warn"),
            Some("Eyes on your own screen, please."),
            Some("p1"),
            ack["seq"].clone()
        )
    );
    assert_eq!(st.ask(act(&id, "pause")).await["code"], "forbidden");

    // Pause and resume; no samples while paused.
    assert_eq!(pb.ask(act(&id, "pause")).await["status"], "paused");
    assert_eq!(st.expect("status").await["status"], "paused");
    let e = st
        .ask(json!({ "type": "samples", "session": id, "values": { "b2": 0 } }))
        .await;
    assert_eq!(e["code"], "illegal_transition");
    assert_eq!(pa.ask(act(&id, "resume")).await["status"], "started");
    assert_eq!(st.expect("status").await["status"], "started");

    // Signaling goes to the named participant only.
    st.send(json!({ "type": "signal", "session": id, "to": "p1", "payload": { "sdp": "offer" } }))
        .await;
    let s = pa.expect("signal").await;
    assert_eq!(
        (s["from"].as_str(), s["payload"]["sdp"].as_str()),
        (Some("ann"), Some("offer"))
    );
    pa.send(
        json!({ "type": "signal", "session": id, "to": "ann", "payload": { "sdp": "answer" } }),
    )
    .await;
    assert_eq!(st.expect("signal").await["payload"]["sdp"], "answer");
    let e = st
        .ask(json!({ "type": "signal", "session": id, "to": "p3", "payload": {} }))
        .await;
    assert_eq!(e["code"], "not_connected");
    pa.ask(chat(&id, "marker")).await;
    let seen = pb
        .until(|v| v["type"] == "chat" && v["text"] == "marker")
        .await;
    assert!(
        !types(&seen).contains(&"signal"),
        "p2 got no signaling: {seen:?}"
    );

    // Stop and conclude.
    assert_eq!(pa.ask(act(&id, "stop")).await["status"], "stopped");
    let seen = st
        .until(|v| v["type"] == "status" && v["status"] == "stopped")
        .await;
    assert!(
        !types(&seen).contains(&"metrics"),
        "no metrics for the student: {seen:?}"
    );
    assert_eq!(pb.ask(act(&id, "conclude")).await["code"], "invalid_field");
    let mut conclude = act(&id, "conclude");
    conclude["positive"] = true.into();
    conclude["comment"] = "calm exam".into();
    assert_eq!(pb.ask(conclude).await["status"], "concluded");
    let done = st.expect("status").await;
    assert_eq!(
        (done["status"].as_str(), done["conclusion"]["by"].as_str()),
        (Some("concluded"), Some("p2"))
    );
    assert_eq!(st.ask(chat(&id, "too late")).await["code"], "conflict");

    // Everything is in the protocol, and the chain verifies.
    let store = d.running.store.as_ref();
    let scope = format!("{host_id}/{id}");
    let entries = protocol::since(store, &scope, 0, 1000).unwrap();
    let chats: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == Kind::Chat)
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        chats,
        ["May I use a calculator?", "Yes, a basic one.", "marker"]
    );
    assert_eq!(entries.iter().filter(|e| e.kind == Kind::Action).count(), 1);
    assert_eq!(
        entries.iter().filter(|e| e.kind == Kind::Metrics).count(),
        1
    );
    assert_eq!(protocol::verify(store, &scope), Ok(entries.len() as u64));
    d.stop().await;
}

/// A started session of student `ann` watched by proctor `p1`, both
/// connected and joined.
struct Started {
    d: Daemon,
    c: Rest,
    ann: String,
    p1: String,
    id: String,
    st: Peer,
    pa: Peer,
}

async fn started() -> Started {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    let p1 = c.user(&manager, "p1", "proctor", &[]).await;
    c.template(&manager, "t", 60).await;
    let (_, id) = c.session(&manager, "ann", "t", &["p1"]).await;
    c.start(&ann, &id).await;
    let mut st = connect(&d, Open::new(&d, &ann)).await.unwrap();
    st.join(&id, None).await;
    let mut pa = connect(&d, Open::new(&d, &p1)).await.unwrap();
    pa.join(&id, None).await;
    Started {
        d,
        c,
        ann,
        p1,
        id,
        st,
        pa,
    }
}

#[tokio::test]
async fn a_reconnecting_client_gets_what_it_missed() {
    let Started {
        d,
        p1,
        id,
        mut st,
        mut pa,
        ..
    } = started().await;
    let first = st.ask(chat(&id, "one")).await["seq"].as_u64().unwrap();
    assert_eq!(pa.expect("chat").await["seq"].as_u64(), Some(first));
    drop(pa);

    for text in ["two", "three"] {
        assert_eq!(st.ask(chat(&id, text)).await["type"], "ack");
    }
    let mut pa = connect(&d, Open::new(&d, &p1)).await.unwrap();
    let joined = pa.join(&id, Some(first)).await;
    let missed: Vec<&str> = joined["missed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "chat")
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(missed, ["two", "three"], "{joined}");
    assert!(
        joined["missed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["seq"].as_u64().unwrap() > first)
    );
    assert_eq!(joined["more"], false);
    // Without after_seq: the current position only.
    let again = pa.join(&id, None).await;
    assert_eq!(again["missed"].as_array().unwrap().len(), 0);
    assert_eq!(
        again["last_seq"],
        joined["missed"].as_array().unwrap().last().unwrap()["seq"]
    );
    d.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_does_not_stall_the_room() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    let p1 = c.user(&manager, "p1", "proctor", &[]).await;
    let slow_cookie = c.user(&manager, "slow", "proctor", &[]).await;
    c.template(&manager, "t", 60).await;
    let (_, id) = c.session(&manager, "ann", "t", &["p1", "slow"]).await;
    c.start(&ann, &id).await;
    let mut st = connect(&d, Open::new(&d, &ann)).await.unwrap();
    st.join(&id, None).await;
    let mut pa = connect(&d, Open::new(&d, &p1)).await.unwrap();
    pa.join(&id, None).await;
    let mut open = Open::new(&d, &slow_cookie);
    open.small_buffer = true;
    let mut slow = connect(&d, open).await.unwrap();
    let joined = slow.join(&id, None).await;
    let mut last_seen = joined["last_seq"].as_u64().unwrap();
    let slow_stats = |d: &Daemon| d.running.hub.stats().into_iter().find(|s| s.user == "slow");

    // The slow proctor stops reading. Big signaling frames sent to it back
    // up its connection until its writer is stuck (kernel buffers are large).
    let blob = "v".repeat(60 * 1024);
    let fill = async |st: &mut Peer, pa: &mut Peer| {
        let mut n = 0u32;
        while slow_stats(&d).unwrap().queued == 0 {
            let from = if n.is_multiple_of(2) {
                &mut *st
            } else {
                &mut *pa
            };
            from.send(json!({ "type": "signal", "session": id, "to": "slow", "payload": blob }))
                .await;
            if n % 4 == 3 {
                // Frames of one connection are handled in order.
                assert_eq!(from.ask(json!({ "type": "ping" })).await["type"], "pong");
            }
            n += 1;
            assert!(n < 400, "the slow consumer never backed up");
        }
    };
    // Meanwhile the others chat on and get every message at once.
    let text = "x".repeat(4000);
    let mut sent = 0;
    let talk = async |st: &mut Peer, pa: &mut Peer, sent: &mut u32| {
        let (from, to) = if sent.is_multiple_of(2) {
            (st, pa)
        } else {
            (pa, st)
        };
        let ack = from.ask(chat(&id, &text)).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let got = to.expect("chat").await;
        assert_eq!(got["seq"], ack["seq"], "the fast peer got it at once");
        *sent += 1;
    };
    fill(&mut st, &mut pa).await;
    for _ in 0..10 {
        talk(&mut st, &mut pa, &mut sent).await;
    }
    // Live metrics coalesce for it: five periods, one frame waiting.
    for b2 in [10, 20, 30, 40, 50] {
        let ack = st
            .ask(json!({ "type": "samples", "session": id, "values": { "b2": b2 } }))
            .await;
        assert_eq!(ack["type"], "ack");
    }
    assert!(
        !pa.until(|v| v["type"] == "metrics" && v["averages"]["b2"] == 30.0)
            .await
            .is_empty()
    );
    assert_eq!(slow_stats(&d).unwrap().metrics_pending, 1);
    // When it reads again it gets every chat, in order, then one metrics frame.
    let seen = slow.until(|v| v["type"] == "metrics").await;
    let seqs: Vec<u64> = seen
        .iter()
        .filter(|v| v["type"] == "chat")
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len() as u32, sent, "no chat dropped");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gaps"
    );
    last_seen = last_seen.max(*seqs.last().unwrap());
    assert_eq!(
        seen.last().unwrap()["averages"]["b2"],
        30.0,
        "the latest figures"
    );
    assert_eq!(types(&seen).iter().filter(|t| **t == "metrics").count(), 1);

    // Stuck again, past the queue bound: it is closed rather than fed
    // partially, and the room carries on.
    fill(&mut st, &mut pa).await;
    let before = sent;
    while slow_stats(&d).is_some() {
        talk(&mut st, &mut pa, &mut sent).await;
        assert!(sent - before < 300, "the slow consumer was never closed");
    }
    let presence = pa
        .until(|v| v["type"] == "presence" && v["members"].as_array().unwrap().len() == 2)
        .await;
    assert!(!presence.last().unwrap().to_string().contains("slow"));
    drop(slow);
    // It comes back and resumes from the last message it saw.
    let mut slow = connect(&d, Open::new(&d, &slow_cookie)).await.unwrap();
    let mut missed = Vec::new();
    let mut after = last_seen;
    loop {
        let joined = slow.join(&id, Some(after)).await;
        let page = joined["missed"].as_array().unwrap().clone();
        after = page.last().map_or(after, |e| e["seq"].as_u64().unwrap());
        missed.extend(page.into_iter().filter(|e| e["kind"] == "chat"));
        if joined["more"] == false {
            break;
        }
    }
    assert_eq!(
        missed.len() as u32,
        sent - before,
        "every chat since, after the reconnect"
    );
    d.stop().await;
}

#[tokio::test]
async fn heartbeats_drive_n1() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    let p1 = c.user(&manager, "p1", "proctor", &[]).await;
    c.template(&manager, "fast", 1).await;
    let (host_id, id) = c.session(&manager, "ann", "fast", &["p1"]).await;
    c.start(&ann, &id).await;
    let mut pa = connect(&d, Open::new(&d, &p1)).await.unwrap();
    pa.join(&id, None).await;
    let mut st = connect(&d, Open::new(&d, &ann)).await.unwrap();
    let joined = st.join(&id, None).await;
    assert_eq!(joined["heartbeat_ms"], 500);
    let store = d.running.store.as_ref();
    let scope = format!("{host_id}/{id}");
    let n1_periods = || {
        protocol::since(store, &scope, 0, 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == Kind::Metrics && e.author == "invigil")
            .inspect(|e| assert_eq!(e.data["values"]["n1"], 100.0))
            .count()
    };
    // Heard twice per period: no n1.
    for _ in 0..8 {
        st.ask(json!({ "type": "ping" })).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(n1_periods(), 0);
    // Silent for more than two periods with the socket open: at least two.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let silent = n1_periods();
    assert!(silent >= 2, "{silent} periods recorded");
    let m = pa
        .until(|v| v["type"] == "metrics" && v["averages"]["n1"] == 100.0)
        .await;
    assert_eq!(m.last().unwrap()["period"]["n1"], 100.0);
    // Back: a reported period carries n1 = 0, and the average mixes both.
    let ack = st
        .ask(json!({ "type": "samples", "session": id, "values": { "b2": 0 } }))
        .await;
    assert_eq!(ack["type"], "ack");
    let m = pa
        .until(|v| v["type"] == "metrics" && v["period"]["n1"] == 0.0)
        .await;
    let avg = m.last().unwrap()["averages"]["n1"].as_f64().unwrap();
    assert!(avg > 0.0 && avg < 100.0, "{avg}");
    // A student whose socket is gone is off the network too.
    drop(st);
    let gone_at = n1_periods();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(n1_periods() > gone_at);
    // Recomputing from the protocol gives the live averages.
    let live = invigil::proctoring::sessions::get(store, &host_id, &id).unwrap();
    assert_eq!(
        protocol::recompute_averages(store, &scope).unwrap(),
        live.averages
    );
    d.stop().await;
}

#[tokio::test]
async fn strangers_and_bad_frames_are_refused() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    let bob = c.user(&manager, "bob", "student", &[]).await;
    let p1 = c.user(&manager, "p1", "proctor", &[]).await;
    let p3 = c.user(&manager, "p3", "proctor", &[]).await;
    c.template(&manager, "t", 60).await;
    let (_, id) = c.session(&manager, "ann", "t", &["p1"]).await;
    c.session(&manager, "bob", "t", &["p1"]).await;

    // Another student's session and an unassigned proctor: "not found".
    for cookie in [&bob, &p3] {
        let mut peer = connect(&d, Open::new(&d, cookie)).await.unwrap();
        let e = peer.ask(json!({ "type": "join", "session": id })).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("not_found")),
            "{e}"
        );
        assert_eq!(peer.ask(chat(&id, "hi")).await["code"], "not_joined");
    }
    // A cookie of another host, a cross-site page, a cookie without Origin.
    let (s, body) = c
        .call(
            Method::POST,
            "/api/v1/hosts",
            &manager,
            Some(json!({ "domains": ["other.test"] })),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let mut other = Open::new(&d, &ann);
    other.host = Some("other.test");
    other.origin = Some("https://other.test".into());
    assert_eq!(
        refused_status(&connect(&d, other).await.err().unwrap()),
        401
    );
    let mut evil = Open::new(&d, &ann);
    evil.origin = Some("https://evil.test".into());
    assert_eq!(refused_status(&connect(&d, evil).await.err().unwrap()), 403);
    let mut bare = Open::new(&d, &ann);
    bare.origin = None;
    assert_eq!(refused_status(&connect(&d, bare).await.err().unwrap()), 403);
    // A plain GET is a JSON 4xx.
    let (s, body) = c.call(Method::GET, "/api/v1/ws", &ann, None).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );

    // Malformed, unknown, oversized and binary frames: error frames, and
    // the connection carries on.
    let mut st = connect(&d, Open::new(&d, &ann)).await.unwrap();
    st.send_raw(tokio_tungstenite::tungstenite::Message::text("{not json"))
        .await;
    assert_eq!(st.expect("error").await["code"], "invalid_json");
    let e = st.ask(json!({ "type": "teleport" })).await;
    assert_eq!(e["code"], "unknown_type");
    let e = st.ask(json!({ "type": "chat", "text": "hi" })).await;
    assert_eq!(e["code"], "invalid_field");
    assert!(e["message"].as_str().unwrap().contains("session"), "{e}");
    st.send(chat(&id, &"y".repeat(70 * 1024))).await;
    assert_eq!(st.expect("error").await["code"], "payload_too_large");
    st.send_raw(tokio_tungstenite::tungstenite::Message::binary(vec![
        1u8, 2, 3,
    ]))
    .await;
    assert_eq!(st.expect("error").await["code"], "unsupported_frame");
    st.join(&id, None).await;
    let e = st.ask(chat(&id, &"z".repeat(4001))).await;
    assert_eq!(e["code"], "invalid_field");
    assert_eq!(st.ask(json!({ "type": "ping" })).await["type"], "pong");

    // A proctor's wall: 30 sessions on one socket, not 31.
    let mut wall = connect(&d, Open::new(&d, &p1)).await.unwrap();
    for i in 0..31 {
        let (_, sid) = c.session(&manager, "ann", "t", &["p1"]).await;
        let answer = wall.ask(json!({ "type": "join", "session": sid })).await;
        let expected = if i < 30 { "joined" } else { "error" };
        assert_eq!(answer["type"], expected, "join {i}: {answer}");
        if i == 30 {
            assert_eq!(answer["code"], "too_many_rooms");
        }
    }

    // A flood: error frames, then the connection is closed.
    let mut flood = connect(&d, Open::new(&d, &bob)).await.unwrap();
    for _ in 0..400 {
        // The server may close before all are written.
        let frame = tokio_tungstenite::tungstenite::Message::text(r#"{"type":"ping"}"#);
        if futures::SinkExt::send(&mut flood.ws, frame).await.is_err() {
            break;
        }
    }
    let (code, frames) = flood.until_closed().await;
    assert!(frames.iter().any(|f| f["code"] == "too_many_requests"));
    assert_eq!(code, Some(1008));
    d.stop().await;
}

#[tokio::test]
async fn changes_made_over_rest_reach_the_room() {
    let Started {
        d,
        c,
        ann,
        p1,
        id,
        mut st,
        mut pa,
    } = started().await;
    // A period posted over REST reaches the proctor's live view.
    let period = json!({ "values": { "b2": 40 } });
    let path = format!("/api/v1/sessions/{id}/periods");
    assert_eq!(c.call(Method::POST, &path, &ann, Some(period)).await.0, 200);
    let metrics = pa.until(|f| f["type"] == "metrics").await;
    assert_eq!(metrics.last().unwrap()["averages"]["b2"], 40.0);
    // A pause made over REST reaches the student in the room.
    let path = format!("/api/v1/sessions/{id}/pause");
    assert_eq!(c.call(Method::POST, &path, &p1, None).await.0, 200);
    let status = st.until(|f| f["type"] == "status").await;
    let last = status.last().unwrap();
    assert_eq!(
        (last["status"].as_str(), last["by"].as_str()),
        (Some("paused"), Some("p1"))
    );
    d.stop().await;
}
