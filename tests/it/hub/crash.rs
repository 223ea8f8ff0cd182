//! `kill -9` during a live exam: the built binary is killed right after the
//! hub acknowledged chat, samples and proctor actions, and restarted on the
//! same data directory. Everything acknowledged is in the protocol, the
//! chains verify, and the deadline timers are right (one that passed while
//! the daemon was down stops its session stamped with the deadline).

use super::client::{Open, PW, Rest, connect_to};
use super::{act, chat};
use crate::blackbox::{serve, sigterm, wait_exit};
use invigil::auth::now_secs;
use invigil::proctoring::{protocol, sessions};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn new_session(c: &Rest, manager: &str, deadline: u64) -> (String, String) {
    let new =
        json!({ "student": "ann", "template": "t", "proctors": ["p1"], "deadline": deadline });
    let (s, body) = c
        .call(Method::POST, "/api/v1/sessions", manager, Some(new))
        .await;
    assert_eq!(s, 201, "{body}");
    (
        body["host_id"].as_str().unwrap().into(),
        body["id"].as_str().unwrap().into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_live_exam_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("MANAGER_PASSWORD", PW)];
    let mut server = serve(dir.path(), &vars);
    let c = Rest::at(dir.path(), server.https);
    let manager = c.login("manager", PW).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    let p1 = c.user(&manager, "p1", "proctor", &[]).await;
    c.template(&manager, "t", 60).await;
    let live_deadline = now_secs() + 3600;
    let (host_id, live) = new_session(&c, &manager, live_deadline).await;
    // A second exam whose deadline passes while the daemon is down.
    let short_deadline = now_secs() + 2;
    let (_, short) = new_session(&c, &manager, short_deadline).await;
    c.start(&ann, &live).await;
    c.start(&ann, &short).await;

    let mut st = connect_to(server.https, dir.path(), Open::at(server.https, &ann))
        .await
        .unwrap();
    st.join(&live, None).await;
    let mut pa = connect_to(server.https, dir.path(), Open::at(server.https, &p1))
        .await
        .unwrap();
    pa.join(&live, None).await;

    // What the hub acknowledges: chat both ways, samples, actions.
    let mut chats = Vec::new();
    for (student, text) in [
        (true, "Is question 3 about sorting?"),
        (false, "Yes, read it again."),
        (true, "Thanks."),
    ] {
        let peer = if student { &mut st } else { &mut pa };
        let ack = peer.ask(chat(&live, text)).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        chats.push((ack["seq"].as_u64().unwrap(), text));
    }
    for b2 in [30, 60] {
        let ack = st
            .ask(json!({ "type": "samples", "session": live, "values": { "b2": b2 } }))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let mut warn = act(&live, "warn");
    warn["comment"] = "Eyes on your screen.".into();
    let warned = pa.ask(warn).await;
    assert_eq!(warned["type"], "ack", "{warned}");
    for action in ["pause", "resume"] {
        let ack = pa.ask(act(&live, action)).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    // Killed right after the last acknowledgement: no graceful anything.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop((st, pa));
    while now_secs() <= short_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut server = serve(dir.path(), &vars);
    let c = Rest::at(dir.path(), server.https);
    let manager = c.login("manager", PW).await;
    let get = |id: String| {
        let (c, manager) = (&c, &manager);
        async move {
            let (s, body) = c
                .call(
                    Method::GET,
                    &format!("/api/v1/sessions/{id}"),
                    manager,
                    None,
                )
                .await;
            assert_eq!(s, 200, "{body}");
            body
        }
    };
    let s = get(short.clone()).await;
    assert_eq!(s["status"], "stopped", "{s}");
    assert_eq!(
        s["stopped_at"].as_u64(),
        Some(short_deadline),
        "stamped with the deadline, not the restart time"
    );
    let s = get(live.clone()).await;
    assert_eq!(s["status"], "started", "the live exam runs on: {s}");
    assert_eq!(s["averages"]["sums"]["b2"], json!([90.0, 2]), "{s}");

    let (status, entries) = c
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{live}/protocol?limit=1000"),
            &manager,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let entries = entries.as_array().unwrap();
    for (seq, text) in &chats {
        assert!(
            entries
                .iter()
                .any(|e| e["seq"] == *seq && e["kind"] == "chat" && e["data"]["text"] == *text),
            "chat {seq} {text:?} lost"
        );
    }
    let of_kind = |kind: &str| entries.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(of_kind("metrics"), 2, "both sample periods are there");
    assert!(entries.iter().any(|e| e["seq"] == warned["seq"]
        && e["data"]["action"] == "warn"
        && e["data"]["comment"] == "Eyes on your screen."));
    let actions: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "status" && e["data"]["action"].is_string())
        .map(|e| &e["data"]["action"])
        .collect();
    assert_eq!(actions, ["resume", "pause", "start"], "newest first");

    // A proctor reconnecting after the restart resumes from sequence 0 and
    // gets every chat message.
    let mut pa = connect_to(server.https, dir.path(), Open::at(server.https, &p1))
        .await
        .unwrap();
    let joined = pa.join(&live, Some(0)).await;
    let missed: Vec<(u64, &str)> = joined["missed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "chat")
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["data"]["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(missed, chats);
    drop(pa);

    sigterm(&server.child);
    assert_eq!(
        wait_exit(&mut server.child, Duration::from_secs(10)),
        Some(0)
    );
    let store =
        invigil::store::open(dir.path().join("invigil.redb"), invigil::store::MIGRATIONS).unwrap();
    for id in [&live, &short] {
        let scope = sessions::scope(&host_id, id);
        assert!(protocol::verify(store.as_ref(), &scope).is_ok(), "{id}");
    }
    let recomputed =
        protocol::recompute_averages(store.as_ref(), &sessions::scope(&host_id, &live)).unwrap();
    assert_eq!(
        recomputed,
        sessions::get(store.as_ref(), &host_id, &live)
            .unwrap()
            .averages
    );
    assert_eq!(
        sessions::next_due(store.as_ref()).unwrap(),
        Some(live_deadline),
        "the live exam's deadline timer is still set"
    );
}
