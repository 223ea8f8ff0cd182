//! The inference backend seam. Detection and embedding code see only these
//! traits, so another runtime (ONNX Runtime through `ort`) can be added next
//! to the embedded tract backend without touching them.

use super::error::Result;

/// A dense f32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of `shape` over `data`; the lengths must agree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then_some(Tensor { shape, data })
    }
}

/// Which model a loaded network is; used in error messages and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// BlazeFace short range (128×128), for webcam frames.
    DetectorFront,
    /// BlazeFace full range (256×256), for small faces in photos.
    DetectorBack,
    /// MobileFaceNet, 112×112 aligned face to a 192-d embedding.
    Embedder,
    /// PP-OCRv4 DB text detection, image to text probability map.
    TextDetector,
    /// PP-OCRv4 line recognition, 48-high strip to character classes.
    TextRecognizer,
}

impl ModelKind {
    /// What the model's symbolic input sizes must be multiples of: the text
    /// detector halves its input five times and doubles it back.
    pub fn stride(self) -> usize {
        match self {
            ModelKind::TextDetector => 32,
            _ => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::DetectorFront => "blazeface-front-128",
            ModelKind::DetectorBack => "blazeface-back-256",
            ModelKind::Embedder => "mobilefacenet",
            ModelKind::TextDetector => "ppocrv4-det",
            ModelKind::TextRecognizer => "ppocrv4-rec",
        }
    }
}

/// A runtime that turns ONNX bytes into runnable networks.
pub trait Engine: Send + Sync {
    /// Short name for logs and benchmarks, e.g. `tract`.
    fn name(&self) -> &'static str;

    /// Whether one network loaded with a symbolic size runs at every size.
    /// tract cannot type graphs that compute reshape targets at run time
    /// (PP-OCR's recogniser), so such models are loaded once per fixed size.
    fn any_size(&self) -> bool {
        true
    }

    /// Loads a network. `input_shape` fixes the input's dimensions; `None` in
    /// a position leaves it symbolic (the batch of the embedder).
    fn load(
        &self,
        kind: ModelKind,
        onnx: &[u8],
        input_shape: &[Option<usize>],
    ) -> Result<Box<dyn Network>>;
}

/// A loaded network with one input and one or more outputs. Runs may happen
/// concurrently from several threads.
pub trait Network: Send + Sync {
    fn run(&self, input: Tensor) -> Result<Vec<Tensor>>;
}
