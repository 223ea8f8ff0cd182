//! Retention and erasure end to end, with a cold tier on a directory: evidence
//! in both tiers, playback from the cold tier with Range, erasure of one
//! session and of one user's data by an administrator, expiry by the host's
//! retention; afterwards no byte of it is left in either tier (listed through
//! the stores and walked on disk), no store record names the sessions, and the
//! audit chain verifies with one entry per erasure.

use crate::uploads::{Exam, exam};
use invigil::auth::audit;
use invigil::proctoring::{retention, tiering};
use invigil::store::{Scan, catalog};
use reqwest::Method;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const PW: &str = "Manager pass 123";

/// Uploads `data` as a complete recording of session `id`; returns the upload id.
async fn record(e: &Exam, student: &str, id: &str, data: &[u8]) -> String {
    let r = e
        .tus(
            Method::POST,
            &format!("/api/v1/sessions/{id}/uploads"),
            student,
        )
        .header("upload-metadata", "kind d2ViY2Ft")
        .header("upload-length", data.len())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let at = r.headers()["location"].to_str().unwrap().to_string();
    let at = at.trim_start_matches(&e.c.base).to_string();
    let r = e
        .tus(Method::PATCH, &at, student)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", 0)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{at}");
    at.rsplit('/').next().unwrap().to_string()
}

async fn attach(e: &Exam, student: &str, id: &str, data: &[u8]) {
    let r = e
        .req(
            Method::POST,
            &format!("/api/v1/sessions/{id}/attachments"),
            student,
        )
        .header("content-type", "text/plain")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn act(e: &Exam, who: &str, id: &str, action: &str) {
    let (s, body) =
        e.c.call(
            Method::POST,
            &format!("/api/v1/sessions/{id}/{action}"),
            who,
            None,
        )
        .await;
    assert_eq!(s, 200, "{action} {id}: {body}");
}

/// Every regular file under `dir`, staging files included.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn marker(name: &str) -> Vec<u8> {
    format!("<<{name}: private exam evidence>>")
        .repeat(300)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_and_retention_leave_nothing_in_either_tier_and_audit_verifies() {
    let cold = tempfile::tempdir().unwrap();
    let cold_dir = cold.path().join("cold");
    let e = exam(&[
        ("COLD_DIR", cold_dir.to_str().unwrap()),
        ("COLD_AFTER", "0"),
    ])
    .await;
    let store = e.d.running.store.clone();
    let objects = e.d.running.objects.clone();
    let manager = e.c.login("manager", PW).await;

    // ann's first session: a recording and an attachment, then moved cold.
    let first = e.id.clone();
    let rec = marker("ann-first");
    let upload = record(&e, &e.ann, &first, &rec).await;
    attach(&e, &e.ann, &first, &marker("ann-attachment")).await;
    act(&e, &e.ann, &first, "stop").await;
    let settings = tiering::Settings {
        after: Duration::ZERO,
        bytes_per_sec: u64::MAX,
    };
    let moved = tiering::move_due(&store, &objects, settings, invigil::auth::now_secs())
        .await
        .unwrap();
    assert_eq!((moved.objects, moved.failed.len()), (2, 0), "{moved:?}");
    assert!(objects.hot().list("sessions").await.unwrap().is_empty());
    // Playback reads the cold tier, Range included.
    let play = format!("/api/v1/sessions/{first}/recordings/{upload}");
    let part = e
        .req(Method::GET, &play, &e.p1)
        .header("range", "bytes=5-24")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &rec[5..25]);

    // ann's second session stays hot; bob has one stopped and one running.
    let (host, second) = e.c.session(&e.admin, "ann", "t", &["p1"]).await;
    e.c.start(&e.ann, &second).await;
    record(&e, &e.ann, &second, &marker("ann-second")).await;
    act(&e, &e.ann, &second, "stop").await;
    let (_, third) = e.c.session(&e.admin, "bob", "t", &["p1"]).await;
    e.c.start(&e.bob, &third).await;
    record(&e, &e.bob, &third, &marker("bob-third")).await;
    act(&e, &e.bob, &third, "stop").await;
    let (_, fourth) = e.c.session(&e.admin, "bob", "t", &["p1"]).await;
    e.c.start(&e.bob, &fourth).await;
    record(&e, &e.bob, &fourth, &marker("bob-fourth")).await;
    assert!(!objects.hot().list("sessions").await.unwrap().is_empty());

    // Erasing one session: a reason is required, a running session is refused,
    // a proctor may not, an administrator may.
    let erase = |id: &str| format!("/api/v1/sessions/{id}");
    let reason = json!({ "reason": "request #41 under GDPR art. 17" });
    let (s, body) =
        e.c.call(
            Method::DELETE,
            &erase(&third),
            &e.admin,
            Some(json!({ "reason": " " })),
        )
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (422, Some("invalid_field")),
        "{body}"
    );
    let (s, body) =
        e.c.call(
            Method::DELETE,
            &erase(&fourth),
            &e.admin,
            Some(reason.clone()),
        )
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (s, _) =
        e.c.call(Method::DELETE, &erase(&third), &e.p1, Some(reason.clone()))
            .await;
    assert_eq!(s, 403);
    let (s, body) =
        e.c.call(
            Method::DELETE,
            &erase(&third),
            &e.admin,
            Some(reason.clone()),
        )
        .await;
    assert_eq!((s, body["objects"].as_u64()), (200, Some(1)), "{body}");
    let (s, _) =
        e.c.call(
            Method::DELETE,
            &erase(&third),
            &e.admin,
            Some(reason.clone()),
        )
        .await;
    assert_eq!(s, 404);

    // Erasing ann: both her sessions (one cold, one hot) and her account.
    let (s, body) =
        e.c.call(
            Method::POST,
            "/api/v1/users/ann/erase",
            &e.admin,
            Some(json!({ "reason": "student left; request #42" })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2, "{body}");
    let (s, _) =
        e.c.call(Method::GET, "/api/v1/users/ann", &e.admin, None)
            .await;
    assert_eq!(s, 404);

    // A session's own remove_at: erased then, even without a host retention.
    let now = invigil::auth::now_secs();
    let new = json!({ "student": "bob", "template": "t", "remove_at": now + 2 });
    let (s, body) =
        e.c.call(Method::POST, "/api/v1/sessions", &e.admin, Some(new))
            .await;
    assert_eq!(s, 201, "{body}");
    let fifth = body["id"].as_str().unwrap().to_string();
    assert!(
        retention::expire(&store, &objects, now)
            .await
            .unwrap()
            .is_empty()
    );
    let gone = retention::expire(&store, &objects, now + 3).await.unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].session, fifth);

    // Retention: the host keeps sessions 0 days; bob's last one expires once stopped.
    let (s, body) =
        e.c.call(
            Method::PATCH,
            &format!("/api/v1/hosts/{host}"),
            &manager,
            Some(json!({ "retention_days": 0 })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let now = invigil::auth::now_secs();
    assert!(
        retention::expire(&store, &objects, now)
            .await
            .unwrap()
            .is_empty()
    );
    act(&e, &e.bob, &fourth, "stop").await;
    let later = invigil::auth::now_secs() + 1;
    let expired = retention::expire(&store, &objects, later).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].session, fourth);

    // No byte left: neither store lists anything, and no file is left on disk.
    let erased = [&first, &second, &third, &fourth, &fifth];
    assert!(objects.list("").await.unwrap().is_empty());
    assert!(objects.cold().unwrap().list("").await.unwrap().is_empty());
    let hot_dir = e.d.data_dir.join("objects");
    for dir in [&hot_dir, &cold_dir] {
        let left = files_under(dir);
        assert!(left.is_empty(), "files left in {}: {left:?}", dir.display());
    }
    for id in erased {
        let (s, _) =
            e.c.call(
                Method::GET,
                &format!("/api/v1/sessions/{id}"),
                &e.admin,
                None,
            )
            .await;
        assert_eq!(s, 404);
    }
    // No store record names an erased session, except the audit entries saying
    // it was erased.
    for tree in catalog::ALL.iter().filter(|t| **t != catalog::AUDIT) {
        for (k, v) in store.scan(*tree, &Scan::all()).unwrap() {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&k),
                String::from_utf8_lossy(&v)
            );
            for id in erased {
                assert!(
                    !text.contains(id.as_str()),
                    "{tree} still names {id}: {text}"
                );
            }
        }
    }

    // The audit: who erased what, when and why — and the chain verifies.
    let entries = audit::list(
        store.as_ref(),
        &host,
        &audit::Filter {
            action: Some("session_erased".into()),
            limit: 100,
            ..audit::Filter::default()
        },
    )
    .unwrap();
    let by: Vec<(String, String, String)> = entries
        .iter()
        .map(|a| {
            (
                a.target.clone(),
                a.actor.clone(),
                a.detail["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(by.len(), 5, "{by:?}");
    assert!(by.contains(&(
        fifth.clone(),
        "retention".into(),
        "the session's remove_at".into()
    )));
    assert!(by.contains(&(
        third.clone(),
        "adm".into(),
        "request #41 under GDPR art. 17".into()
    )));
    assert!(by.contains(&(
        first.clone(),
        "adm".into(),
        "student left; request #42".into()
    )));
    assert!(by.contains(&(
        fourth.clone(),
        "retention".into(),
        "retention of 0 days".into()
    )));
    let users = audit::list(
        store.as_ref(),
        &host,
        &audit::Filter {
            action: Some("user_erased".into()),
            limit: 10,
            ..audit::Filter::default()
        },
    )
    .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].detail["sessions"], "2");
    for entry in entries.iter().chain(&users) {
        let text = serde_json::to_string(entry).unwrap();
        assert!(!text.contains("private exam evidence"), "{text}");
    }
    assert!(audit::verify(store.as_ref(), &host).unwrap() > 0);
    e.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_erasure_is_finished_by_the_sweep() {
    let e = exam(&[]).await;
    let store = e.d.running.store.clone();
    let objects = e.d.running.objects.clone();
    record(&e, &e.ann, &e.id, &marker("left")).await;
    act(&e, &e.ann, &e.id, "stop").await;
    let before = objects.list("sessions").await.unwrap();
    assert_eq!(before.len(), 1);
    // The store half of an erasure committed, then the process died before
    // the objects went: the session's record is gone, its object is not.
    let (_, body) =
        e.c.call(
            Method::GET,
            &format!("/api/v1/sessions/{}", e.id),
            &e.admin,
            None,
        )
        .await;
    let host = body["host_id"].as_str().unwrap().to_string();
    let s = invigil::proctoring::sessions::get(store.as_ref(), &host, &e.id).unwrap();
    store
        .write(|tx| invigil::proctoring::sessions::remove_in(tx, &s))
        .unwrap();
    assert_eq!(retention::sweep_erased(&store, &objects).await.unwrap(), 1);
    assert!(objects.list("").await.unwrap().is_empty());
    assert!(files_under(&e.d.data_dir.join("objects")).is_empty());
    e.d.stop().await;
}
