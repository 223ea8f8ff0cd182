//! Recognition spread over two real `invigil recognizer` processes on
//! loopback: a daemon with both in `RECOGNIZER_URI` passes `/recognize` and
//! its snapshot analyses to them; one is killed with SIGKILL in the middle of
//! a stream of jobs, every job still completes with the right face count, the
//! dead host is marked down, and it takes work again once restarted; with
//! every host gone the daemon recognises by itself.

use crate::uploads::exam;
use reqwest::Method;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "scale-out-key";

/// One `invigil recognizer` process.
struct Node {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts a recognizer on `port` (0: any free one) and waits for the line
    /// announcing its address.
    fn start(port: u16) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_invigil"));
        command
            .arg("recognizer")
            .env_clear()
            .env("API_KEY", KEY)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            // Plain HTTP, asked for explicitly, on loopback only.
            .env("REVERSE_PROXY", "on")
            .env("THREADS", "1")
            // Room for the test's four streams and the snapshot analyses.
            .env("RECOGNIZER_QUEUE", "16")
            .env("DATA_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(lib) = std::env::var_os("ORT_DYLIB_PATH") {
            command.env("ORT_DYLIB_PATH", lib);
        }
        let mut child = command.spawn().expect("start invigil recognizer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the recognizer announces its address");
        let url = line
            .trim()
            .strip_prefix("invigil recognizer listening on http://127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let port = url
            .trim_end_matches("/recognize")
            .parse()
            .expect("port number");
        Node {
            child,
            port,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        // SIGKILL: no goodbye, connections just break.
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(Path::new("tests/data/faces").join(name)).expect("test photo")
}

/// A grey 320×240 PNG: a snapshot with nobody in it.
fn empty_frame() -> Vec<u8> {
    let image = image::RgbImage::from_pixel(320, 240, image::Rgb([120, 120, 120]));
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

/// Posts one photo to the daemon's `/recognize`; returns the number of faces
/// and who answered.
async fn recognize(client: &reqwest::Client, url: &str, photo: Vec<u8>) -> (usize, String) {
    let r = client
        .post(url)
        .header("content-type", "image/jpeg")
        .bearer_auth(KEY)
        .body(photo)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let by = r
        .headers()
        .get("x-invigil-recognizer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let v: Value = r.json().await.expect("json");
    (v["faces"].as_array().expect("faces").len(), by)
}

/// Runs `n` recognitions, four at a time, alternating the one-face portrait
/// and the six-face group photo; checks every count and returns who answered
/// each. `after` runs once `at` jobs have completed.
async fn stream(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    at: usize,
    mut after: impl FnMut(),
) -> Vec<String> {
    use futures::StreamExt;
    let (portrait, group) = (data("portrait.jpg"), data("group.jpg"));
    let jobs = (0..n).map(|i| {
        let (photo, expected) = if i % 2 == 0 {
            (portrait.clone(), 1)
        } else {
            (group.clone(), 6)
        };
        async move {
            let (faces, by) = recognize(client, url, photo).await;
            assert_eq!(faces, expected, "job {i} answered by {by}");
            by
        }
    });
    let mut results = futures::stream::iter(jobs).buffer_unordered(4);
    let mut by = Vec::new();
    while let Some(host) = results.next().await {
        by.push(host);
        if by.len() == at {
            after();
        }
    }
    by
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < until, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_recognizers_share_the_work_and_survive_a_kill() {
    let mut a = Node::start(0);
    let b = Node::start(0);
    let uri = format!("http://{KEY}@{},{}/recognize", a.host(), b.host());
    let e = exam(&[("API_KEY", KEY), ("RECOGNIZER_URI", uri.as_str())]).await;
    let url = e.d.url("/recognize");
    let remote =
        e.d.running
            .recognizers
            .clone()
            .expect("recognizers configured");
    let healthy = |host: &str| {
        remote
            .status()
            .into_iter()
            .find(|s| s.host == host)
            .is_some_and(|s| s.healthy)
    };

    // Both hosts take work.
    let by = stream(&e.d.client, &url, 8, 0, || {}).await;
    for node in [&a, &b] {
        assert!(by.contains(&node.host()), "{} unused: {by:?}", node.host());
    }

    // Snapshots are counted remotely too: one with a face, one without.
    let snapshot = |bytes: Vec<u8>| {
        let e = &e;
        async move {
            let at = e
                .create(&e.ann, Some(bytes.len()), "snapshot")
                .await
                .headers()["location"]
                .to_str()
                .expect("location")
                .to_string();
            assert_eq!(e.patch(&at, 0, &bytes, None).await.status(), 204);
        }
    };
    snapshot(data("portrait.jpg")).await;
    snapshot(empty_frame()).await;

    // Kill one recognizer while jobs are on their way: none is lost.
    let dead = a.host();
    let by = stream(&e.d.client, &url, 16, 4, || a.kill()).await;
    assert_eq!(by.len(), 16);
    wait_for("the killed host is marked down", || !healthy(&dead)).await;
    let status = remote.status();
    let down = status.iter().find(|s| s.host == dead).expect("listed");
    assert!(
        down.last_error.as_deref().is_some_and(|e| !e.is_empty()),
        "{status:?}"
    );
    let by = stream(&e.d.client, &url, 6, 0, || {}).await;
    assert!(
        by.iter().all(|h| *h == b.host()),
        "jobs went to a dead host: {by:?}"
    );
    snapshot(empty_frame()).await;
    snapshot(data("portrait.jpg")).await;
    // What the snapshot worker asks for: a count on a host, near range.
    let empty = remote
        .count_faces(empty_frame().into())
        .await
        .expect("counted on the live host");
    let one = remote
        .count_faces(data("portrait.jpg").into())
        .await
        .expect("counted on the live host");
    assert_eq!((empty, one), (0, 1));

    // Every snapshot was analysed, in order: c2 is 100 exactly when the
    // frame had no face.
    let until = Instant::now() + Duration::from_secs(60);
    let values = loop {
        let (_, p) =
            e.c.call(
                Method::GET,
                &format!("/api/v1/sessions/{}/protocol?kind=metrics", e.id),
                &e.p1,
                None,
            )
            .await;
        let entries = p.as_array().cloned().unwrap_or_default();
        if entries.len() >= 4 {
            break entries;
        }
        assert!(Instant::now() < until, "snapshots not analysed: {p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let c2: Vec<f64> = values
        .iter()
        .map(|v| v["data"]["values"]["c2"].as_f64().expect("c2"))
        .collect();
    let mut sorted = c2.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(sorted, [0.0, 0.0, 100.0, 100.0], "{values:?}");

    // Restarted on its port, the host is found up and takes work again.
    let port = a.port;
    let a = Node::start(port);
    assert_eq!(a.host(), dead);
    wait_for("the restarted host is marked up", || healthy(&dead)).await;
    let by = stream(&e.d.client, &url, 8, 0, || {}).await;
    assert!(by.contains(&dead), "restarted host unused: {by:?}");

    // With every host gone the daemon recognises by itself.
    drop((a, b));
    let by = stream(&e.d.client, &url, 2, 0, || {}).await;
    assert_eq!(by, ["local", "local"]);
    assert!(matches!(
        remote.count_faces(empty_frame().into()).await,
        Err(invigil::recognize::RemoteError::NoHost(_))
    ));
    e.d.stop().await;
}

#[test]
fn a_recognizer_needs_a_key_and_plain_http_only_on_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_invigil"))
        .arg("recognizer")
        .env_clear()
        .env("DATA_DIR", dir.path())
        .env("HOST", "0.0.0.0")
        .env("PORT", "0")
        .env("REVERSE_PROXY", "on")
        .output()
        .expect("run invigil recognizer");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("API_KEY: `invigil recognizer` serves only with a key"),
        "{err}"
    );
    assert!(
        err.contains("REVERSE_PROXY:") && err.contains("loopback"),
        "{err}"
    );
}

#[tokio::test]
async fn a_recognizer_serves_nothing_but_recognize_and_ping() {
    let node = Node::start(0);
    let base = format!("http://{}", node.host());
    let client = reqwest::Client::new();
    let ping: Value = client
        .get(format!("{base}/ping"))
        .send()
        .await
        .expect("ping")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (ping["status"].as_str(), ping["role"].as_str()),
        (Some("ok"), Some("recognizer"))
    );
    for path in ["/", "/metrics", "/api/v1/sessions", "/login"] {
        let r = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = client
        .post(format!("{base}/recognize"))
        .header("content-type", "image/jpeg")
        // Refused before the body is read (see below): a small body.
        .body(vec![0xff, 0xd8])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401, "the key is required");
    let r = client
        .post(format!("{base}/recognize?range=sideways"))
        .header("content-type", "image/jpeg")
        .bearer_auth(KEY)
        // The query is refused before the body is read, and the server may
        // close the connection at once: a small body arrives whole first.
        .body(vec![0xff, 0xd8])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("body").contains("range"));
}
