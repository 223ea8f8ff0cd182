//! The one error type of recognition. Messages name the input that was wrong
//! (file, dimension, limit), so a log line or a CLI message is enough to act on.

/// What can go wrong while decoding an image or running a model.
#[derive(Debug, thiserror::Error)]
pub enum RecognizeError {
    /// The bytes are not an image in a supported format (JPEG, PNG, WebP, PNM).
    #[error("not a supported image (JPEG, PNG, WebP or PNM): {0}")]
    UnsupportedFormat(String),

    /// The image declares more pixels than invigil decodes; it is refused from
    /// its header, before any pixel is decoded.
    #[error(
        "image is {width}×{height} pixels; the limit is {max_side} per side and {max_pixels} in all"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },

    /// Decoding the image would take more memory than allowed.
    #[error("decoding the image needs {needed} bytes; the limit is {limit}")]
    MemoryLimit { needed: u64, limit: u64 },

    /// The image is empty or too small to hold a face.
    #[error("image is {width}×{height} pixels; at least {min}×{min} is needed")]
    TooSmall { width: u32, height: u32, min: u32 },

    /// The image is damaged (truncated, corrupt) or exceeded the decoder's
    /// memory limit while decoding.
    #[error("image cannot be decoded: {0}")]
    Corrupt(String),

    /// Verification needs one face in each image; this one has none.
    #[error("no face found in the {which} image")]
    NoFace { which: &'static str },

    /// A model failed to load or to run. Embedded models are checked by the
    /// tests, so this points at a damaged build or a bad model file.
    #[error("model `{model}`: {message}")]
    Model {
        model: &'static str,
        message: String,
    },

    /// A machine-readable zone that is malformed or fails a check digit.
    #[error("machine-readable zone: {0}")]
    Mrz(String),

    /// The ONNX Runtime library asked for cannot be used.
    #[error("ONNX Runtime library {path}: {message}")]
    Library { path: String, message: String },

    /// The recognition queue is full; the caller should retry later.
    #[error("recognition is busy: {queued} requests are already waiting (limit {limit})")]
    Busy { queued: usize, limit: usize },

    /// Reading an input file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl RecognizeError {
    pub(crate) fn model(model: &'static str, err: impl std::fmt::Display) -> Self {
        // `{:#}` keeps the cause chain of anyhow-style errors on one line.
        RecognizeError::Model {
            model,
            message: format!("{err:#}"),
        }
    }

    /// The stable code an HTTP answer or a metric label uses for this error.
    pub fn code(&self) -> &'static str {
        match self {
            RecognizeError::UnsupportedFormat(_) => "unsupported_image",
            RecognizeError::TooLarge { .. } => "image_too_large",
            RecognizeError::MemoryLimit { .. } => "image_too_large",
            RecognizeError::TooSmall { .. } => "image_too_small",
            RecognizeError::Corrupt(_) => "corrupt_image",
            RecognizeError::NoFace { .. } => "no_face",
            RecognizeError::Model { .. } => "model_error",
            RecognizeError::Library { .. } => "model_error",
            RecognizeError::Mrz(_) => "invalid_mrz",
            RecognizeError::Busy { .. } => "busy",
            RecognizeError::Io { .. } => "io_error",
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T, E = RecognizeError> = std::result::Result<T, E>;
