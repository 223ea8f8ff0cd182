//! `invigil recognize`: list faces, or compare two images.

use crate::recognize::{Backend, Face, Range, RecognizeError, Recognizer, Verification};
use image::RgbImage;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const EXIT_USAGE: u8 = 2;

#[derive(Serialize)]
struct FacesAnswer<'a> {
    faces: &'a [Face],
}

/// The models on the engine RECOGNIZER_BACKEND and ORT_DYLIB_PATH select
/// (ONNX Runtime when its library is found, else tract).
pub(super) fn load_models(threads: usize) -> Result<Recognizer, ExitCode> {
    let backend = match std::env::var("RECOGNIZER_BACKEND") {
        Ok(raw) => raw.parse().map_err(|e| {
            eprintln!("invigil: RECOGNIZER_BACKEND: {e}");
            ExitCode::from(EXIT_USAGE)
        })?,
        Err(_) => Backend::Auto,
    };
    let library = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    Recognizer::with_backend(backend, library.as_deref(), threads).map_err(|e| {
        eprintln!("invigil: cannot load the recognition models: {e}");
        ExitCode::FAILURE
    })
}

fn read_image(recognizer: &Recognizer, path: &Path) -> Result<RgbImage, ExitCode> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("invigil: {}: {e}", path.display());
        ExitCode::FAILURE
    })?;
    recognizer.decode(&bytes).map_err(|e| {
        eprintln!("invigil: {}: {e}", path.display());
        ExitCode::FAILURE
    })
}

/// One file: its faces. Two files: whether their main faces match.
pub fn run(files: &[PathBuf], json: bool) -> ExitCode {
    if files.is_empty() || files.len() > 2 {
        eprintln!("invigil: give one image to list its faces, or two to compare them");
        return ExitCode::from(EXIT_USAGE);
    }
    let recognizer = match load_models(1) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut images = Vec::new();
    for path in files {
        match read_image(&recognizer, path) {
            Ok(img) => images.push(img),
            Err(code) => return code,
        }
    }
    let result = match images.as_slice() {
        [one] => list_faces(&recognizer, one, &files[0], json),
        [a, b] => compare(&recognizer, (a, &files[0]), (b, &files[1]), json),
        _ => return ExitCode::from(EXIT_USAGE),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("invigil: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn list_faces(r: &Recognizer, image: &RgbImage, path: &Path, json: bool) -> Result<(), String> {
    let faces = r
        .detect(image, Range::Far)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if json {
        let text = serde_json::to_string_pretty(&FacesAnswer { faces: &faces })
            .map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    let n = faces.len();
    println!(
        "{}: {n} face{}",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    for (i, f) in faces.iter().enumerate() {
        let b = &f.bbox;
        println!(
            "  {}. at ({:.0}, {:.0}) size {:.0}×{:.0}, score {:.2}",
            i + 1,
            b.x,
            b.y,
            b.width,
            b.height,
            f.score
        );
    }
    Ok(())
}

fn compare(
    r: &Recognizer,
    (a, pa): (&RgbImage, &Path),
    (b, pb): (&RgbImage, &Path),
    json: bool,
) -> Result<(), String> {
    let embed = |img: &RgbImage, path: &Path| {
        r.main_embedding(img, "given").map_err(|e| match e {
            RecognizeError::NoFace { .. } => format!("{}: no face found", path.display()),
            other => format!("{}: {other}", path.display()),
        })
    };
    let (_, ea) = embed(a, pa)?;
    let (_, eb) = embed(b, pb)?;
    let v = Verification::compare(&ea, &eb, crate::recognize::THRESHOLD);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "{}: distance {:.3} (threshold {:.2}), similarity {:.1} %, confidence {:.1} %",
            if v.verified {
                "same person"
            } else {
                "different people"
            },
            v.distance,
            v.threshold,
            v.similar,
            v.confidence
        );
    }
    Ok(())
}
