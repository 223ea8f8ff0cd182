//! `POST /recognize` on a running daemon: the API_KEY check (bearer and the
//! URI's user part), faces of a raw image, verification of a two-file form in
//! the vendor's shape, refusals of bad images (413/422) and 429 with
//! Retry-After when the recognition queue is full.

use crate::harness::{Daemon, error_code};
use base64::Engine as _;
use image::RgbImage;
use std::path::{Path, PathBuf};

const KEY: &str = "RecognizerKey42";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/faces")
        .join(name)
}

fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// An ORL portrait centred on a black canvas twice its size, as PNG.
fn orl(path: &str) -> Vec<u8> {
    let bytes = std::fs::read(data(path)).expect("photo");
    let face = image::load_from_memory(&bytes).expect("pgm").to_rgb8();
    let (w, h) = face.dimensions();
    let mut canvas = RgbImage::new(w * 2, h * 2);
    image::imageops::overlay(&mut canvas, &face, i64::from(w / 2), i64::from(h / 2));
    png(&canvas)
}

fn form(files: &[&[u8]]) -> (String, Vec<u8>) {
    let boundary = "invigil-test-boundary-7f3a";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"position\"\r\n\r\n1\r\n")
            .as_bytes(),
    );
    for (i, file) in files.iter().enumerate() {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image{i}\"; \
                 filename=\"{i}.png\"\r\nContent-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A 16×16 PNG whose header claims `side`×`side` pixels.
fn png_bomb(side: u32) -> Vec<u8> {
    let mut data = png(&RgbImage::new(16, 16));
    data[16..20].copy_from_slice(&side.to_be_bytes());
    data[20..24].copy_from_slice(&side.to_be_bytes());
    let mut crc = 0xFFFF_FFFFu32;
    for &b in &data[12..29] {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    data[29..33].copy_from_slice(&(!crc).to_be_bytes());
    data
}

#[tokio::test]
async fn recognize_lists_faces_verifies_and_refuses_bad_images() {
    let d = Daemon::start(&[("API_KEY", KEY)]).await;
    let url = d.url("/recognize?position=1");
    let portrait = std::fs::read(data("portrait.jpg")).expect("portrait");
    let post = |body: Vec<u8>, content_type: &str| {
        d.client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
    };

    // The key is required, and a wrong one is refused.
    let r = post(portrait.clone(), "image/jpeg")
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(r).await.0, 401);
    let r = post(portrait.clone(), "image/jpeg")
        .bearer_auth("wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(r).await.0, 401);

    // One raw image: its faces.
    let r = post(portrait.clone(), "image/jpeg")
        .bearer_auth(KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    let faces = v["faces"].as_array().expect("faces");
    assert_eq!(faces.len(), 1, "{v}");
    assert!(
        faces[0]["box"]["width"].as_f64().is_some_and(|w| w > 50.0),
        "{v}"
    );

    // Two files of a form, the key as the URI's user part (Basic auth).
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"))
    );
    let (a, b, c) = (
        orl("orl/s1/1.pgm"),
        orl("orl/s1/2.pgm"),
        orl("orl/s2/1.pgm"),
    );
    for (second, same) in [(&b, true), (&c, false)] {
        let (ct, body) = form(&[&a, second]);
        let r = post(body, &ct)
            .header("authorization", &basic)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        let keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys.len(), 5, "{v}");
        assert_eq!(v["verified"], same, "{v}");
        assert_eq!(
            v["threshold"].as_f64().map(|t| (t * 100.0).round()),
            Some(90.0)
        );
        for k in ["distance", "confidence", "similar"] {
            assert!(v[k].is_number(), "{k}: {v}");
        }
    }

    // Bad images: a pixel bomb, a truncated photo, not an image, no face,
    // too many files, no image at all.
    let truncated = portrait[..portrait.len() / 2].to_vec();
    let blank = png(&RgbImage::from_pixel(200, 200, image::Rgb([90, 90, 90])));
    let (ct3, three) = form(&[&a, &b, &c]);
    let cases: Vec<(Vec<u8>, String, u16, &str)> = vec![
        (
            png_bomb(100_000),
            "image/png".into(),
            413,
            "image_too_large",
        ),
        (truncated, "image/jpeg".into(), 422, "corrupt_image"),
        (
            b"hello".to_vec(),
            "image/png".into(),
            422,
            "unsupported_image",
        ),
        (form(&[&a, &blank]).1, form(&[]).0, 422, "no_face"),
        (three, ct3, 422, "unprocessable"),
        (Vec::new(), "image/jpeg".into(), 422, "unprocessable"),
        (
            portrait.clone(),
            "text/plain".into(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (body, ct, status, code) in cases {
        let r = post(body, &ct).bearer_auth(KEY).send().await.expect("send");
        let (s, c, message) = error_code(r).await;
        assert_eq!((s, c.as_str()), (status, code), "{message}");
        assert!(!message.is_empty());
        if code == "no_face" {
            assert!(message.contains("second"), "{message}");
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn recognize_is_off_without_an_api_key() {
    let d = Daemon::start(&[]).await;
    let r = d
        .client
        .post(d.url("/recognize"))
        .header("content-type", "image/jpeg")
        .bearer_auth("anything")
        .body(vec![1, 2, 3])
        .send()
        .await
        .expect("send");
    let (status, _, message) = error_code(r).await;
    assert_eq!(status, 404);
    assert!(message.contains("API_KEY"), "{message}");
    d.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let d = Daemon::start(&[
        ("API_KEY", KEY),
        ("THREADS", "1"),
        ("RECOGNIZER_QUEUE", "1"),
    ])
    .await;
    let group = std::fs::read(data("group.jpg")).expect("group photo");
    let send = || {
        d.client
            .post(d.url("/recognize"))
            .header("content-type", "image/jpeg")
            .bearer_auth(KEY)
            .body(group.clone())
            .send()
    };
    // Load the models first, so the burst below meets a working pool.
    assert_eq!(send().await.expect("send").status(), 200);
    let answers = futures::future::join_all((0..6).map(|_| send())).await;
    let (mut ok, mut busy) = (0, 0);
    for r in answers {
        let r = r.expect("send");
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                let retry = r.headers().get("retry-after").cloned();
                assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
                assert_eq!(error_code(r).await.1, "too_many_requests");
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "{ok} answered, {busy} refused");
    d.stop().await;
}
