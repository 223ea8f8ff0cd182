//! ID documents from a photo: the holder's face (found with the far-range
//! detector, since it is small on the page, and embedded for matching), the
//! printed text read by OCR, and the machine-readable zone parsed with every
//! check digit verified. What could not be read is listed as a named
//! problem, not an error: a photo without a document is an answer too.

use super::embed::Embedding;
use super::error::{RecognizeError, Result};
use super::mrz::Mrz;
use super::ocr::mrz_lines::{self, Found};
use super::ocr::{Ocr, TextLine};
use super::verify::{THRESHOLD, Verification};
use super::{Face, Range, Recognizer, align};
use image::{RgbImage, imageops};
use serde::Serialize;

/// What was read from a document photo.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    /// The largest face on the document, if any.
    pub face: Option<Face>,
    /// Its embedding, kept for [`Document::match_face`].
    #[serde(skip)]
    pub embedding: Option<Embedding>,
    /// Every text line read, in reading order.
    pub lines: Vec<TextLine>,
    /// The machine-readable zone's lines as read and repaired; empty when
    /// none was found.
    pub mrz_lines: Vec<String>,
    /// The zone's fields; present only when every check digit verified.
    pub mrz: Option<Mrz>,
    /// What could not be read, by name.
    pub problems: Vec<Problem>,
    /// The photo showed the document upside down (it was read turned).
    pub upside_down: bool,
    /// The document face compared with a live photo, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_match: Option<Verification>,
}

/// A part of the document that could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub code: ProblemCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// No face on the document.
    NoFace,
    /// No lines that look like a machine-readable zone.
    NoMrz,
    /// A zone was found but is malformed or fails a check digit.
    InvalidMrz,
}

impl Document {
    /// Whether `code` is among the problems.
    pub fn has(&self, code: ProblemCode) -> bool {
        self.problems.iter().any(|p| p.code == code)
    }

    /// Compares the document's face with the main face of `live` (the
    /// verification threshold of face checks) and keeps the result.
    pub fn match_face(&mut self, recognizer: &Recognizer, live: &RgbImage) -> Result<Verification> {
        let document = self
            .embedding
            .as_ref()
            .ok_or(RecognizeError::NoFace { which: "document" })?;
        let (_, face) = recognizer.main_embedding(live, "live")?;
        let verification = Verification::compare(document, &face, THRESHOLD);
        self.face_match = Some(verification);
        Ok(verification)
    }
}

/// Reads the document in `image`. When no zone is found the photo is read
/// again turned by 180°, for a document held upside down; boxes are always
/// in the photo's own pixels (corners from the text's top-left).
pub fn read(recognizer: &Recognizer, ocr: &Ocr, image: &RgbImage) -> Result<Document> {
    let upright = read_as_is(recognizer, ocr, image)?;
    if !upright.has(ProblemCode::NoMrz) {
        return Ok(upright);
    }
    let turned = read_as_is(recognizer, ocr, &imageops::rotate180(image))?;
    if turned.has(ProblemCode::NoMrz) {
        return Ok(upright);
    }
    Ok(turned.turned_back(image.width() as f32, image.height() as f32))
}

impl Document {
    /// Coordinates read on the photo turned by 180°, mapped back onto it.
    fn turned_back(mut self, width: f32, height: f32) -> Document {
        let back = |[x, y]: [f32; 2]| [width - x, height - y];
        for line in &mut self.lines {
            line.quad.0 = line.quad.0.map(back);
        }
        if let Some(face) = &mut self.face {
            let b = &mut face.bbox;
            b.x = width - b.x - b.width;
            b.y = height - b.y - b.height;
            let k = &mut face.keypoints;
            for p in [
                &mut k.right_eye,
                &mut k.left_eye,
                &mut k.nose,
                &mut k.mouth,
                &mut k.right_ear,
                &mut k.left_ear,
            ] {
                *p = back(*p);
            }
        }
        self.upside_down = true;
        self
    }
}

fn read_as_is(recognizer: &Recognizer, ocr: &Ocr, image: &RgbImage) -> Result<Document> {
    let mut problems = Vec::new();
    let (face, embedding) = match document_face(recognizer, image)? {
        Some((face, embedding)) => (Some(face), Some(embedding)),
        None => {
            problems.push(Problem {
                code: ProblemCode::NoFace,
                message: "no face found on the document".into(),
            });
            (None, None)
        }
    };
    let lines = ocr.read(image)?;
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let (mrz_lines, mrz) = match mrz_lines::find(&texts) {
        Found::None => {
            problems.push(Problem {
                code: ProblemCode::NoMrz,
                message: "no machine-readable zone found (2 or 3 lines of A–Z, 0–9 and <)".into(),
            });
            (Vec::new(), None)
        }
        Found::Zone { lines, parsed } => match parsed {
            Ok(mrz) => (lines, Some(*mrz)),
            Err(message) => {
                problems.push(Problem {
                    code: ProblemCode::InvalidMrz,
                    message,
                });
                (lines, None)
            }
        },
    };
    Ok(Document {
        face,
        embedding,
        lines,
        mrz_lines,
        mrz,
        problems,
        face_match: None,
        upside_down: false,
    })
}

/// The largest face the far-range detector finds, and its embedding.
fn document_face(r: &Recognizer, image: &RgbImage) -> Result<Option<(Face, Embedding)>> {
    let faces = r.detect(image, Range::Far)?;
    let Some(face) = faces
        .into_iter()
        .max_by(|a, b| a.area().total_cmp(&b.area()))
    else {
        return Ok(None);
    };
    let Some(crop) = align(image, &face.keypoints) else {
        return Ok(None);
    };
    let embedding = r.embed_aligned(std::slice::from_ref(&crop))?.pop();
    Ok(embedding.map(|e| (face, e)))
}
