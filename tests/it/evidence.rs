//! Evidence end to end: a bundle exported through the API and checked by the
//! `invigil verify-bundle` binary, then tampered with; the offline export;
//! the report page and CSV; webhooks delivered to a loopback receiver whose
//! signature check is written here independently, retried after a 500, and
//! delivered after a restart.

use crate::blackbox::invigil;
use crate::harness::{Daemon, config};
use crate::rest::Rest;
use axum::extract::State;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PW: &str = "Manager pass 123";

/// An exam that ran, was stopped and concluded, with two objects stored
/// under its prefix. Returns (admin cookie, student cookie, session id).
async fn finished_exam(d: &Daemon, c: &Rest, manager: &str) -> (String, String, String) {
    let admin = c.user(manager, "adm", "administrator", &[]).await;
    let ann = c.user(manager, "ann", "student", &[]).await;
    c.template(&admin, "final", 10).await;
    let new = json!({ "student": "ann", "subject": "Chemistry", "template": "final", "identifier": "lms-7" });
    let (s, body) = c
        .call(Method::POST, "/api/v1/sessions", &admin, Some(new))
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    c.start(&ann, &id).await;
    let period = json!({ "values": { "b2": 40 } });
    let path = format!("/api/v1/sessions/{id}/periods");
    assert_eq!(c.call(Method::POST, &path, &ann, Some(period)).await.0, 200);
    let stop = format!("/api/v1/sessions/{id}/stop");
    assert_eq!(c.call(Method::POST, &stop, &admin, None).await.0, 200);
    let conclude = format!("/api/v1/sessions/{id}/conclude");
    let verdict = json!({ "positive": true, "comment": "calm and fine" });
    assert_eq!(
        c.call(Method::POST, &conclude, &admin, Some(verdict))
            .await
            .0,
        200
    );
    let prefix = format!("sessions/{}/{id}/", body["host_id"].as_str().unwrap());
    let objects = &d.running.objects;
    objects
        .put(
            &format!("{prefix}recordings/webcam-1.webm"),
            Bytes::from(b"WEBM-CHUNK-UNIQUE-0123456789".repeat(40)),
        )
        .await
        .unwrap();
    objects
        .put(
            &format!("{prefix}snapshots/1.jpg"),
            Bytes::from_static(b"\xff\xd8 snapshot"),
        )
        .await
        .unwrap();
    (admin, ann, id)
}

async fn get_bytes(d: &Daemon, c: &Rest, path: &str, cookie: &str) -> reqwest::Response {
    d.client
        .get(format!("{}{path}", c.base))
        .header("cookie", format!("__Host-invigil={cookie}"))
        .send()
        .await
        .unwrap()
}

fn verify_cli(file: &Path, key: Option<&str>) -> (i32, String) {
    let mut cmd = invigil(Path::new("/nonexistent-data-dir"));
    cmd.arg("verify-bundle").arg(file);
    if let Some(k) = key {
        cmd.args(["--key", k]);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Flips the first occurrence of `needle` in the file to `replacement`.
fn patch(file: &Path, needle: &[u8], replacement: &[u8]) -> std::path::PathBuf {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in bundle");
    bytes[at..at + replacement.len()].copy_from_slice(replacement);
    let out = file.with_extension("tampered.tar");
    std::fs::write(&out, bytes).unwrap();
    out
}

#[tokio::test]
async fn export_verify_tamper_offline_export_and_reports() {
    let d = Daemon::start(&[("MANAGER_PASSWORD", PW)]).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let (admin, ann, id) = finished_exam(&d, &c, &manager).await;

    let r = get_bytes(&d, &c, &format!("/api/v1/sessions/{id}/export"), &admin).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-tar");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disposition.contains(&format!("{id}.tar")), "{disposition}");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("bundle.tar");
    std::fs::write(&file, r.bytes().await.unwrap()).unwrap();

    // The student may not export; nobody sees another's session.
    let denied = get_bytes(&d, &c, &format!("/api/v1/sessions/{id}/export"), &ann).await;
    assert_eq!(denied.status(), 403);
    let missing = get_bytes(&d, &c, "/api/v1/sessions/nosuch/export", &admin).await;
    assert_eq!(missing.status(), 404);

    let (code, out) = verify_cli(&file, None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK: session") && out.contains("NOT pinned"),
        "{out}"
    );
    let shown = invigil(&d.data_dir)
        .args(["export", "--show-key"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    let key = shown
        .lines()
        .find_map(|l| l.strip_prefix("public key:"))
        .unwrap()
        .trim()
        .to_string();
    let fingerprint = shown
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint:"))
        .unwrap()
        .trim()
        .to_string();
    let (code, out) = verify_cli(&file, Some(&key));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("signed by {fingerprint} (the given key)")),
        "{out}"
    );

    // Tampering: a byte of a recording, a protocol entry, a wrong key.
    let (code, out) = verify_cli(
        &patch(&file, b"WEBM-CHUNK-UNIQUE", b"WEBM-CHUNK-UNIQUF"),
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("recordings/webcam-1.webm: content does not match"),
        "{out}"
    );
    let (code, out) = verify_cli(&patch(&file, b"calm and fine", b"calm and FINE"), None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("protocol.jsonl line 5: entry #5"), "{out}");
    let stranger = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    let (code, out) = verify_cli(&file, Some(&stranger));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("not signed by the given key"), "{out}");

    // The report page and the CSV export.
    let report = get_bytes(&d, &c, &format!("/api/v1/sessions/{id}/report"), &admin).await;
    assert_eq!(report.status(), 200);
    assert!(
        report.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = report.text().await.unwrap();
    for part in [
        "Chemistry",
        "calm and fine",
        "snapshots/1.jpg",
        "hash chain verifies",
    ] {
        assert!(page.contains(part), "{part} missing from the report");
    }
    let (s, csv) = c
        .call(
            Method::GET,
            "/api/v1/reports/sessions.csv?status=concluded&score_min=50",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 200);
    let csv = csv.as_str().unwrap().to_string();
    assert!(
        csv.starts_with("id,identifier,student") && csv.contains(&id),
        "{csv}"
    );
    let (s, none) = c
        .call(
            Method::GET,
            "/api/v1/reports/sessions.csv?status=started",
            &admin,
            None,
        )
        .await;
    assert_eq!((s, none.as_str().unwrap().lines().count()), (200, 1));
    let (s, bad) = c
        .call(
            Method::GET,
            "/api/v1/reports/sessions.csv?score_min=high",
            &admin,
            None,
        )
        .await;
    assert_eq!((s, bad["error"].as_str()), (422, Some("invalid_field")));
    assert!(
        bad["message"].as_str().unwrap().starts_with("score_min"),
        "{bad}"
    );

    // Offline export: refused while the server holds the directory, then
    // made with it stopped, and it verifies against the pinned key.
    let out_file = work.path().join("offline.tar");
    let busy = invigil(&d.data_dir)
        .args(["export", &id, "--out"])
        .arg(&out_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert_eq!(busy.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already using") && stderr.contains("/export"),
        "{stderr}"
    );
    let data_dir = d.data_dir.clone();
    // Stops the server; the temporary directory lives on with `d`.
    d.running.stop().await;
    let done = invigil(&data_dir)
        .args(["export", &id, "--out"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let (code, out) = verify_cli(&out_file, Some(&key));
    assert_eq!(code, 0, "{out}");
}

/// A loopback receiver: answers with the queued statuses (then `fallback`),
/// records every request.
#[derive(Clone, Default)]
struct Receiver {
    answers: Arc<Mutex<VecDeque<u16>>>,
    fallback: Arc<Mutex<u16>>,
    seen: Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: http::HeaderMap,
    body: Bytes,
) -> http::StatusCode {
    r.seen.lock().unwrap().push((headers, body));
    let next = r.answers.lock().unwrap().pop_front();
    let code = next.unwrap_or(*r.fallback.lock().unwrap());
    http::StatusCode::from_u16(code).unwrap()
}

async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    *r.fallback.lock().unwrap() = 200;
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

/// The Standard Webhooks check, written from the specification.
fn signature_ok(secret: &str, headers: &http::HeaderMap, body: &[u8]) -> bool {
    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", h("webhook-id"), h("webhook-timestamp")).as_bytes());
    mac.update(body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    h("webhook-signature").split(' ').any(|s| s == expected)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events(r: &Receiver, kind: &str) -> Vec<(http::HeaderMap, Bytes)> {
    r.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["type"] == kind)
        .cloned()
        .collect()
}

async fn start_daemon(dir: &Path) -> Daemon {
    let mut cfg = config(dir, &[("MANAGER_PASSWORD", PW)]);
    cfg.webhook_retry_after = Duration::from_millis(200);
    Daemon::start_config(dir, cfg).await.unwrap()
}

#[tokio::test]
async fn webhooks_are_signed_retried_refused_by_policy_and_survive_a_restart() {
    let (receiver, url) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let d = start_daemon(dir.path()).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let (_, hosts) = c.call(Method::GET, "/api/v1/hosts", &manager, None).await;
    let host_id = hosts[0]["id"].as_str().unwrap().to_string();
    let host_path = format!("/api/v1/hosts/{host_id}");
    let set = json!({ "webhook_url": url, "webhook_allow_private": false });
    let (s, host) = c.call(Method::PATCH, &host_path, &manager, Some(set)).await;
    assert_eq!(s, 200, "{host}");
    let bad = json!({ "webhook_url": "ftp://lms.example.org/x" });
    let (s, _) = c.call(Method::PATCH, &host_path, &manager, Some(bad)).await;
    assert_eq!(s, 422);
    let (s, secret) = c
        .call(Method::POST, "/api/v1/webhooks/secret", &manager, None)
        .await;
    assert_eq!(s, 201);
    let secret = secret["secret"].as_str().unwrap().to_string();

    // Without the allowance, loopback is refused before any connection.
    let admin = c.user(&manager, "adm", "administrator", &[]).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    c.template(&admin, "final", 10).await;
    let new = json!({ "student": "ann", "template": "final", "identifier": "lms-7" });
    let (_, session) = c
        .call(Method::POST, "/api/v1/sessions", &admin, Some(new))
        .await;
    let id = session["id"].as_str().unwrap().to_string();
    c.start(&ann, &id).await;
    let period = json!({ "values": { "b2": 40 } });
    let periods = format!("/api/v1/sessions/{id}/periods");
    assert_eq!(
        c.call(Method::POST, &periods, &ann, Some(period)).await.0,
        200
    );
    receiver.answers.lock().unwrap().push_back(500);
    let stop = format!("/api/v1/sessions/{id}/stop");
    assert_eq!(c.call(Method::POST, &stop, &admin, None).await.0, 200);
    let mut refusal = String::new();
    let until = Instant::now() + Duration::from_secs(10);
    while refusal.is_empty() {
        assert!(Instant::now() < until, "no refusal recorded");
        let (_, outbox) = c.call(Method::GET, "/api/v1/webhooks", &admin, None).await;
        refusal = outbox["messages"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refusal.contains("127.0.0.1 is refused: Loopback"),
        "{refusal}"
    );
    assert!(
        receiver.seen.lock().unwrap().is_empty(),
        "nothing reached the wire"
    );

    // With it: the first answer is 500, the retry is delivered.
    let allow = json!({ "webhook_allow_private": true });
    assert_eq!(
        c.call(Method::PATCH, &host_path, &manager, Some(allow))
            .await
            .0,
        200
    );
    wait_for("the retry after a 500", || {
        events(&receiver, "session.stopped").len() >= 2
    })
    .await;
    let stopped = events(&receiver, "session.stopped");
    assert_eq!(
        stopped[0].0["webhook-id"], stopped[1].0["webhook-id"],
        "same id on retry"
    );
    for (headers, body) in &stopped {
        assert!(signature_ok(&secret, headers, body), "bad signature");
        assert_eq!(headers["content-type"], "application/json");
    }
    assert!(!signature_ok(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &stopped[0].0,
        &stopped[0].1
    ));
    let body: Value = serde_json::from_slice(&stopped[1].1).unwrap();
    assert_eq!(body["data"]["identifier"], "lms-7");
    assert_eq!(body["data"]["status"], "stopped");
    assert_eq!(body["data"]["score"], 80.0);
    assert_eq!(body["data"]["terms"][0]["metric"], "b2");

    // The conclusion fails once, the daemon restarts, and it is delivered.
    *receiver.fallback.lock().unwrap() = 503;
    let conclude = format!("/api/v1/sessions/{id}/conclude");
    let verdict = json!({ "positive": false, "comment": "phone on desk" });
    assert_eq!(
        c.call(Method::POST, &conclude, &admin, Some(verdict))
            .await
            .0,
        200
    );
    wait_for("the first conclusion attempt", || {
        !events(&receiver, "session.concluded").is_empty()
    })
    .await;
    d.stop().await;
    *receiver.fallback.lock().unwrap() = 200;
    let failed_before = events(&receiver, "session.concluded").len();
    let d = start_daemon(dir.path()).await;
    wait_for("delivery after the restart", || {
        events(&receiver, "session.concluded").len() > failed_before
    })
    .await;
    let concluded = events(&receiver, "session.concluded");
    let (headers, body) = concluded.last().unwrap();
    assert!(signature_ok(&secret, headers, body));
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["data"]["conclusion"]["positive"], false);
    assert_eq!(body["data"]["conclusion"]["comment"], "phone on desk");
    let c = Rest::new(&d);
    let admin = c.login("adm", "Chosen pass 123").await;
    let mut left = usize::MAX;
    let until = Instant::now() + Duration::from_secs(5);
    while left > 0 && Instant::now() < until {
        let (_, outbox) = c.call(Method::GET, "/api/v1/webhooks", &admin, None).await;
        left = outbox["messages"].as_array().unwrap().len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "delivered messages leave the outbox");
    d.stop().await;
}
