//! `invigil recognize`: list faces, compare two images, or read an ID
//! document (`--document IMG [--face FACE]`).

use crate::recognize::document::{self, Document};
use crate::recognize::ocr::Ocr;
use crate::recognize::{Backend, Face, Range, RecognizeError, Recognizer, Verification, engine};
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
    load(threads, false).map(|(r, _)| r)
}

/// The face models, and the OCR models too when `ocr` is set, on the engine
/// RECOGNIZER_BACKEND and ORT_DYLIB_PATH select.
fn load(threads: usize, ocr: bool) -> Result<(Recognizer, Option<Ocr>), ExitCode> {
    let backend = match std::env::var("RECOGNIZER_BACKEND") {
        Ok(raw) => raw.parse().map_err(|e| {
            eprintln!("invigil: RECOGNIZER_BACKEND: {e}");
            ExitCode::from(EXIT_USAGE)
        })?,
        Err(_) => Backend::Auto,
    };
    let library = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    let failed = |e: RecognizeError| {
        eprintln!("invigil: cannot load the recognition models: {e}");
        ExitCode::FAILURE
    };
    let engine = engine(backend, library.as_deref(), threads).map_err(failed)?;
    let recognizer = Recognizer::with_engine(engine.as_ref()).map_err(failed)?;
    let ocr = if ocr {
        Some(Ocr::with_engine(engine.as_ref()).map_err(failed)?)
    } else {
        None
    };
    Ok((recognizer, ocr))
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

/// `--document IMG [--face FACE]`: what the document says, and whether its
/// face is the person in FACE. A photo without a document is an answer
/// (its problems say what is missing), not a failure.
pub fn run_document(path: &Path, live: Option<&Path>, json: bool) -> ExitCode {
    let (recognizer, ocr) = match load(1, true) {
        Ok((r, Some(ocr))) => (r, ocr),
        Ok((_, None)) => return ExitCode::FAILURE,
        Err(code) => return code,
    };
    let image = match read_image(&recognizer, path) {
        Ok(img) => img,
        Err(code) => return code,
    };
    let live_image = match live.map(|p| read_image(&recognizer, p)).transpose() {
        Ok(img) => img,
        Err(code) => return code,
    };
    let mut doc = match document::read(&recognizer, &ocr, &image) {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("invigil: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if let (Some(img), Some(live)) = (&live_image, live)
        && let Err(e) = doc.match_face(&recognizer, img)
    {
        let which = match e {
            RecognizeError::NoFace { which: "live" } => live.display().to_string(),
            _ => path.display().to_string(),
        };
        eprintln!("invigil: {which}: {e}");
        return ExitCode::FAILURE;
    }
    if json {
        match serde_json::to_string_pretty(&doc) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("invigil: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_document(path, &doc);
    }
    ExitCode::SUCCESS
}

fn print_document(path: &Path, doc: &Document) {
    println!("{}:", path.display());
    if doc.upside_down {
        println!("  the document is upside down (read turned)");
    }
    match &doc.face {
        Some(f) => println!(
            "  face at ({:.0}, {:.0}) size {:.0}×{:.0}, score {:.2}",
            f.bbox.x, f.bbox.y, f.bbox.width, f.bbox.height, f.score
        ),
        None => println!("  no face"),
    }
    println!("  {} text lines:", doc.lines.len());
    for line in &doc.lines {
        println!("    {:<46} {:.2}", line.text, line.confidence);
    }
    if let Some(m) = &doc.mrz {
        println!(
            "  machine-readable zone ({:?}), all check digits verified:",
            m.format
        );
        for (key, value) in [
            ("document code", &m.document_code),
            ("issuing state", &m.issuing_state),
            ("surname", &m.surname),
            ("given names", &m.given_names),
            ("document number", &m.document_number),
            ("nationality", &m.nationality),
            ("birth date", &m.birth_date),
            ("sex", &m.sex),
            ("expiry date", &m.expiry_date),
            ("optional data", &m.optional_data),
        ] {
            println!("    {key:<16} {value}");
        }
    }
    for p in &doc.problems {
        println!("  {}", p.message);
    }
    if let Some(v) = &doc.face_match {
        println!(
            "  face match: {} (distance {:.3}, threshold {:.2}, confidence {:.1} %)",
            if v.verified {
                "same person"
            } else {
                "different people"
            },
            v.distance,
            v.threshold,
            v.confidence
        );
    }
}
