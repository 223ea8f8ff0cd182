//! What the identity checks ask of recognition, on one [`Recognizer`] (a
//! pool worker): the face photo (exactly one face, large enough), the face
//! on a document, and the faces of the liveness frames.

use crate::recognize::liveness::{self, FACING_DEGREES, Liveness, Observation, Turn};
use crate::recognize::{Embedding, Face, Range, RecognizeError, Recognizer, THRESHOLD};
use image::RgbImage;

/// The smallest face box side accepted on a face photo, as a share of the
/// photo's shorter side: a smaller face is too far from the camera for a
/// reliable reference (a webcam frame's face is usually a third or more).
pub const MIN_FACE_SHARE: f32 = 0.12;

/// Why a face photo is not accepted, in words the student can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NoFace,
    SeveralFaces(usize),
    TooSmall,
}

impl Problem {
    /// A stable code for the answer and the protocol.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::NoFace => "no_face",
            Problem::SeveralFaces(_) => "several_faces",
            Problem::TooSmall => "face_too_small",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Problem::NoFace => {
                "no face was found: look straight at the camera in good light".into()
            }
            Problem::SeveralFaces(n) => {
                format!("{n} faces were found: only you may be in front of the camera")
            }
            Problem::TooSmall => "the face is too small: come closer to the camera".into(),
        }
    }
}

/// The one face of an accepted face photo.
pub struct Found {
    pub face: Face,
    pub embedding: Embedding,
}

fn embed(
    r: &Recognizer,
    image: &RgbImage,
    face: &Face,
) -> Result<Option<Embedding>, RecognizeError> {
    let crops = r.aligned(image, std::slice::from_ref(face));
    if crops.is_empty() {
        return Ok(None);
    }
    Ok(r.embed_aligned(&crops)?.pop())
}

/// Checks a face photo: the webcam detector first, the small-face one
/// when it finds nothing (a photo taken from further away), so a group
/// shows as several faces either way.
pub fn face_photo(
    r: &Recognizer,
    image: &RgbImage,
) -> Result<Result<Found, Problem>, RecognizeError> {
    let mut faces = r.detect(image, Range::Near)?;
    if faces.is_empty() {
        faces = r.detect(image, Range::Far)?;
    }
    let face = match faces.len() {
        0 => return Ok(Err(Problem::NoFace)),
        1 => faces.remove(0),
        n => return Ok(Err(Problem::SeveralFaces(n))),
    };
    let shorter = image.width().min(image.height()) as f32;
    if face.bbox.width.min(face.bbox.height) < MIN_FACE_SHARE * shorter {
        return Ok(Err(Problem::TooSmall));
    }
    match embed(r, image, &face)? {
        Some(embedding) => Ok(Ok(Found { face, embedding })),
        None => Ok(Err(Problem::NoFace)),
    }
}

/// The verdict on a liveness attempt.
pub struct LivenessOutcome {
    pub verdict: Liveness,
    /// Frames in which a face was found.
    pub faces: usize,
}

/// Checks liveness frames (capture order) against the asked `turns` and
/// the session's reference face: the turns as [`liveness::check`] wants
/// them, and every frame facing the camera the reference face's person.
/// Frames without a face (a turn too far for the detector) are left out.
pub fn liveness(
    r: &Recognizer,
    frames: &[RgbImage],
    turns: &[Turn],
    reference: &Embedding,
) -> Result<LivenessOutcome, RecognizeError> {
    let mut observations = Vec::with_capacity(frames.len());
    for frame in frames {
        if let Some(face) = r.main_face(frame)?
            && let Some(embedding) = embed(r, frame, &face)?
        {
            observations.push(Observation {
                keypoints: face.keypoints,
                embedding,
            });
        }
    }
    let faces = observations.len();
    let mut verdict = liveness::check(turns, &observations);
    let facing: Vec<f32> = observations
        .iter()
        .filter(|o| liveness::yaw(&o.keypoints).abs() <= FACING_DEGREES)
        .map(|o| o.embedding.distance(reference))
        .collect();
    let mismatch = if facing.is_empty() {
        Some("no frame shows the face straight to the camera".to_string())
    } else {
        facing
            .iter()
            .find(|d| **d > THRESHOLD)
            .map(|d| format!("the face is not the one of the face photo (distance {d:.2})"))
    };
    if let Some(reason) = mismatch {
        verdict.live = false;
        verdict.reason = Some(reason);
    }
    Ok(LivenessOutcome { verdict, faces })
}
