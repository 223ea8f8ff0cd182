//! Face recognition, offline: BlazeFace detection, four-point alignment,
//! MobileFaceNet embeddings and verification, on models shipped inside the
//! binary and run by an [`Engine`]: ONNX Runtime when its library is
//! installed, tract (pure Rust, always there) otherwise.
//!
//! The proctoring metrics use it as follows: c2 (no face) and c3 (several
//! faces) come from [`Recognizer::presence`], c4 (not the profile photo's
//! person) from [`Recognizer::verify`].

mod align;
mod anchors;
mod backend;
mod decode;
mod detect;
pub mod document;
mod embed;
mod engine;
mod error;
pub mod liveness;
pub mod mrz;
mod nms;
pub mod ocr;
mod ort;
mod pool;
mod remote;
mod remote_balancer;
mod service;
mod tract;
mod verify;

pub use align::{ALIGNED_SIZE, Similarity, TEMPLATE, align};
pub use backend::{Backend, engine, ort_library};
pub use decode::{DecodeLimits, decode};
pub use detect::{BoundingBox, DetectOptions, Face, Keypoints, Suppression};
pub use embed::{DIM, Embedding};
pub use engine::{Engine, ModelKind, Network, Tensor};
pub use error::{RecognizeError, Result};
pub use ort::{OrtEngine, PACKAGED_LIBRARY};
pub use pool::Pool;
pub use remote::{CHECK_EVERY, Remote, RemoteError, Reply, parse_uri_list};
pub use remote_balancer::HostStatus;
pub use service::Service;
pub use tract::TractEngine;
pub use verify::{THRESHOLD, Verification};

use detect::Detector;
use embed::Embedder;
use image::RgbImage;
use serde::Serialize;

/// The models, embedded so the binary recognises faces with no files around
/// it. Provenance and licences: `assets/models/PROVENANCE.md`.
const BLAZEFACE_FRONT: &[u8] = include_bytes!("../../assets/models/blazeface_front_128.onnx");
const BLAZEFACE_BACK: &[u8] = include_bytes!("../../assets/models/blazeface_back_256.onnx");
pub(crate) const MOBILEFACENET: &[u8] = include_bytes!("../../assets/models/mobilefacenet.onnx");

/// Which detector suits the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Webcam frames: one face filling a good part of the picture
    /// (BlazeFace front, 128×128 input).
    Near,
    /// Photos: group pictures, documents, small faces (BlazeFace back,
    /// 256×256 input, plus square tiles of a wide or tall photo).
    Far,
}

/// c2/c3 for one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Presence {
    pub faces: usize,
    /// c2: no face visible.
    pub no_face: bool,
    /// c3: more than one face.
    pub several_faces: bool,
}

/// The detectors and the embedder, loaded once and shared by all threads.
pub struct Recognizer {
    engine: &'static str,
    near: Detector,
    far: Detector,
    embedder: Embedder,
    limits: DecodeLimits,
    options: DetectOptions,
}

impl Recognizer {
    /// The embedded models on the embedded tract engine.
    pub fn embedded() -> Result<Self> {
        Self::with_engine(&TractEngine)
    }

    /// The embedded models on the engine `backend` selects (see
    /// [`engine`]); `threads` is how many workers will share it.
    pub fn with_backend(
        backend: Backend,
        library: Option<&std::path::Path>,
        threads: usize,
    ) -> Result<Self> {
        Self::with_engine(engine(backend, library, threads)?.as_ref())
    }

    /// The embedded models on `engine`.
    pub fn with_engine(engine: &dyn Engine) -> Result<Self> {
        let near = engine.load(
            ModelKind::DetectorFront,
            BLAZEFACE_FRONT,
            &[Some(1), Some(128), Some(128), Some(3)],
        )?;
        let far = engine.load(
            ModelKind::DetectorBack,
            BLAZEFACE_BACK,
            &[Some(1), Some(256), Some(256), Some(3)],
        )?;
        let embedder = engine.load(
            ModelKind::Embedder,
            MOBILEFACENET,
            &[
                None,
                Some(3),
                Some(ALIGNED_SIZE as usize),
                Some(ALIGNED_SIZE as usize),
            ],
        )?;
        Ok(Recognizer {
            engine: engine.name(),
            near: Detector::new(near, 128, ModelKind::DetectorFront.name()),
            far: Detector::new(far, 256, ModelKind::DetectorBack.name()),
            embedder: Embedder::new(embedder),
            limits: DecodeLimits::default(),
            options: DetectOptions::default(),
        })
    }

    /// Replaces the detector settings (score and overlap thresholds, NMS).
    pub fn with_options(mut self, options: DetectOptions) -> Self {
        self.options = options;
        self
    }

    /// Name of the engine running the models.
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// Decodes an uploaded image within this recognizer's limits.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        decode::decode(bytes, &self.limits)
    }

    /// Faces in `image`, best score first.
    pub fn detect(&self, image: &RgbImage, range: Range) -> Result<Vec<Face>> {
        match range {
            Range::Near => self.near.detect(image, &self.options, false),
            Range::Far => self.far.detect(image, &self.options, true),
        }
    }

    /// c2/c3 for a webcam snapshot.
    pub fn presence(&self, image: &RgbImage) -> Result<Presence> {
        let faces = self.detect(image, Range::Near)?.len();
        Ok(Presence {
            faces,
            no_face: faces == 0,
            several_faces: faces > 1,
        })
    }

    /// The largest face of `image`, looked for with the near detector first
    /// and the far one when that finds nothing.
    pub fn main_face(&self, image: &RgbImage) -> Result<Option<Face>> {
        for range in [Range::Near, Range::Far] {
            let faces = self.detect(image, range)?;
            if let Some(face) = faces
                .into_iter()
                .max_by(|a, b| a.area().total_cmp(&b.area()))
            {
                return Ok(Some(face));
            }
        }
        Ok(None)
    }

    /// Aligned 112×112 crops of `faces` (faces with degenerate keypoints are
    /// skipped, so the result may be shorter).
    pub fn aligned(&self, image: &RgbImage, faces: &[Face]) -> Vec<RgbImage> {
        faces
            .iter()
            .filter_map(|f| align(image, &f.keypoints))
            .collect()
    }

    /// Embeddings of aligned 112×112 crops, in one batch.
    pub fn embed_aligned(&self, crops: &[RgbImage]) -> Result<Vec<Embedding>> {
        self.embedder.embed(crops)
    }

    /// The main face of `image` and its embedding; `which` names the image
    /// in the error when there is no usable face.
    pub fn main_embedding(
        &self,
        image: &RgbImage,
        which: &'static str,
    ) -> Result<(Face, Embedding)> {
        let face = self
            .main_face(image)?
            .ok_or(RecognizeError::NoFace { which })?;
        let crop = align(image, &face.keypoints).ok_or(RecognizeError::NoFace { which })?;
        let embedding = self
            .embedder
            .embed(std::slice::from_ref(&crop))?
            .pop()
            .ok_or(RecognizeError::NoFace { which })?;
        Ok((face, embedding))
    }

    /// Whether the main faces of two images are the same person.
    pub fn verify(&self, first: &RgbImage, second: &RgbImage) -> Result<Verification> {
        let (_, a) = self.main_embedding(first, "first")?;
        let (_, b) = self.main_embedding(second, "second")?;
        Ok(Verification::compare(&a, &b, THRESHOLD))
    }
}
