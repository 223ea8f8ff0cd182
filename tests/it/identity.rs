//! The student's identity check through the real HTTPS API with the embedded
//! models on real photos (`tests/data/faces`): the face photo against the
//! profile photo, refusals that say why, the document's face, liveness,
//! c4 from a snapshot of another person and c5 within a host only.

use crate::uploads::{Exam, exam};
use image::RgbImage;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/faces")
        .join(name)
}

/// An ORL portrait (cropped tight to the face) centred on a black canvas
/// twice its size, as a webcam frame or a profile photo frames a face.
fn orl(person: u32, n: u32) -> RgbImage {
    let bytes = std::fs::read(data(&format!("orl/s{person}/{n}.pgm"))).unwrap();
    let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
    let (w, h) = image.dimensions();
    let mut canvas = RgbImage::new(w * 2, h * 2);
    image::imageops::overlay(&mut canvas, &image, i64::from(w / 2), i64::from(h / 2));
    canvas
}

/// The same, scaled into a 640×480 frame as a webcam sends it.
fn webcam(person: u32, n: u32) -> RgbImage {
    let face = orl(person, n);
    let scaled = image::imageops::resize(&face, 394, 480, image::imageops::FilterType::Triangle);
    let mut frame = RgbImage::new(640, 480);
    image::imageops::overlay(&mut frame, &scaled, 123, 0);
    frame
}

fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A card with a portrait on its left, as an ID document's photo page.
fn document(face: &RgbImage) -> RgbImage {
    let mut card = RgbImage::from_pixel(640, 400, image::Rgb([225, 220, 200]));
    let portrait = image::imageops::resize(face, 140, 170, image::imageops::FilterType::Triangle);
    image::imageops::overlay(&mut card, &portrait, 40, 110);
    card
}

async fn post_image(e: &Exam, cookie: &str, path: &str, bytes: Vec<u8>) -> (u16, Value) {
    let kind = if bytes.starts_with(&[0xff, 0xd8]) {
        "image/jpeg"
    } else {
        "image/png"
    };
    let r = e
        .req(Method::POST, path, cookie)
        .header("content-type", kind)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn identity(id: &str, tail: &str) -> String {
    format!("/api/v1/sessions/{id}/identity{tail}")
}

#[tokio::test]
async fn the_face_photo_is_checked_and_compared_with_the_profile_photo() {
    let e = exam(&[]).await;
    let face = identity(&e.id, "/face");
    // Ann's profile photo is another photo of the same person.
    let manager = e.c.login("manager", "Manager pass 123").await;
    e.d.running
        .objects
        .put("profiles/ann.png", png(&orl(1, 2)).into())
        .await
        .unwrap();
    let (s, body) =
        e.c.call(
            Method::PATCH,
            "/api/v1/users/ann",
            &manager,
            Some(json!({ "photo": "profiles/ann.png" })),
        )
        .await;
    assert_eq!(s, 200, "{body}");

    // Refusals say why, and keep nothing but the protocol entry.
    let blank = png(&RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128])));
    let (s, a) = post_image(&e, &e.ann, &face, blank).await;
    assert_eq!(
        (s, &a["accepted"], &a["problem"]),
        (200, &json!(false), &json!("no_face")),
        "{a}"
    );
    assert!(a["message"].as_str().unwrap().contains("no face"), "{a}");
    let group = std::fs::read(data("group.jpg")).unwrap();
    let (s, a) = post_image(&e, &e.ann, &face, group).await;
    assert_eq!((s, &a["problem"]), (200, &json!("several_faces")), "{a}");
    assert!(
        a["message"].as_str().unwrap().contains("faces were found"),
        "{a}"
    );
    let (s, a) = post_image(&e, &e.ann, &face, b"not an image".to_vec()).await;
    assert_eq!(
        (s, a["error"].as_str()),
        (422, Some("unsupported_image")),
        "{a}"
    );
    let (_, state) =
        e.c.call(Method::GET, &identity(&e.id, ""), &e.p1, None)
            .await;
    assert!(state["face"].is_null(), "{state}");

    // Ann's own face: accepted, and it matches her profile photo.
    let mine = png(&orl(1, 1));
    let (s, a) = post_image(&e, &e.ann, &face, mine.clone()).await;
    assert_eq!((s, &a["accepted"]), (200, &json!(true)), "{a}");
    assert_eq!(a["profile"]["verified"], true, "{a}");
    for k in ["distance", "threshold", "confidence", "similar"] {
        assert!(a["profile"][k].is_number(), "{k}: {a}");
    }
    // Only the student sends it; the proctor reads it, with the photo.
    let (s, _) = post_image(&e, &e.p1, &face, mine.clone()).await;
    assert_eq!(s, 403);
    let (_, state) =
        e.c.call(Method::GET, &identity(&e.id, ""), &e.p1, None)
            .await;
    assert_eq!(state["face"]["profile"]["verified"], true, "{state}");
    let stored = e.req(Method::GET, &face, &e.p1).send().await.unwrap();
    assert_eq!(stored.status(), 200);
    assert_eq!(stored.headers()["content-type"], "image/png");
    assert_eq!(stored.bytes().await.unwrap().as_ref(), mine.as_slice());
    // The photo is part of the session's evidence bundle.
    let bundle = e
        .req(
            Method::GET,
            &format!("/api/v1/sessions/{}/export", e.id),
            &e.p1,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    let tar = bundle.bytes().await.unwrap();
    let named = |needle: &[u8]| tar.windows(needle.len()).any(|w| w == needle);
    assert!(named(b"/identity/face-"), "no identity photo in the bundle");
    // Bob is not in this session: it does not exist for him.
    let (s, _) =
        e.c.call(Method::GET, &identity(&e.id, ""), &e.bob, None)
            .await;
    assert_eq!(s, 404);
    // Every attempt is in the protocol, the accepted one with its photo.
    let (_, p) =
        e.c.call(
            Method::GET,
            &format!("/api/v1/sessions/{}/protocol?kind=face_check", e.id),
            &e.p1,
            None,
        )
        .await;
    let p = p.as_array().unwrap();
    assert_eq!(p.len(), 3, "{p:?}");
    assert_eq!(p[0]["data"]["accepted"], true);
    assert_eq!(p[0]["attachments"].as_array().unwrap().len(), 1);
    assert_eq!(p[1]["data"]["problem"], "several_faces");

    // Bob's own session, with Ann's face as his profile photo: another
    // person, so not verified.
    let (_, bob_id) = e.c.session(&e.admin, "bob", "t", &["p1"]).await;
    e.c.call(
        Method::PATCH,
        "/api/v1/users/bob",
        &manager,
        Some(json!({ "photo": "profiles/ann.png" })),
    )
    .await;
    let (s, a) = post_image(&e, &e.bob, &identity(&bob_id, "/face"), png(&orl(2, 1))).await;
    assert_eq!((s, &a["accepted"]), (200, &json!(true)), "{a}");
    assert_eq!(a["profile"]["verified"], false, "{a}");
    assert!(
        a["message"].as_str().unwrap().contains("does not match"),
        "{a}"
    );
    // Against the profile photo is c4 (the vendor's "not the profile
    // photo's face"): on Bob's session, not on Ann's.
    for (id, c4) in [(&bob_id, 100.0), (&e.id, 0.0)] {
        let path = format!("/api/v1/sessions/{id}");
        let (_, session) = e.c.call(Method::GET, &path, &e.admin, None).await;
        assert_eq!(session["averages"]["sums"]["c4"][0], c4, "{session}");
    }
    e.d.stop().await;
}

#[tokio::test]
async fn the_document_and_liveness_compare_with_the_face_photo() {
    // Reads documents: on ONNX Runtime when tests/run provides it (see harness).
    let e = exam(&[]).await;
    let doc = identity(&e.id, "/document");
    // Nothing to compare with before the face photo.
    let (s, a) = post_image(&e, &e.ann, &doc, png(&document(&orl(1, 3)))).await;
    assert_eq!((s, a["error"].as_str()), (409, Some("conflict")), "{a}");
    assert!(
        a["message"].as_str().unwrap().contains("face photo first"),
        "{a}"
    );
    let (s, _) = post_image(&e, &e.ann, &identity(&e.id, "/face"), png(&orl(1, 1))).await;
    assert_eq!(s, 200);

    let (s, a) = post_image(&e, &e.ann, &doc, png(&document(&orl(1, 3)))).await;
    assert_eq!((s, &a["accepted"]), (200, &json!(true)), "{a}");
    assert_eq!(a["comparison"]["verified"], true, "{a}");
    assert!(a.as_object().unwrap().contains_key("fields"), "{a}");
    let (s, a) = post_image(&e, &e.ann, &doc, png(&document(&orl(3, 1)))).await;
    assert_eq!(
        (s, &a["comparison"]["verified"]),
        (200, &json!(false)),
        "{a}"
    );
    assert_eq!(a["fields"]["problems"][0]["code"], "no_mrz", "{a}");
    // A passport page of the same person: the face matches and the zone is
    // read with every check digit verified.
    let passport = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/documents/passport_td3.jpg"),
    )
    .unwrap();
    let (s, a) = post_image(&e, &e.ann, &doc, passport).await;
    assert_eq!(
        (s, &a["comparison"]["verified"]),
        (200, &json!(true)),
        "{a}"
    );
    let mrz = &a["fields"]["mrz"];
    assert_eq!(
        (&mrz["surname"], &mrz["document_number"]),
        (&json!("ERIKSSON"), &json!("L898902C3")),
        "{a}"
    );
    let blank = png(&RgbImage::from_pixel(640, 400, image::Rgb([225, 220, 200])));
    let (s, a) = post_image(&e, &e.ann, &doc, blank).await;
    assert_eq!((s, &a["problem"]), (200, &json!("no_face")), "{a}");
    let (_, state) =
        e.c.call(Method::GET, &identity(&e.id, ""), &e.p1, None)
            .await;
    // The proctor sees the last accepted document: the passport, read.
    let last = &state["document"];
    assert_eq!(last["comparison"]["verified"], true, "{state}");
    assert_eq!(last["fields"]["mrz"]["surname"], "ERIKSSON", "{state}");
    let stored = e.req(Method::GET, &doc, &e.p1).send().await.unwrap();
    assert_eq!(stored.status(), 200);

    // Liveness: a still photo held up to the camera never turns.
    let liveness = identity(&e.id, "/liveness");
    let challenge = identity(&e.id, "/liveness/challenge");
    let (s, c) = e.c.call(Method::POST, &challenge, &e.ann, None).await;
    assert_eq!(s, 200, "{c}");
    let turns = c["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert!(turns.iter().all(|t| t == "left" || t == "right"), "{c}");
    let still = base64_png(&orl(1, 1));
    let frames = vec![still; 8];
    let body = json!({ "challenge": c["id"], "frames": frames });
    let (s, a) =
        e.c.call(Method::POST, &liveness, &e.ann, Some(body.clone()))
            .await;
    assert_eq!((s, &a["live"]), (200, &json!(false)), "{a}");
    assert_eq!(a["faces"], 8, "{a}");
    assert!(
        a["reason"].as_str().unwrap().contains("0 of 2 turns"),
        "{a}"
    );
    // The challenge is used up, whatever the answer.
    let (s, a) = e.c.call(Method::POST, &liveness, &e.ann, Some(body)).await;
    assert_eq!(
        (s, a["error"].as_str()),
        (422, Some("invalid_field")),
        "{a}"
    );
    // Frames are bounded and named when wrong.
    let (_, c) = e.c.call(Method::POST, &challenge, &e.ann, None).await;
    let few = json!({ "challenge": c["id"], "frames": ["AAAA"] });
    let (s, a) = e.c.call(Method::POST, &liveness, &e.ann, Some(few)).await;
    assert_eq!(s, 422, "{a}");
    assert!(
        a["message"].as_str().unwrap().contains("5 to 40 frames"),
        "{a}"
    );
    let mut bad = vec![base64_png(&orl(1, 1)); 6];
    bad[4] = "%%%".into();
    let (s, a) =
        e.c.call(
            Method::POST,
            &liveness,
            &e.ann,
            Some(json!({ "challenge": c["id"], "frames": bad })),
        )
        .await;
    assert_eq!(s, 422, "{a}");
    assert!(a["message"].as_str().unwrap().contains("frames[4]"), "{a}");

    // The asked turns, from real photos of the same person turning.
    let (_, c) = e.c.call(Method::POST, &challenge, &e.ann, None).await;
    let frames = turning_frames(&c["turns"]);
    let body = json!({ "challenge": c["id"], "frames": frames });
    let (s, a) = e.c.call(Method::POST, &liveness, &e.ann, Some(body)).await;
    assert_eq!((s, &a["live"]), (200, &json!(true)), "{a}");
    // Someone else turning as asked is not the face of the face photo.
    let (_, c) = e.c.call(Method::POST, &challenge, &e.ann, None).await;
    let (s, a) =
        e.c.call(
            Method::POST,
            &liveness,
            &e.ann,
            Some(json!({ "challenge": c["id"], "frames": other_person_turning(&c["turns"]) })),
        )
        .await;
    assert_eq!((s, &a["live"]), (200, &json!(false)), "{a}");
    assert!(a["reason"].as_str().unwrap().contains("face photo"), "{a}");
    let (_, state) =
        e.c.call(Method::GET, &identity(&e.id, ""), &e.ann, None)
            .await;
    assert_eq!(state["liveness"]["live"], false, "{state}");
    e.d.stop().await;
}

fn base64_png(image: &RgbImage) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(png(image))
}

/// ORL photos of one person facing the camera and turned each way, in the
/// order a challenge asks: facing first, then each turn and back.
struct Poses {
    facing: RgbImage,
    /// Turned to the person's own left (nose towards the image's right).
    left: RgbImage,
    right: RgbImage,
}

impl Poses {
    fn frames(&self, turns: &Value) -> Vec<String> {
        let mut out = vec![base64_png(&self.facing), base64_png(&self.facing)];
        for t in turns.as_array().unwrap() {
            let turned = if t == "left" { &self.left } else { &self.right };
            out.push(base64_png(turned));
            out.push(base64_png(turned));
            out.push(base64_png(&self.facing));
        }
        out
    }
}

/// Ann's person in the ORL set turns both ways on its own photos (yaw from
/// the keypoints: 3.pgm −5°, 2.pgm +32°, 4.pgm −37°).
fn turning_frames(turns: &Value) -> Vec<String> {
    Poses {
        facing: orl(1, 3),
        left: orl(1, 2),
        right: orl(1, 4),
    }
    .frames(turns)
}

/// Another person (s5: 2.pgm −3°, 5.pgm −29°; the left turn is the right
/// one mirrored).
fn other_person_turning(turns: &Value) -> Vec<String> {
    let right = orl(5, 5);
    Poses {
        facing: orl(5, 2),
        left: image::imageops::flip_horizontal(&right),
        right,
    }
    .frames(turns)
}

async fn poll_metric(e: &Exam, id: &str, metric: &str) -> f64 {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, p) =
            e.c.call(
                Method::GET,
                &format!("/api/v1/sessions/{id}/protocol?kind=metrics"),
                &e.p1,
                None,
            )
            .await;
        if let Some(v) = p
            .as_array()
            .and_then(|a| a.iter().find_map(|x| x["data"]["values"][metric].as_f64()))
        {
            return v;
        }
        assert!(Instant::now() < until, "no {metric} within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn c4_on_snapshots_and_c5_within_a_host_only() {
    let e = exam(&[]).await;
    let (s, _) = post_image(&e, &e.ann, &identity(&e.id, "/face"), png(&orl(1, 1))).await;
    assert_eq!(s, 200);
    assert_eq!(poll_metric(&e, &e.id, "c5").await, 0.0);
    // A snapshot of someone else in Ann's seat: c4.
    let other = png(&webcam(2, 1));
    let at = e
        .create(&e.ann, Some(other.len()), "snapshot")
        .await
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(e.patch(&at, 0, &other, None).await.status(), 204);
    assert_eq!(poll_metric(&e, &e.id, "c4").await, 100.0);

    // Bob checks in with Ann's face: c5 on his session, naming hers.
    let (_, bob_id) = e.c.session(&e.admin, "bob", "t", &["p1"]).await;
    let (s, a) = post_image(&e, &e.bob, &identity(&bob_id, "/face"), png(&orl(1, 3))).await;
    assert_eq!(s, 200, "{a}");
    assert!(
        a.get("elsewhere").is_none(),
        "students do not see other sessions: {a}"
    );
    assert_eq!(poll_metric(&e, &bob_id, "c5").await, 100.0);
    let (_, state) =
        e.c.call(Method::GET, &identity(&bob_id, ""), &e.p1, None)
            .await;
    assert_eq!(
        state["face"]["elsewhere"][0]["session"],
        e.id.as_str(),
        "{state}"
    );
    assert_eq!(state["face"]["elsewhere"][0]["student"], "ann", "{state}");
    let (_, mine) =
        e.c.call(Method::GET, &identity(&bob_id, ""), &e.bob, None)
            .await;
    assert_eq!(mine["face"]["elsewhere"], json!([]), "{mine}");

    // The same face on another host is that host's business only.
    let manager = e.c.login("manager", "Manager pass 123").await;
    let (s, made) =
        e.c.call(
            Method::POST,
            "/api/v1/hosts",
            &manager,
            Some(json!({ "domains": [OTHER] })),
        )
        .await;
    assert_eq!(s, 201, "{made}");
    let host_id = made["id"].as_str().unwrap().to_string();
    let first =
        json!({ "username": "oa", "role": "administrator", "password": "Temporary pass 1" });
    let (s, _) =
        e.c.call(
            Method::POST,
            &format!("/api/v1/hosts/{host_id}/users"),
            &manager,
            Some(first),
        )
        .await;
    assert_eq!(s, 201);
    let other = Other { e: &e };
    let admin = other.user_first_sign_in("oa").await;
    let carol = {
        let body =
            json!({ "username": "carol", "role": "student", "password": "Temporary pass 1" });
        assert_eq!(
            other
                .call(Method::POST, "/api/v1/users", &admin, Some(body))
                .await
                .0,
            201
        );
        other.user_first_sign_in("carol").await
    };
    let t = json!({ "id": "t", "name": "t", "addons": { "face_check": true } });
    assert_eq!(
        other
            .call(Method::POST, "/api/v1/templates", &admin, Some(t))
            .await
            .0,
        201
    );
    let (s, made) = other
        .call(
            Method::POST,
            "/api/v1/sessions",
            &admin,
            Some(json!({ "student": "carol", "template": "t" })),
        )
        .await;
    assert_eq!(s, 201, "{made}");
    let carol_id = made["id"].as_str().unwrap().to_string();
    let r = other
        .request(Method::POST, &identity(&carol_id, "/face"), &carol)
        .header("content-type", "image/png")
        .body(png(&orl(1, 4)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, state) = other
        .call(Method::GET, &identity(&carol_id, ""), &admin, None)
        .await;
    assert_eq!(state["face"]["elsewhere"], json!([]), "{state}");
    let (_, session) = other
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{carol_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(session["averages"]["sums"]["c5"][0], 0.0, "{session}");
    e.d.stop().await;
}

const OTHER: &str = "other.test";

/// Requests to the second host (its Host header and Origin).
struct Other<'a> {
    e: &'a Exam,
}

impl Other<'_> {
    fn request(&self, method: Method, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        self.e
            .c
            .http
            .request(method, format!("{}{path}", self.e.c.base))
            .header("host", OTHER)
            .header("origin", format!("https://{OTHER}"))
            .header("cookie", format!("__Host-invigil={cookie}"))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.request(method, path, cookie);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, username: &str, password: &str) -> String {
        let r = self
            .request(Method::POST, "/api/v1/auth/login", "")
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{username}");
        cookie_of(&r)
    }

    /// Signs in with the first password and changes it; the new cookie.
    async fn user_first_sign_in(&self, username: &str) -> String {
        let first = self.login(username, "Temporary pass 1").await;
        let change = json!({ "old": "Temporary pass 1", "new": "Chosen pass 123" });
        let r = self
            .request(Method::POST, "/api/v1/auth/password", &first)
            .json(&change)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        self.login(username, "Chosen pass 123").await
    }
}

fn cookie_of(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-invigil="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .unwrap()
}

#[tokio::test]
async fn a_full_recognition_pool_answers_429_with_retry_after() {
    let e = exam(&[("THREADS", "1"), ("RECOGNIZER_QUEUE", "1")]).await;
    let face = identity(&e.id, "/face");
    let group = std::fs::read(data("group.jpg")).unwrap();
    let send = || {
        e.req(Method::POST, &face, &e.ann)
            .header("content-type", "image/jpeg")
            .body(group.clone())
            .send()
    };
    // Load the models first, so the burst below meets a working pool.
    assert_eq!(send().await.unwrap().status(), 200);
    let answers = futures::future::join_all((0..6).map(|_| send())).await;
    let (mut ok, mut busy) = (0, 0);
    for r in answers {
        let r = r.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                let retry = r.headers().get("retry-after").cloned();
                assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"], "too_many_requests", "{body}");
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "{ok} answered, {busy} refused");
    e.d.stop().await;
}
