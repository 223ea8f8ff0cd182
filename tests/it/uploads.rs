//! Evidence uploads end to end: tus over HTTPS (creation, chunks, repeats,
//! conflicts, checksums, limits, termination), a real tus client (tuspy),
//! snapshots into recognition, and playback with Range through reqwest and
//! curl, with who may do what.

use crate::harness::{Daemon, self_signed_pem};
use crate::rest::Rest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const PW: &str = "Manager pass 123";

/// A started session of ann's, watched by p1, with bob as another student.
pub(crate) struct Exam {
    pub d: Daemon,
    pub c: Rest,
    pub http: reqwest::Client,
    pub id: String,
    pub ann: String,
    pub bob: String,
    pub p1: String,
    pub admin: String,
}

pub(crate) async fn exam(vars: &[(&str, &str)]) -> Exam {
    let mut all = vec![("MANAGER_PASSWORD", PW)];
    all.extend_from_slice(vars);
    let d = Daemon::start(&all).await;
    let c = Rest::new(&d);
    let manager = c.login("manager", PW).await;
    let admin = c.user(&manager, "adm", "administrator", &[]).await;
    let ann = c.user(&manager, "ann", "student", &[]).await;
    let bob = c.user(&manager, "bob", "student", &[]).await;
    let p1 = c.user(&manager, "p1", "proctor", &[]).await;
    c.template(&admin, "t", 10).await;
    let (_, id) = c.session(&admin, "ann", "t", &["p1"]).await;
    c.start(&ann, &id).await;
    let root = reqwest::Certificate::from_pem(&self_signed_pem(&d.data_dir)).unwrap();
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve("localhost", d.running.https_addr)
        .build()
        .unwrap();
    Exam {
        d,
        c,
        http,
        id,
        ann,
        bob,
        p1,
        admin,
    }
}

impl Exam {
    /// A request as a browser on the site's own origin sends it.
    pub fn req(&self, method: Method, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.c.base))
            .header("origin", &self.c.base)
            .header("cookie", format!("__Host-invigil={cookie}"))
    }

    pub fn tus(&self, method: Method, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        self.req(method, path, cookie)
            .header("tus-resumable", "1.0.0")
    }

    /// Creates an upload; returns its path.
    pub async fn create(&self, cookie: &str, length: Option<usize>, kind: &str) -> Response {
        let mut r = self
            .tus(
                Method::POST,
                &format!("/api/v1/sessions/{}/uploads", self.id),
                cookie,
            )
            .header("upload-metadata", format!("kind {}", STANDARD.encode(kind)));
        r = match length {
            Some(n) => r.header("upload-length", n),
            None => r.header("upload-defer-length", "1"),
        };
        r.send().await.unwrap()
    }

    pub async fn patch(
        &self,
        path: &str,
        offset: usize,
        data: &[u8],
        sha: Option<&[u8]>,
    ) -> Response {
        let mut r = self
            .tus(Method::PATCH, path, &self.ann)
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset);
        if let Some(sha) = sha {
            r = r.header(
                "upload-checksum",
                format!("sha256 {}", STANDARD.encode(sha)),
            );
        }
        r.body(data.to_vec()).send().await.unwrap()
    }
}

/// The status a request gets.
async fn status(r: reqwest::RequestBuilder) -> u16 {
    r.send().await.unwrap().status().as_u16()
}

fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn code(r: Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (
        status,
        v["error"].as_str().unwrap_or_default().to_string(),
        v["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn tus_uploads_chunks_durably_and_plays_them_back_with_ranges() {
    let e = exam(&[("UPLOAD_LIMIT", "1")]).await;
    let uploads = format!("/api/v1/sessions/{}/uploads", e.id);

    let opts = e
        .req(Method::OPTIONS, &uploads, &e.ann)
        .send()
        .await
        .unwrap();
    assert_eq!(opts.status(), 204);
    assert_eq!(header(&opts, "tus-version"), "1.0.0");
    assert!(header(&opts, "tus-extension").contains("checksum"));
    assert_eq!(header(&opts, "tus-checksum-algorithm"), "sha256");

    // Who may upload: the session's student, in the protocol's version.
    let no_version = e
        .req(Method::POST, &uploads, &e.ann)
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 412);
    assert_eq!(header(&no_version, "tus-version"), "1.0.0");
    assert_eq!(e.create(&e.bob, Some(10), "webcam").await.status(), 404);
    assert_eq!(e.create(&e.p1, Some(10), "webcam").await.status(), 403);
    let (s, c, m) = code(e.create(&e.ann, Some(10), "film").await).await;
    assert_eq!((s, c.as_str()), (422, "invalid_field"), "{m}");

    let created = e.create(&e.ann, Some(10), "webcam").await;
    assert_eq!(created.status(), 201);
    assert_eq!(header(&created, "tus-resumable"), "1.0.0");
    assert!(header(&created, "upload-expires").ends_with("GMT"));
    let at = header(&created, "location");
    assert!(at.starts_with(&format!("{uploads}/")), "{at}");

    let first = e
        .patch(&at, 0, b"01234", Some(&Sha256::digest(b"01234")))
        .await;
    assert_eq!(first.status(), 204);
    assert_eq!(header(&first, "upload-offset"), "5");
    // The same chunk again (a lost answer): acknowledged, nothing changes.
    let again = e.patch(&at, 0, b"01234", None).await;
    assert_eq!(
        (again.status().as_u16(), header(&again, "upload-offset")),
        (204, "5".into())
    );
    // A wrong offset: 409 with the offset to resume from.
    let wrong = e.patch(&at, 3, b"34567", None).await;
    assert_eq!(header(&wrong, "upload-offset"), "5");
    let (s, c, m) = code(wrong).await;
    assert_eq!((s, c.as_str()), (409, "offset_mismatch"), "{m}");
    // A wrong checksum: 460, and nothing is stored.
    let (s, c, _) = code(e.patch(&at, 5, b"56789", Some(&[0; 32])).await).await;
    assert_eq!((s, c.as_str()), (460, "checksum_mismatch"));
    let plain = e
        .tus(Method::PATCH, &at, &e.ann)
        .header("upload-offset", "5")
        .body("56789")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    // A chunk over UPLOAD_LIMIT (1 MiB) is refused naming the limit.
    let big = e.create(&e.ann, Some(3 << 20), "screen").await;
    let big_at = header(&big, "location");
    let (s, c, m) = code(e.patch(&big_at, 0, &vec![7u8; (1 << 20) + 1], None).await).await;
    assert_eq!((s, c.as_str()), (413, "payload_too_large"));
    assert!(m.contains("UPLOAD_LIMIT (1 MiB)"), "{m}");
    // Another student cannot touch it, staff cannot write to it.
    assert_eq!(status(e.tus(Method::HEAD, &at, &e.bob)).await, 404);
    let staff = e
        .tus(Method::PATCH, &at, &e.p1)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "5")
        .body("56789")
        .send()
        .await
        .unwrap();
    assert_eq!(staff.status(), 403);

    let head = e.tus(Method::HEAD, &at, &e.ann).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "upload-offset"), "5");
    assert_eq!(header(&head, "upload-length"), "10");
    assert_eq!(header(&head, "cache-control"), "no-store");
    assert_eq!(
        header(&head, "upload-metadata"),
        format!("kind {}", STANDARD.encode("webcam"))
    );
    let last = e.patch(&at, 5, b"56789", None).await;
    assert_eq!(header(&last, "upload-offset"), "10");
    assert!(
        header(&last, "upload-expires").is_empty(),
        "complete: no expiry"
    );
    // A complete upload is evidence: the student cannot delete it; an
    // incomplete one they can.
    assert_eq!(status(e.tus(Method::DELETE, &at, &e.ann)).await, 409);
    assert_eq!(status(e.tus(Method::DELETE, &big_at, &e.ann)).await, 204);
    assert_eq!(status(e.tus(Method::HEAD, &big_at, &e.ann)).await, 404);

    // Playback for the staff, with ranges and validators.
    let id = at.rsplit('/').next().unwrap();
    let play = format!("/api/v1/sessions/{}/recordings/{id}", e.id);
    let whole = e.req(Method::GET, &play, &e.p1).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(header(&whole, "accept-ranges"), "bytes");
    assert_eq!(header(&whole, "content-type"), "video/webm");
    let etag = header(&whole, "etag");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), b"0123456789");
    let part = e
        .req(Method::GET, &play, &e.p1)
        .header("range", "bytes=3-6")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(header(&part, "content-range"), "bytes 3-6/10");
    assert_eq!(part.bytes().await.unwrap().as_ref(), b"3456");
    let beyond = e
        .req(Method::GET, &play, &e.p1)
        .header("range", "bytes=20-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(header(&beyond, "content-range"), "bytes */10");
    let cached = e
        .req(Method::GET, &play, &e.p1)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    let stale = e
        .req(Method::GET, &play, &e.p1)
        .header("range", "bytes=0-1")
        .header("if-range", "\"old\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    // The student uploads but does not review; nobody else sees it.
    assert_eq!(status(e.req(Method::GET, &play, &e.ann)).await, 403);
    assert_eq!(status(e.req(Method::GET, &play, &e.bob)).await, 403);

    // curl, as any HTTP client would seek.
    let cert = e.d.data_dir.join("tls/self-signed.crt");
    let port = e.d.running.https_addr.port();
    // The daemon runs on this test's thread: curl must be awaited, not waited for.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
        .arg(&cert)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-r", "2-7", "-H"])
        .arg(format!("cookie: __Host-invigil={}", e.p1))
        .args(["-D", "-"])
        .arg(format!("{}{play}", e.c.base))
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("HTTP/2 206") || text.starts_with("HTTP/1.1 206"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("content-range: bytes 2-7/10"),
        "{text}"
    );
    assert!(text.ends_with("234567"), "{text}");

    // The listing and the protocol: every chunk with its hash, the chain verifies.
    let (s, listed) = e.c.call(Method::GET, &uploads, &e.p1, None).await;
    assert_eq!(s, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["complete"], true);
    let (_, protocol) =
        e.c.call(
            Method::GET,
            &format!("/api/v1/sessions/{}/protocol?kind=upload", e.id),
            &e.p1,
            None,
        )
        .await;
    let hashes: Vec<&str> = protocol
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["data"]["sha256"].as_str())
        .collect();
    assert_eq!(
        hashes,
        [
            hex::encode(Sha256::digest(b"56789")),
            hex::encode(Sha256::digest(b"01234"))
        ]
    );

    // A stopped session takes no new uploads; one begun before the stop is
    // still completed (the browser may have been offline at the stop).
    let open = header(&e.create(&e.ann, Some(4), "webcam").await, "location");
    let (s, _) =
        e.c.call(
            Method::POST,
            &format!("/api/v1/sessions/{}/stop", e.id),
            &e.ann,
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(e.patch(&open, 0, b"abcd", None).await.status(), 204);
    let r = e.create(&e.ann, Some(4), "webcam").await;
    let (s, c, m) = code(r).await;
    assert_eq!((s, c.as_str()), (409, "illegal_transition"), "{m}");
    e.d.stop().await;
}

#[tokio::test]
async fn snapshots_are_checked_stored_and_analysed() {
    let e = exam(&[]).await;
    let photo = std::fs::read("tests/data/faces/portrait.jpg").unwrap();
    let at = header(
        &e.create(&e.ann, Some(photo.len()), "snapshot").await,
        "location",
    );
    // In two chunks; the whole is checked when the last one arrives.
    let half = photo.len() / 2;
    assert_eq!(e.patch(&at, 0, &photo[..half], None).await.status(), 204);
    assert_eq!(e.patch(&at, half, &photo[half..], None).await.status(), 204);
    let id = at.rsplit('/').next().unwrap();
    let view = format!("/api/v1/sessions/{}/snapshots/{id}", e.id);
    let got = e.req(Method::GET, &view, &e.p1).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(header(&got, "content-type"), "image/jpeg");
    assert_eq!(got.bytes().await.unwrap().as_ref(), photo.as_slice());
    // A snapshot is not a recording.
    let wrong = format!("/api/v1/sessions/{}/recordings/{id}", e.id);
    assert_eq!(status(e.req(Method::GET, &wrong, &e.p1)).await, 404);

    // A pixel bomb: a few dozen bytes declaring 50000×50000, refused unread.
    let bomb = pixel_bomb();
    let bomb_at = header(
        &e.create(&e.ann, Some(bomb.len()), "snapshot").await,
        "location",
    );
    let (s, c, m) = code(e.patch(&bomb_at, 0, &bomb, None).await).await;
    assert_eq!((s, c.as_str()), (422, "invalid_field"));
    assert!(m.contains("50000×50000"), "{m}");
    let (s, _, m) = code(e.create(&e.ann, Some(9 << 20), "snapshot").await).await;
    assert_eq!(s, 413, "{m}");

    // The recognizer looks at the stored snapshot: one face, so c2 and c3 are 0.
    let until = Instant::now() + Duration::from_secs(60);
    let entry = loop {
        let (_, p) =
            e.c.call(
                Method::GET,
                &format!("/api/v1/sessions/{}/protocol?kind=metrics", e.id),
                &e.p1,
                None,
            )
            .await;
        if let Some(first) = p.as_array().and_then(|a| a.first()).cloned() {
            break first;
        }
        assert!(Instant::now() < until, "no analysis within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(entry["author"], "invigil");
    assert_eq!(entry["data"]["values"]["c2"], 0.0);
    assert_eq!(entry["data"]["values"]["c3"], 0.0);
    let _ = &e.admin;
    e.d.stop().await;
}

/// A PNG declaring 50000×50000 pixels in a few dozen bytes.
fn pixel_bomb() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/images/pixel-bomb-50000x50000.png"
    ))
    .unwrap()
}

#[tokio::test]
async fn tuspy_uploads_with_pauses_resumes_and_a_repeated_chunk() {
    let venv = std::env::var("INVIGIL_TEST_VENV").expect("INVIGIL_TEST_VENV (set by tests/run)");
    let e = exam(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webcam.webm");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let endpoint = format!("{}/api/v1/sessions/{}/uploads", e.c.base, e.id);
    let out = tokio::process::Command::new(format!("{venv}/bin/python"))
        .arg("tests/scripts/tus_upload.py")
        .args([&endpoint, &e.ann])
        .arg(&file)
        .arg("16384")
        .env(
            "REQUESTS_CA_BUNDLE",
            e.d.data_dir.join("tls/self-signed.crt"),
        )
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout.trim().rsplit('/').next().unwrap();
    let play = format!("/api/v1/sessions/{}/recordings/{id}", e.id);
    let got = e.req(Method::GET, &play, &e.p1).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
    let (_, protocol) =
        e.c.call(
            Method::GET,
            &format!("/api/v1/sessions/{}/protocol?kind=upload", e.id),
            &e.p1,
            None,
        )
        .await;
    // 100,000 bytes in 16 KiB chunks: 7 chunks, the repeat not counted twice.
    assert_eq!(protocol.as_array().unwrap().len(), 7, "{protocol}");
    e.d.stop().await;
}
