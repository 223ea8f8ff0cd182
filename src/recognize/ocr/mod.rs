//! Optical character recognition with PP-OCRv4 (PaddleOCR's mobile models,
//! as shipped by the `rapidocr-onnxruntime` package): DB text detection,
//! then SVTR-LCNet line recognition with CTC decoding, on the same
//! [`Engine`] as the face models. Provenance: `assets/models/PROVENANCE.md`.

mod crop;
mod db;
pub mod geometry;
pub mod mrz_lines;
mod rec;

pub use db::DbOptions;
pub use geometry::Quad;
pub use rec::{Dictionary, Reading};

use crate::recognize::engine::{Engine, ModelKind};
use crate::recognize::error::Result;
use crate::recognize::tract::TractEngine;
use db::TextDetector;
use image::RgbImage;
use rec::{Networks, TextRecognizer};
use serde::Serialize;

const DETECTOR: &[u8] = include_bytes!("../../../assets/models/ppocrv4_det.onnx");
const RECOGNIZER: &[u8] = include_bytes!("../../../assets/models/ppocrv4_rec.onnx");

/// Lines read with less confidence than this are dropped (PaddleOCR's
/// default drop score).
pub const MIN_CONFIDENCE: f32 = 0.5;

/// One line of text found in an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextLine {
    pub text: String,
    /// Mean probability of the characters read, 0–1.
    pub confidence: f32,
    /// Corners in image pixels, clockwise from the top-left.
    #[serde(rename = "box")]
    pub quad: Quad,
}

/// The detector and recogniser, loaded once and shared by all threads.
pub struct Ocr {
    detector: TextDetector,
    recognizer: TextRecognizer,
}

impl Ocr {
    /// The embedded models on the embedded tract engine.
    pub fn embedded() -> Result<Self> {
        Self::with_engine(&TractEngine)
    }

    /// The embedded models on `engine`. Both take images of any size.
    pub fn with_engine(engine: &dyn Engine) -> Result<Self> {
        let detector = engine.load(
            ModelKind::TextDetector,
            DETECTOR,
            &[Some(1), Some(3), None, None],
        )?;
        let shape = |width: Option<usize>| [Some(1), Some(3), Some(rec::HEIGHT as usize), width];
        let networks = if engine.any_size() {
            Networks::AnyWidth(engine.load(ModelKind::TextRecognizer, RECOGNIZER, &shape(None))?)
        } else {
            Networks::PerWidth(
                rec::WIDTHS
                    .iter()
                    .map(|&w| {
                        engine.load(
                            ModelKind::TextRecognizer,
                            RECOGNIZER,
                            &shape(Some(w as usize)),
                        )
                    })
                    .collect::<Result<_>>()?,
            )
        };
        Ok(Ocr {
            detector: TextDetector::new(detector),
            recognizer: TextRecognizer::new(networks, Dictionary::from_model(RECOGNIZER)?),
        })
    }

    /// The text lines of `image` in reading order, those read with
    /// confidence under [`MIN_CONFIDENCE`] left out.
    pub fn read(&self, image: &RgbImage) -> Result<Vec<TextLine>> {
        let mut lines = Vec::new();
        for quad in self.detector.detect(image)? {
            let Some(strip) = crop::crop(image, &quad) else {
                continue;
            };
            let Reading { text, confidence } = self.recognizer.read(&strip)?;
            if confidence >= MIN_CONFIDENCE && !text.trim().is_empty() {
                lines.push(TextLine {
                    text,
                    confidence,
                    quad,
                });
            }
        }
        Ok(lines)
    }
}
