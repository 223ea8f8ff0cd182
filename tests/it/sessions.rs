//! A whole exam over the REST API: template, session, a student and two
//! proctors, metric periods and the explained score, illegal moves, who may
//! see what, and a deadline that passes while the daemon is down.

mod links;

use crate::harness::Daemon;
use crate::rest::Rest;
use reqwest::Method;
use serde_json::json;

const PW: &str = "Manager pass 123";

#[tokio::test]
async fn a_whole_exam_with_a_student_and_two_proctors() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let admin = c.user(&manager, "adm", "administrator", &[]).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    let bob = c.user(&manager, "bob", "student", &[]).await;
    let p1 = c.user(&manager, "p1", "proctor", &[]).await;
    let p2 = c.user(&manager, "p2", "proctor", &["room-7"]).await;
    let p3 = c.user(&manager, "p3", "proctor", &[]).await;

    let template = json!({ "id": "final", "name": "Final", "weights": { "b2": 0.5, "b3": 1.0 }, "threshold": 80 });
    assert_eq!(
        c.call(Method::POST, "/api/v1/templates", &admin, Some(template))
            .await
            .0,
        201
    );
    let new = json!({ "student": "ann", "subject": "Maths", "template": "final", "proctors": ["p1"],
                      "proctor_group": "room-7", "duration_limit": 90, "tags": ["june"] });
    let (status, session) = c
        .call(Method::POST, "/api/v1/sessions", &admin, Some(new))
        .await;
    assert_eq!(status, 201, "{session}");
    let id = session["id"].as_str().unwrap().to_string();
    let at = |action: &str| format!("/api/v1/sessions/{id}/{action}");

    // Who sees it: the student, both proctors (by name and by group), not others.
    for (who, cookie, expected) in [
        ("ann", &ann, 200),
        ("p1", &p1, 200),
        ("p2", &p2, 200),
        ("bob", &bob, 404),
        ("p3", &p3, 404),
    ] {
        let (s, _) = c
            .call(Method::GET, &format!("/api/v1/sessions/{id}"), cookie, None)
            .await;
        assert_eq!(s, expected, "{who}");
    }
    let (_, listed) = c.call(Method::GET, "/api/v1/sessions", &p3, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 0, "p3 watches nothing");
    let (_, listed) = c
        .call(Method::GET, "/api/v1/sessions?tag=june", &p2, None)
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Illegal moves name the allowed ones; a student cannot pause.
    let (s, e) = c.call(Method::POST, &at("pause"), &p1, None).await;
    assert_eq!((s, e["error"].as_str()), (409, Some("illegal_transition")));
    assert!(
        e["message"].as_str().unwrap().contains("allowed: start"),
        "{e}"
    );
    assert_eq!(c.call(Method::POST, &at("start"), &ann, None).await.0, 200);
    assert_eq!(c.call(Method::POST, &at("pause"), &ann, None).await.0, 403);
    assert_eq!(c.call(Method::POST, &at("pause"), &p2, None).await.0, 200);
    let (s, _) = c
        .call(
            Method::POST,
            &at("periods"),
            &ann,
            Some(json!({ "values": { "b2": 10 } })),
        )
        .await;
    assert_eq!(s, 409, "no samples while paused");
    assert_eq!(c.call(Method::POST, &at("resume"), &p1, None).await.0, 200);

    // Metric periods from the browser; server-side codes are refused.
    for values in [json!({ "b2": 40, "b3": 0 }), json!({ "b2": 0, "b3": 10 })] {
        let (s, body) = c
            .call(
                Method::POST,
                &at("periods"),
                &ann,
                Some(json!({ "values": values })),
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, e) = c
        .call(
            Method::POST,
            &at("periods"),
            &ann,
            Some(json!({ "values": { "c4": 100 } })),
        )
        .await;
    assert_eq!((s, e["error"].as_str()), (422, Some("invalid_field")));
    assert_eq!(
        c.call(
            Method::POST,
            &at("periods"),
            &p1,
            Some(json!({ "values": { "b2": 1 } }))
        )
        .await
        .0,
        403
    );
    let (_, score) = c.call(Method::GET, &at("score"), &p1, None).await;
    // b2: avg 20 × 0.5 = 10; b3: avg 5 × 1.0 = 5 → 85.
    assert_eq!(score["score"], 85.0, "{score}");
    assert_eq!(score["terms"].as_array().unwrap().len(), 2);
    assert_eq!(score["review"], false);
    assert_eq!(c.call(Method::GET, &at("score"), &ann, None).await.0, 403);

    assert_eq!(c.call(Method::POST, &at("stop"), &ann, None).await.0, 200);
    let (s, e) = c.call(Method::POST, &at("conclude"), &p1, None).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (422, Some("invalid_field")),
        "a conclusion needs a verdict"
    );
    let verdict = json!({ "positive": true, "comment": "calm exam" });
    let (s, done) = c
        .call(Method::POST, &at("conclude"), &p1, Some(verdict))
        .await;
    assert_eq!((s, done["status"].as_str()), (200, Some("concluded")));
    assert_eq!(done["conclusion"]["by"], "p1");

    let (_, protocol) = c.call(Method::GET, &at("protocol"), &p2, None).await;
    let kinds: Vec<&str> = protocol
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "metrics").count(), 2);
    assert_eq!(
        kinds.iter().filter(|k| **k == "status").count(),
        6,
        "{kinds:?}"
    );
    let scope = format!("{}/{id}", session["host_id"].as_str().unwrap());
    let store = d.running.store.as_ref();
    assert_eq!(invigil::proctoring::protocol::verify(store, &scope), Ok(8));
    let recomputed = invigil::proctoring::protocol::recompute_averages(store, &scope).unwrap();
    let live = invigil::proctoring::sessions::get(store, session["host_id"].as_str().unwrap(), &id)
        .unwrap();
    assert_eq!(
        recomputed, live.averages,
        "the score recomputes from the protocol"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_deadline_that_passes_while_down_stops_the_session_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("MANAGER_PASSWORD", PW)];
    let d = Daemon::start_in(dir.path(), &vars, axum::Router::new())
        .await
        .unwrap();
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    assert_eq!(
        c.call(
            Method::POST,
            "/api/v1/templates",
            &manager,
            Some(json!({ "id": "t", "name": "T" }))
        )
        .await
        .0,
        201
    );
    let deadline = invigil::auth::now_secs() + 2;
    let new = json!({ "student": "ann", "template": "t", "deadline": deadline });
    let (_, session) = c
        .call(Method::POST, "/api/v1/sessions", &manager, Some(new))
        .await;
    let id = session["id"].as_str().unwrap().to_string();
    assert_eq!(
        c.call(
            Method::POST,
            &format!("/api/v1/sessions/{id}/start"),
            &ann,
            None
        )
        .await
        .0,
        200
    );
    d.stop().await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;

    let d = Daemon::start_in(dir.path(), &vars, axum::Router::new())
        .await
        .unwrap();
    let host_id = session["host_id"].as_str().unwrap();
    let s = invigil::proctoring::sessions::get(d.running.store.as_ref(), host_id, &id).unwrap();
    assert_eq!(s.status, invigil::proctoring::sessions::Status::Stopped);
    assert_eq!(
        s.stopped_at,
        Some(deadline),
        "stamped with the deadline, not the restart time"
    );
    d.stop().await;
}
