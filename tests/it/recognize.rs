//! Recognition on real photos with the embedded models: face verification
//! accuracy on labelled faces, detection and counting on colour photos, and
//! the `invigil recognize` command. Photos and their provenance are in
//! `tests/data/faces/`.

use image::RgbImage;
use invigil::recognize::{Range, Recognizer, THRESHOLD, Verification};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_invigil");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/faces")
        .join(name)
}

fn recognizer() -> &'static Recognizer {
    static R: OnceLock<Recognizer> = OnceLock::new();
    R.get_or_init(|| Recognizer::embedded().expect("embedded models load"))
}

fn load(path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    recognizer()
        .decode(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ORL portraits are cropped to the face, tighter than any photo the
/// detectors were trained on; they are centred on a black canvas twice their
/// size first, as a webcam frame or a profile photo would frame the face.
fn padded(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut canvas = RgbImage::new(w * 2, h * 2);
    image::imageops::overlay(&mut canvas, image, i64::from(w / 2), i64::from(h / 2));
    canvas
}

/// Labelled photos: `orl/s<person>/<n>.pgm`, sorted. `INVIGIL_ORL_DIR` points
/// at another copy of the database (e.g. all 40 people) for calibration.
fn labelled() -> Vec<(String, PathBuf)> {
    let root = std::env::var_os("INVIGIL_ORL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| data("orl"));
    let mut out = Vec::new();
    let people = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    for person in people {
        let person = person.expect("dir entry").path();
        if !person.is_dir() {
            continue;
        }
        let label = person
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for photo in std::fs::read_dir(&person).expect("person dir") {
            let photo = photo.expect("dir entry").path();
            if photo.extension().is_some_and(|e| e == "pgm") {
                out.push((label.clone(), photo));
            }
        }
    }
    out.sort();
    out
}

/// Area under the ROC curve for "same person" scored by smaller distance:
/// the probability that a same-person pair is closer than a different-person
/// pair (ties count half).
fn roc_auc(same: &[f32], different: &[f32]) -> f64 {
    let mut diff = different.to_vec();
    diff.sort_by(f32::total_cmp);
    let mut wins = 0.0f64;
    for &s in same {
        let below = diff.partition_point(|&d| d < s);
        let ties = diff[below..].partition_point(|&d| d <= s);
        wins += (diff.len() - below - ties) as f64 + 0.5 * ties as f64;
    }
    wins / (same.len() as f64 * diff.len() as f64)
}

/// The distance threshold with the fewest misclassified pairs, and that count.
fn best_threshold(same: &[f32], different: &[f32]) -> (f32, usize) {
    let mut all: Vec<(f32, bool)> = same.iter().map(|&d| (d, true)).collect();
    all.extend(different.iter().map(|&d| (d, false)));
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Threshold just above all[i]: errors = same above it + different at or below it.
    let mut same_above = same.len();
    let mut diff_below = 0;
    let mut best = (0.0, same.len());
    for (d, is_same) in all {
        if is_same {
            same_above -= 1;
        } else {
            diff_below += 1;
        }
        if same_above + diff_below < best.1 {
            best = (d, same_above + diff_below);
        }
    }
    best
}

/// Share of same-person pairs accepted at the distance where `fpr` of the
/// different-person pairs would be accepted.
fn tpr_at_fpr(same: &[f32], different: &[f32], fpr: f64) -> f64 {
    let mut diff = different.to_vec();
    diff.sort_by(f32::total_cmp);
    let allowed = (fpr * diff.len() as f64).floor() as usize;
    let cut = diff[allowed.min(diff.len() - 1)];
    same.iter().filter(|&&s| s < cut).count() as f64 / same.len() as f64
}

#[test]
fn roc_helpers_on_known_scores() {
    assert_eq!(roc_auc(&[0.1, 0.2], &[0.5, 0.6]), 1.0);
    assert_eq!(roc_auc(&[0.5, 0.6], &[0.1, 0.2]), 0.0);
    assert_eq!(roc_auc(&[0.3], &[0.3]), 0.5);
    let diff: Vec<f32> = (0..100).map(|i| 1.0 + i as f32 / 100.0).collect();
    // 1 % of 100 different-person pairs (1.00) fall below the cut at 1.01.
    assert_eq!(tpr_at_fpr(&[0.5, 1.005, 1.5], &diff, 0.01), 2.0 / 3.0);
    // A same-person pair exactly at the cut is not accepted.
    assert_eq!(tpr_at_fpr(&[0.5, diff[1], 1.5], &diff, 0.01), 1.0 / 3.0);
    assert_eq!(best_threshold(&[0.1, 0.2, 0.9], &[0.5, 1.0]), (0.2, 1));
}

#[test]
fn verification_separates_people_on_labelled_faces() {
    let r = recognizer();
    let photos = labelled();
    assert!(
        photos.len() >= 50,
        "labelled set has {} photos",
        photos.len()
    );
    // Photos are independent: embed them on all cores.
    let results: Vec<_> = photos
        .par_iter()
        .map(|(label, path)| {
            let image = padded(&load(path));
            (label, path, r.main_embedding(&image, "labelled"))
        })
        .collect();
    let mut embedded = Vec::new();
    let mut missed = Vec::new();
    for (label, path, result) in results {
        match result {
            Ok((_, e)) => embedded.push((label.as_str(), path, e)),
            Err(_) => missed.push(path.display().to_string()),
        }
    }
    let (mut same, mut different) = (Vec::new(), Vec::new());
    let mut errors = Vec::new();
    for (i, (la, pa, ea)) in embedded.iter().enumerate() {
        for (lb, pb, eb) in &embedded[i + 1..] {
            let v = Verification::compare(ea, eb, THRESHOLD);
            let is_same = la == lb;
            if is_same {
                same.push(v.distance);
            } else {
                different.push(v.distance);
            }
            if v.verified != is_same {
                errors.push(format!(
                    "{} vs {}: distance {:.3}",
                    pa.display(),
                    pb.display(),
                    v.distance
                ));
            }
        }
    }
    let auc = roc_auc(&same, &different);
    let tpr = tpr_at_fpr(&same, &different, 0.01);
    let (best, best_errors) = best_threshold(&same, &different);
    let false_rejects = same.iter().filter(|&&d| d > THRESHOLD).count();
    let false_accepts = different.iter().filter(|&&d| d <= THRESHOLD).count();
    let max = |v: &[f32]| v.iter().copied().fold(f32::MIN, f32::max);
    let min = |v: &[f32]| v.iter().copied().fold(f32::MAX, f32::min);
    println!(
        "labelled faces: {} photos ({} without a face), {} same-person and {} \
         different-person pairs",
        photos.len(),
        missed.len(),
        same.len(),
        different.len()
    );
    println!(
        "same-person distance {:.3}..{:.3}, different-person {:.3}..{:.3}",
        min(&same),
        max(&same),
        min(&different),
        max(&different)
    );
    println!(
        "ROC AUC {auc:.5}, TPR at 1% FPR {:.1} %, at threshold {THRESHOLD}: \
         {false_rejects} false rejects, {false_accepts} false accepts; \
         fewest errors ({best_errors}) at {best:.3}",
        tpr * 100.0
    );
    for e in errors.iter().take(20) {
        println!("  misclassified: {e}");
    }
    assert!(missed.is_empty(), "no face found in {missed:?}");
    assert!(auc >= 0.99, "ROC AUC {auc:.4} is below 0.99");
    assert!(tpr >= 0.9, "TPR at 1% FPR is {tpr:.3}");
    // Near-clean split at the shipped threshold: under 1 % of pairs either way.
    let pairs = same.len() + different.len();
    assert!(
        errors.len() * 100 <= pairs,
        "{} of {pairs} pairs misclassified at {THRESHOLD}",
        errors.len()
    );
}

#[test]
fn portrait_has_one_face() {
    let r = recognizer();
    let image = load(&data("portrait.jpg"));
    for range in [Range::Near, Range::Far] {
        let faces = r.detect(&image, range).expect("detect");
        assert_eq!(faces.len(), 1, "{range:?}: {faces:?}");
        let f = &faces[0];
        let k = f.keypoints;
        // The face is in the middle of the 224×224 portrait, upright, with
        // the person's right eye on the image's left.
        assert!(f.score > 0.8, "{f:?}");
        assert!(k.right_eye[0] < k.left_eye[0], "{k:?}");
        assert!(
            k.right_eye[1] < k.nose[1] && k.nose[1] < k.mouth[1],
            "{k:?}"
        );
        let (cx, cy) = (
            f.bbox.x + f.bbox.width / 2.0,
            f.bbox.y + f.bbox.height / 2.0,
        );
        assert!(
            (cx - 112.0).abs() < 40.0 && (cy - 112.0).abs() < 50.0,
            "{f:?}"
        );
    }
    let p = r.presence(&image).expect("presence");
    assert!(!p.no_face && !p.several_faces && p.faces == 1, "{p:?}");
}

#[test]
fn group_photo_has_six_faces() {
    let r = recognizer();
    let image = load(&data("group.jpg"));
    let faces = r.detect(&image, Range::Far).expect("detect");
    assert_eq!(faces.len(), 6, "{faces:#?}");
    // Six distinct people: no two boxes overlap.
    for (i, a) in faces.iter().enumerate() {
        for b in &faces[i + 1..] {
            let apart = a.bbox.x + a.bbox.width <= b.bbox.x
                || b.bbox.x + b.bbox.width <= a.bbox.x
                || a.bbox.y + a.bbox.height <= b.bbox.y
                || b.bbox.y + b.bbox.height <= a.bbox.y;
            assert!(apart, "overlapping faces {a:?} {b:?}");
        }
    }
}

#[test]
fn blank_frame_has_no_face() {
    let r = recognizer();
    let frame = RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128]));
    let p = r.presence(&frame).expect("presence");
    assert!(p.no_face && p.faces == 0, "{p:?}");
    assert!(r.detect(&frame, Range::Far).expect("detect").is_empty());
}

#[test]
fn same_person_in_different_photos_verifies() {
    let r = recognizer();
    let a = padded(&load(&data("orl/s1/1.pgm")));
    let b = padded(&load(&data("orl/s1/2.pgm")));
    let c = padded(&load(&data("orl/s2/1.pgm")));
    let same = r.verify(&a, &b).expect("verify");
    let other = r.verify(&a, &c).expect("verify");
    assert!(same.verified && !other.verified, "{same:?} {other:?}");
    assert!(same.distance < other.distance);
    let blank = RgbImage::from_pixel(200, 200, image::Rgb([90, 90, 90]));
    let err = r
        .verify(&a, &blank)
        .expect_err("no face in the second image");
    assert_eq!(err.code(), "no_face");
    assert!(err.to_string().contains("second"), "{err}");
}

fn invigil(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run invigil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_lists_faces_as_json() {
    let group = data("group.jpg");
    let (code, out, err) = invigil(&["recognize", group.to_str().expect("utf-8"), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let faces = v["faces"].as_array().expect("faces array");
    assert_eq!(faces.len(), 6, "{out}");
    for f in faces {
        for k in ["x", "y", "width", "height"] {
            assert!(f["box"][k].is_number(), "{f}");
        }
        assert!(f["score"].as_f64().is_some_and(|s| s > 0.5), "{f}");
        assert!(
            f["keypoints"]["nose"]
                .as_array()
                .is_some_and(|p| p.len() == 2),
            "{f}"
        );
    }
}

#[test]
fn cli_compares_two_images_in_the_vendor_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Pad the ORL crops into PNG files, as a user would hand over photos.
    let save = |src: &str, name: &str| {
        let path = dir.path().join(name);
        padded(&load(&data(src))).save(&path).expect("save png");
        path.to_str().expect("utf-8").to_string()
    };
    let a = save("orl/s3/1.pgm", "a.png");
    let b = save("orl/s3/5.pgm", "b.png");
    let c = save("orl/s4/1.pgm", "c.png");
    let (code, out, err) = invigil(&["recognize", &a, &b, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys.len(), 5, "{out}");
    assert_eq!(v["verified"], true, "{out}");
    assert_eq!(v["threshold"].as_f64().map(|t| t as f32), Some(THRESHOLD));
    assert!(
        v["confidence"].is_number() && v["similar"].is_number(),
        "{out}"
    );
    let (code, out, err) = invigil(&["recognize", &a, &c]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("different people"), "{out}");
}

#[test]
fn cli_names_an_unreadable_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"\xFF\xD8\xFF\xE0 not really a jpeg").expect("write");
    let bad = bad.to_str().expect("utf-8");
    let (code, _, err) = invigil(&["recognize", bad]);
    assert_ne!(code, 0);
    assert!(err.contains("broken.jpg"), "{err}");
    let missing = dir.path().join("missing.png");
    let portrait = data("portrait.jpg");
    let (code, _, err) = invigil(&[
        "recognize",
        portrait.to_str().expect("utf-8"),
        missing.to_str().expect("utf-8"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("missing.png"), "{err}");
    let blank = dir.path().join("blank.png");
    RgbImage::from_pixel(300, 300, image::Rgb([200, 200, 200]))
        .save(&blank)
        .expect("save");
    let (code, _, err) = invigil(&[
        "recognize",
        portrait.to_str().expect("utf-8"),
        blank.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("blank.png: no face found"), "{err}");
}

#[test]
fn hard_and_weighted_suppression_agree_on_the_count() {
    use invigil::recognize::{DetectOptions, Suppression};
    let image = load(&data("group.jpg"));
    let hard = Recognizer::embedded()
        .expect("models")
        .with_options(DetectOptions {
            suppression: Suppression::Hard,
            ..DetectOptions::default()
        });
    let weighted = recognizer().detect(&image, Range::Far).expect("detect");
    let kept = hard.detect(&image, Range::Far).expect("detect");
    assert_eq!(kept.len(), weighted.len());
    // Hard NMS reports a raw candidate: its box differs from the blend.
    assert!(kept.iter().zip(&weighted).any(|(a, b)| a.bbox != b.bbox));
}
