//! Chat attachments: uploaded by a participant to the object store, named
//! in a chat message (the protocol entry lists the object key), fetched back
//! with HTTP Range by participants only. And each user's own sessions.

use super::{Started, started};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn attachments_reach_participants_only_and_chat_names_them() {
    let Started {
        d,
        c,
        ann,
        p1,
        id,
        mut st,
        mut pa,
    } = started().await;
    let manager = c.login("manager", super::client::PW).await;
    let p2 = c.user(&manager, "p2", "proctor", &[]).await;
    let bob = c.user(&manager, "bob", "student", &[]).await;
    let upload = format!("/api/v1/sessions/{id}/attachments");
    let png: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();

    let r = c
        .request(Method::POST, &upload, &ann)
        .header("content-type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let a: Value = r.json().await.unwrap();
    let aid = a["id"].as_str().unwrap().to_string();
    let key = a["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with("sessions/") && key.ends_with(&format!("/{id}/attachments/{aid}")),
        "under the session's object prefix: {key}"
    );
    assert_eq!(
        (a["size"].as_u64(), a["by"].as_str()),
        (Some(1000), Some("ann"))
    );
    // No type, an empty body, a stranger's upload: refused.
    let no_type = c
        .request(Method::POST, &upload, &ann)
        .body(vec![1u8, 2])
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), 422);
    let empty = c
        .request(Method::POST, &upload, &ann)
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 422);
    let stranger = c
        .request(Method::POST, &upload, &bob)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 404);

    // The chat message names the attachment; the proctor sees its id.
    let mut f = json!({ "type": "chat", "session": id, "text": "", "attachments": [aid] });
    let ack = st.ask(f.clone()).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let m = pa.expect("chat").await;
    assert_eq!(m["attachments"], json!([aid]));
    f["attachments"] = json!(["nope"]);
    let e = st.ask(f).await;
    assert_eq!(e["code"], "invalid_field", "{e}");
    let (_, entries) = c
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{id}/protocol?kind=chat"),
            &manager,
            None,
        )
        .await;
    assert_eq!(entries[0]["attachments"], json!([key]), "{entries}");

    // Fetching: whole, a range, and only for participants.
    let file = format!("{upload}/{aid}");
    let r = c.request(Method::GET, &file, &p1).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-disposition"], "attachment");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);
    let r = c
        .request(Method::GET, &file, &ann)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/1000");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png[10..20].to_vec());
    for outsider in [&p2, &bob] {
        let r = c
            .request(Method::GET, &file, outsider)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = c
        .request(Method::GET, &format!("{upload}/nope"), &p1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Each user's own sessions.
    let mine = |cookie: String, query: &'static str| {
        let c = &c;
        async move {
            let (s, body) = c
                .call(
                    Method::GET,
                    &format!("/api/v1/me/sessions{query}"),
                    &cookie,
                    None,
                )
                .await;
            assert_eq!(s, 200, "{body}");
            body.as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(mine(ann.clone(), "").await, vec![id.clone()]);
    assert_eq!(mine(p1.clone(), "?live=true").await, vec![id.clone()]);
    assert_eq!(
        mine(p1.clone(), "?status=stopped").await,
        Vec::<String>::new()
    );
    assert!(mine(p2, "").await.is_empty());
    assert!(mine(bob, "").await.is_empty());
    assert!(mine(manager, "").await.is_empty());
    d.stop().await;
}
