//! Locking the student's screen: by a proctor (lock, unlock) and by the
//! template's lock-on-violation rule, each recorded in the protocol.

use super::{Started, act, started};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn proctors_lock_and_unlock_and_a_violation_locks_by_itself() {
    let Started {
        d,
        c,
        ann,
        id,
        mut st,
        mut pa,
        ..
    } = started().await;
    let manager = c.login("manager", super::client::PW).await;

    let ack = pa.ask(act(&id, "lock")).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let lock = st.expect("action").await;
    assert_eq!(
        (
            lock["action"].as_str(),
            lock["locked"].as_bool(),
            lock["by"].as_str()
        ),
        (Some("lock"), Some(true), Some("p1"))
    );
    assert_eq!(lock["seq"], ack["seq"]);
    let path = format!("/api/v1/sessions/{id}");
    assert_eq!(
        c.call(Method::GET, &path, &manager, None).await.1["locked"],
        true
    );
    let e = st.ask(act(&id, "unlock")).await;
    assert_eq!(e["code"], "forbidden", "a student cannot unlock: {e}");
    // A rejoining student learns it is locked.
    assert_eq!(st.join(&id, None).await["locked"], true);
    pa.ask(act(&id, "unlock")).await;
    let unlock = st.expect("action").await;
    assert_eq!(
        (unlock["action"].as_str(), unlock["locked"].as_bool()),
        (Some("unlock"), Some(false))
    );

    // A template that locks on b3 (full-screen left).
    let t = json!({ "name": "t", "weights": { "b2": 0.5 },
                    "addons": { "lock_on_violation": true, "lock_on": ["b3"] } });
    let (s, body) = c
        .call(Method::PUT, "/api/v1/templates/t", &manager, Some(t))
        .await;
    assert_eq!(s, 200, "{body}");
    let bad = json!({ "name": "t", "addons": { "lock_on_violation": true, "lock_on": ["c4"] } });
    let (s, body) = c
        .call(Method::PUT, "/api/v1/templates/t", &manager, Some(bad))
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (422, Some("invalid_field")),
        "{body}"
    );
    let (_, id2) = c.session(&manager, "ann", "t", &["p1"]).await;
    c.start(&ann, &id2).await;
    // The student's page reads its session's template (the addons).
    let (s, t) = c
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{id2}/template"),
            &ann,
            None,
        )
        .await;
    assert_eq!((s, t["version"].as_u64()), (200, Some(2)), "{t}");
    assert_eq!(t["addons"]["lock_on"], json!(["b3"]));
    let (s, t) = c
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{id}/template"),
            &ann,
            None,
        )
        .await;
    assert_eq!(
        (s, t["version"].as_u64()),
        (200, Some(1)),
        "the first session keeps v1"
    );
    st.join(&id2, None).await;
    pa.join(&id2, None).await;
    let sample = |values| json!({ "type": "samples", "session": id2, "values": values });
    // The lock goes out before the sample's ack: gather everything up to it.
    let mut seen = Vec::new();
    for values in [json!({ "b2": 100 }), json!({ "b3": 20 })] {
        let mut f = sample(values);
        f["ref"] = "s".into();
        st.send(f).await;
        seen.extend(st.until(|v| v["ref"] == "s").await);
    }
    let actions: Vec<_> = seen.iter().filter(|v| v["type"] == "action").collect();
    assert_eq!(actions.len(), 1, "b2 alone does not lock: {seen:?}");
    let lock = actions[0];
    assert_eq!(
        (
            lock["action"].as_str(),
            lock["by"].as_str(),
            lock["automatic"].as_bool()
        ),
        (Some("lock"), Some("invigil"), Some(true))
    );
    assert_eq!(lock["codes"], json!(["b3"]));
    assert_eq!(pa.expect("action").await["action"], "lock");
    let (_, entries) = c
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{id2}/protocol?kind=action"),
            &manager,
            None,
        )
        .await;
    assert_eq!(entries.as_array().unwrap().len(), 1, "{entries}");
    assert_eq!(entries[0]["data"]["automatic"], true);
    d.stop().await;
}
