//! ID documents: PP-OCRv4 reads the machine-readable zone of rendered
//! specimen documents (`tests/data/documents`) exactly, the zone's fields
//! and check digits come out right, the document's face matches another
//! photo of the same person and not someone else's, a photo without a
//! document is an answer naming what is missing, ONNX Runtime and tract read
//! the same text, and `POST /recognize?mode=document` serves it all.

use crate::harness::{Daemon, error_code};
use image::RgbImage;
use invigil::recognize::document::{self, Document, ProblemCode};
use invigil::recognize::mrz::Format;
use invigil::recognize::ocr::Ocr;
use invigil::recognize::{Engine, OrtEngine, Recognizer, TractEngine};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

const TD3: [&str; 2] = [
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
];
const TD1: [&str; 3] = [
    "I<UTOD231458907<<<<<<<<<<<<<<<",
    "7408122F1204159UTO<<<<<<<<<<<6",
    "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
];

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

struct Models {
    recognizer: Recognizer,
    ocr: Ocr,
}

fn models_on(engine: &dyn Engine) -> Models {
    Models {
        recognizer: Recognizer::with_engine(engine).expect("face models"),
        ocr: Ocr::with_engine(engine).expect("ocr models"),
    }
}

fn tract() -> &'static Models {
    static M: OnceLock<Models> = OnceLock::new();
    M.get_or_init(|| models_on(&TractEngine))
}

/// The models on ONNX Runtime where its library is present (see
/// `recognize_ort.rs`); under CI its absence is a failure.
fn ort() -> Option<&'static Models> {
    static M: OnceLock<Option<Models>> = OnceLock::new();
    M.get_or_init(|| {
        let path = std::env::var_os("ORT_DYLIB_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/onnxruntime/libonnxruntime.so")
            });
        if !path.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} is missing: tests/run fetches it",
                path.display()
            );
            eprintln!("skipped: no ONNX Runtime library at {}", path.display());
            return None;
        }
        let engine = OrtEngine::load_library(&path, 1).expect("ONNX Runtime loads");
        Some(models_on(&engine))
    })
    .as_ref()
}

fn load(m: &Models, path: &str) -> RgbImage {
    let bytes = std::fs::read(data(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    m.recognizer
        .decode(&bytes)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An ORL portrait centred on a black canvas twice its size, as a live photo.
fn live(m: &Models, path: &str) -> RgbImage {
    let face = load(m, path);
    let (w, h) = face.dimensions();
    let mut canvas = RgbImage::new(w * 2, h * 2);
    image::imageops::overlay(&mut canvas, &face, i64::from(w / 2), i64::from(h / 2));
    canvas
}

fn read(m: &Models, path: &str) -> Document {
    let image = load(m, path);
    document::read(&m.recognizer, &m.ocr, &image).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A document read once on tract and shared by the tests (tract is slow in
/// the unoptimised test build).
fn read_on_tract(path: &'static str) -> Document {
    static READ: Mutex<BTreeMap<&'static str, Document>> = Mutex::new(BTreeMap::new());
    let mut done = READ.lock().unwrap_or_else(PoisonError::into_inner);
    done.entry(path)
        .or_insert_with(|| read(tract(), path))
        .clone()
}

fn texts(doc: &Document) -> Vec<&str> {
    doc.lines.iter().map(|l| l.text.as_str()).collect()
}

#[test]
fn the_passport_zone_is_read_exactly_and_verified() {
    let doc = read_on_tract("documents/passport_td3.jpg");
    assert_eq!(doc.mrz_lines, TD3, "lines read: {:?}", texts(&doc));
    assert!(doc.problems.is_empty(), "{:?}", doc.problems);
    let mrz = doc.mrz.as_ref().expect("a verified zone");
    assert_eq!(mrz.format, Format::TD3);
    assert_eq!(
        (
            mrz.document_code.as_str(),
            mrz.issuing_state.as_str(),
            mrz.surname.as_str(),
            mrz.given_names.as_str(),
        ),
        ("P", "UTO", "ERIKSSON", "ANNA MARIA")
    );
    assert_eq!(mrz.document_number, "L898902C3");
    assert_eq!(mrz.nationality, "UTO");
    assert_eq!(
        (
            mrz.birth_date.as_str(),
            mrz.sex.as_str(),
            mrz.expiry_date.as_str()
        ),
        ("740812", "F", "120415")
    );
    assert_eq!(mrz.optional_data, "ZE184226B");
    // The printed text is read too, with boxes inside the photo.
    let all = texts(&doc).join(" ");
    assert!(
        all.contains("ERIKSSON") && all.contains("12AUG1974"),
        "{all}"
    );
    for line in &doc.lines {
        assert!(line.confidence >= 0.5 && line.confidence <= 1.0, "{line:?}");
        for [x, y] in line.quad.0 {
            assert!(
                (0.0..=1244.0).contains(&x) && (0.0..=818.0).contains(&y),
                "{line:?}"
            );
        }
    }
}

#[test]
fn the_id_card_zone_is_read_exactly_and_verified() {
    let doc = read_on_tract("documents/idcard_td1.jpg");
    assert_eq!(doc.mrz_lines, TD1, "lines read: {:?}", texts(&doc));
    let mrz = doc.mrz.as_ref().expect("a verified zone");
    assert_eq!(mrz.format, Format::TD1);
    assert_eq!(mrz.document_code, "I");
    assert_eq!(mrz.document_number, "D23145890");
    assert_eq!(
        (mrz.surname.as_str(), mrz.given_names.as_str()),
        ("ERIKSSON", "ANNA MARIA")
    );
    assert_eq!(
        (mrz.birth_date.as_str(), mrz.expiry_date.as_str()),
        ("740812", "120415")
    );
}

#[test]
fn the_document_face_matches_its_holder_and_no_one_else() {
    let m = tract();
    for (document, holder, other) in [
        (
            "documents/passport_td3.jpg",
            "faces/orl/s1/2.pgm",
            "faces/orl/s2/2.pgm",
        ),
        (
            "documents/idcard_td1.jpg",
            "faces/orl/s2/2.pgm",
            "faces/orl/s1/2.pgm",
        ),
    ] {
        let mut doc = read_on_tract(document);
        let face = doc.face.clone().expect("a face on the document");
        // The photo sits in the card's left part, well inside it.
        assert!(face.bbox.x < 400.0 && face.bbox.width > 60.0, "{face:?}");
        let same = doc
            .match_face(&m.recognizer, &live(m, holder))
            .expect("match");
        assert!(same.verified, "{document} vs {holder}: {same:?}");
        let different = doc
            .match_face(&m.recognizer, &live(m, other))
            .expect("match");
        assert!(!different.verified, "{document} vs {other}: {different:?}");
        println!(
            "{document}: holder distance {:.3}, other person {:.3} (threshold {:.2})",
            same.distance, different.distance, same.threshold
        );
    }
}

#[test]
fn a_document_upside_down_is_read_turned() {
    let m = tract();
    let image = image::imageops::rotate180(&load(m, "documents/idcard_td1.jpg"));
    let doc = document::read(&m.recognizer, &m.ocr, &image).expect("read");
    assert!(doc.upside_down);
    assert_eq!(doc.mrz_lines, TD1, "lines read: {:?}", texts(&doc));
    // Boxes are in the photo's pixels: the zone is now at the top, and its
    // text starts on the right.
    let zone = doc.lines.last().expect("lines");
    let [start, end, ..] = zone.quad.0;
    assert!(start[1] < 300.0 && start[0] > end[0], "{zone:?}");
    let face = doc.face.as_ref().expect("the face is found turned too");
    assert!(face.bbox.x > 600.0, "{face:?}");
}

#[test]
fn a_photo_without_a_document_is_an_answer_not_an_error() {
    let m = tract();
    let doc = read(m, "faces/portrait.jpg");
    assert!(doc.mrz.is_none() && doc.mrz_lines.is_empty());
    assert!(doc.has(ProblemCode::NoMrz), "{:?}", doc.problems);
    assert!(doc.face.is_some(), "the portrait's face is still found");
    let json = serde_json::to_value(&doc).expect("json");
    assert_eq!(json["problems"][0]["code"], "no_mrz", "{json}");
    assert!(json["mrz"].is_null());
    assert_eq!(json["upside_down"], false);
}

/// Both engines read the same text at the same places; prints the time per
/// document on each (`cargo test --test it documents -- --nocapture`).
#[test]
fn ort_and_tract_read_the_same_documents() {
    let Some(o) = ort() else { return };
    let t = tract();
    for path in ["documents/passport_td3.jpg", "documents/idcard_td1.jpg"] {
        let mut timed = Vec::new();
        for (name, m, runs) in [("tract", t, 1), ("onnxruntime", o, 3)] {
            let image = load(m, path);
            // The models are loaded and warm (other runs came first on
            // ONNX Runtime); tract is timed once, it is slow unoptimised.
            document::read(&m.recognizer, &m.ocr, &load(m, "faces/portrait.jpg")).expect("read");
            let start = Instant::now();
            let mut doc = None;
            for _ in 0..runs {
                doc = Some(document::read(&m.recognizer, &m.ocr, &image).expect("read"));
            }
            let ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
            println!("{path}: {name} {ms:.0} ms per document");
            timed.push(doc.expect("read"));
        }
        let (a, b) = (&timed[0], &timed[1]);
        assert_eq!(texts(a), texts(b), "{path}");
        assert_eq!(a.mrz, b.mrz, "{path}");
        for (la, lb) in a.lines.iter().zip(&b.lines) {
            let worst = la
                .quad
                .0
                .iter()
                .zip(&lb.quad.0)
                .map(|(p, q)| (p[0] - q[0]).abs().max((p[1] - q[1]).abs()))
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 2.0,
                "{path} {:?}: corners differ by {worst}",
                la.text
            );
            assert!(
                (la.confidence - lb.confidence).abs() < 0.02,
                "{la:?} {lb:?}"
            );
        }
    }
}

const KEY: &str = "DocumentKey42";

fn form(files: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "invigil-document-boundary-91c2";
    let mut body = Vec::new();
    for (name, file) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

#[tokio::test]
async fn recognize_reads_documents_in_document_mode() {
    let d = Daemon::start(&[("API_KEY", KEY)]).await;
    let passport = std::fs::read(data("documents/passport_td3.jpg")).expect("passport");
    let portrait = std::fs::read(data("faces/portrait.jpg")).expect("portrait");
    let post = |query: &str, body: Vec<u8>, content_type: &str| {
        d.client
            .post(d.url(&format!("/recognize{query}")))
            .bearer_auth(KEY)
            .header("content-type", content_type)
            .body(body)
    };

    // The document and a live photo of its holder.
    let holder = png(&live(tract(), "faces/orl/s1/2.pgm"));
    let (ct, body) = form(&[("document", passport.clone()), ("live", holder)]);
    let r = post("?mode=document", body, &ct)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["mrz"]["surname"], "ERIKSSON", "{v}");
    assert_eq!(v["mrz"]["format"], "TD3", "{v}");
    assert_eq!(v["mrz_lines"][1], TD3[1], "{v}");
    assert_eq!(v["face_match"]["verified"], true, "{v}");
    assert!(v["lines"].as_array().is_some_and(|l| l.len() > 5), "{v}");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");

    // A photo that is no document: 200 with the problem named.
    let r = post("?mode=document", portrait.clone(), "image/jpeg")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["problems"][0]["code"], "no_mrz", "{v}");
    assert!(v["mrz"].is_null(), "{v}");

    // Without the mode the seed's answer is unchanged; a bad mode is named.
    let r = post("", portrait.clone(), "image/jpeg")
        .send()
        .await
        .expect("send");
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(v["faces"].is_array() && v.get("mrz").is_none(), "{v}");
    let r = post("?mode=passport", portrait, "image/jpeg")
        .send()
        .await
        .expect("send");
    let (status, code, message) = error_code(r).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    assert!(message.contains("passport"), "{message}");
}

#[test]
fn cli_reads_a_document_and_matches_its_face() {
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = dir.path().join("holder.png");
    live(tract(), "faces/orl/s1/2.pgm")
        .save(&holder)
        .expect("save");
    let passport = data("documents/passport_td3.jpg");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_invigil"))
            .args(args)
            .output()
            .expect("run invigil");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        "recognize",
        "--document",
        passport.to_str().expect("utf-8"),
        "--face",
        holder.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["mrz"]["document_number"], "L898902C3", "{v}");
    assert_eq!(v["face_match"]["verified"], true, "{v}");
    // --face alone is a usage error; a missing document is named.
    let (code, _, err) = run(&["recognize", "--face", holder.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{err}");
    let missing = dir.path().join("missing-passport.jpg");
    let (code, _, err) = run(&["recognize", "--document", missing.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(err.contains("missing-passport.jpg"), "{err}");
}
