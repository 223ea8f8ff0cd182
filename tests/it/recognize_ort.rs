//! The ONNX Runtime backend against the embedded tract one: the same faces,
//! boxes, keypoints and embeddings on the test photos. Runs wherever the
//! library is present (`tests/run` fetches it with
//! `packaging/onnxruntime/fetch`); under CI its absence is a failure.

use image::RgbImage;
use invigil::recognize::{
    Backend, Embedding, Face, OrtEngine, Range, Recognizer, TractEngine, engine,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/faces")
        .join(name)
}

/// ORT_DYLIB_PATH, else the library `packaging/onnxruntime/fetch` puts in
/// `target/`.
fn library() -> Option<PathBuf> {
    let path = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/onnxruntime/libonnxruntime.so")
        });
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: tests/run fetches it with packaging/onnxruntime/fetch",
        path.display()
    );
    eprintln!(
        "skipped: no ONNX Runtime library at {} (run packaging/onnxruntime/fetch)",
        path.display()
    );
    None
}

fn both() -> Option<&'static (Recognizer, Recognizer)> {
    static R: OnceLock<Option<(Recognizer, Recognizer)>> = OnceLock::new();
    R.get_or_init(|| {
        let lib = library()?;
        let ort = OrtEngine::load_library(&lib, 2).expect("ONNX Runtime loads");
        Some((
            Recognizer::with_engine(&TractEngine).expect("tract models"),
            Recognizer::with_engine(&ort).expect("ort models"),
        ))
    })
    .as_ref()
}

fn load(r: &Recognizer, path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.decode(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn padded(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut canvas = RgbImage::new(w * 2, h * 2);
    image::imageops::overlay(&mut canvas, image, i64::from(w / 2), i64::from(h / 2));
    canvas
}

fn cosine(a: &Embedding, b: &Embedding) -> f32 {
    a.0.iter().zip(&b.0).map(|(x, y)| x * y).sum()
}

/// Largest difference in pixels between two faces' box corners and keypoints.
fn worst_offset(a: &Face, b: &Face) -> f32 {
    let (ka, kb) = (a.keypoints, b.keypoints);
    let points_a = [
        [a.bbox.x, a.bbox.y],
        [a.bbox.x + a.bbox.width, a.bbox.y + a.bbox.height],
        ka.right_eye,
        ka.left_eye,
        ka.nose,
        ka.mouth,
        ka.right_ear,
        ka.left_ear,
    ];
    let points_b = [
        [b.bbox.x, b.bbox.y],
        [b.bbox.x + b.bbox.width, b.bbox.y + b.bbox.height],
        kb.right_eye,
        kb.left_eye,
        kb.nose,
        kb.mouth,
        kb.right_ear,
        kb.left_ear,
    ];
    points_a
        .iter()
        .zip(&points_b)
        .map(|(p, q)| (p[0] - q[0]).abs().max((p[1] - q[1]).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn ort_and_tract_agree_on_the_test_photos() {
    let Some((tract, ort)) = both() else { return };
    assert_eq!(ort.engine(), "onnxruntime");
    let mut cases = vec![
        (
            "portrait.jpg".to_string(),
            load(tract, &data("portrait.jpg")),
            Range::Near,
        ),
        (
            "group.jpg".to_string(),
            load(tract, &data("group.jpg")),
            Range::Far,
        ),
    ];
    for person in [1, 13] {
        let name = format!("orl/s{person}/1.pgm");
        let image = padded(&load(tract, &data(&name)));
        cases.push((name, image, Range::Near));
    }
    let mut compared = 0;
    for (name, image, range) in &cases {
        let a = tract.detect(image, *range).expect("tract detect");
        let b = ort.detect(image, *range).expect("ort detect");
        assert_eq!(a.len(), b.len(), "{name} {range:?}: face counts differ");
        assert!(!a.is_empty(), "{name} {range:?}: no face");
        for (fa, fb) in a.iter().zip(&b) {
            let offset = worst_offset(fa, fb);
            assert!(
                offset < 1.0,
                "{name}: boxes differ by {offset} px\n{fa:?}\n{fb:?}"
            );
            assert!((fa.score - fb.score).abs() < 1e-3, "{name}: {fa:?} {fb:?}");
        }
        // Embed the same crops on both, so only the embedder is compared.
        let crops = tract.aligned(image, &a);
        let ea = tract.embed_aligned(&crops).expect("tract embed");
        let eb = ort.embed_aligned(&crops).expect("ort embed");
        for (x, y) in ea.iter().zip(&eb) {
            let c = cosine(x, y);
            assert!(c >= 0.999, "{name}: embeddings' cosine {c}");
            compared += 1;
        }
    }
    assert!(compared >= 9, "{compared} embeddings compared");
}

#[test]
fn selection_prefers_the_configured_library() {
    let Some(lib) = library() else { return };
    let _ = both();
    assert_eq!(
        engine(Backend::Auto, Some(&lib), 1).expect("auto").name(),
        "onnxruntime"
    );
    assert_eq!(
        engine(Backend::Tract, Some(&lib), 1).expect("tract").name(),
        "tract"
    );
    // One process holds one ONNX Runtime: another path is refused by name.
    let other = lib.with_file_name("libonnxruntime-other.so");
    let err = engine(Backend::Ort, Some(&other), 1)
        .err()
        .expect("a second library is refused");
    assert!(err.to_string().contains("libonnxruntime-other.so"), "{err}");
}
