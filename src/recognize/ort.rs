//! The fast backend: ONNX Runtime through `ort`, loaded at run time from a
//! shared library (the package ships `libonnxruntime.so`). Nothing is linked
//! at build time, so a binary without the library still runs on tract.

use super::engine::{Engine, ModelKind, Network, Tensor};
use super::error::{RecognizeError, Result};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Where the package installs ONNX Runtime.
pub const PACKAGED_LIBRARY: &str = "/usr/lib/invigil/libonnxruntime.so";

/// The library a process loaded; ONNX Runtime is loaded once per process.
static LOADED: OnceLock<PathBuf> = OnceLock::new();

/// ONNX Runtime from one shared library.
#[derive(Debug, Clone)]
pub struct OrtEngine {
    sessions: usize,
}

struct OrtNetwork {
    kind: ModelKind,
    /// A session runs one call at a time (`run` takes `&mut`); one per
    /// worker thread lets the pool's workers run in parallel.
    sessions: Vec<Mutex<Session>>,
}

impl OrtEngine {
    /// Loads ONNX Runtime from `library`. Each network gets `sessions`
    /// sessions (one per worker thread that may run it at once). Fails,
    /// naming the path, when the file is missing, is not ONNX Runtime, is
    /// too old, or when another library was already loaded.
    pub fn load_library(library: &Path, sessions: usize) -> Result<OrtEngine> {
        let error = |message: String| RecognizeError::Library {
            path: library.display().to_string(),
            message,
        };
        if let Some(loaded) = LOADED.get() {
            return if loaded == library {
                Ok(OrtEngine {
                    sessions: sessions.max(1),
                })
            } else {
                Err(error(format!(
                    "ONNX Runtime is already loaded from {}",
                    loaded.display()
                )))
            };
        }
        if !library.is_file() {
            return Err(error("no such file".into()));
        }
        // `init_from` keeps the first library it loads for the whole process.
        let builder = ort::init_from(library).map_err(|e| error(e.to_string()))?;
        builder.with_name("invigil").commit();
        let _ = LOADED.set(library.to_path_buf());
        Ok(OrtEngine {
            sessions: sessions.max(1),
        })
    }

    /// The library this process loaded, if any.
    pub fn loaded() -> Option<&'static Path> {
        LOADED.get().map(PathBuf::as_path)
    }
}

impl Engine for OrtEngine {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn load(
        &self,
        kind: ModelKind,
        onnx: &[u8],
        _input_shape: &[Option<usize>],
    ) -> Result<Box<dyn Network>> {
        let err = |e: ort::Error| RecognizeError::model(kind.name(), e);
        let sessions = (0..self.sessions)
            .map(|_| {
                // Parallelism comes from the recognition pool: one thread per
                // session keeps workers from oversubscribing the cores.
                Session::builder()
                    .map_err(err)?
                    .with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(|e| RecognizeError::model(kind.name(), e))?
                    .with_intra_threads(1)
                    .map_err(|e| RecognizeError::model(kind.name(), e))?
                    .with_inter_threads(1)
                    .map_err(|e| RecognizeError::model(kind.name(), e))?
                    .commit_from_memory(onnx)
                    .map(Mutex::new)
                    .map_err(err)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(OrtNetwork { kind, sessions }))
    }
}

impl OrtNetwork {
    /// A free session, or the first one to wait on when all are busy.
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        for s in &self.sessions {
            if let Ok(guard) = s.try_lock() {
                return guard;
            }
        }
        self.sessions[0]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Network for OrtNetwork {
    fn run(&self, input: Tensor) -> Result<Vec<Tensor>> {
        let name = self.kind.name();
        let err = |e: ort::Error| RecognizeError::model(name, e);
        let value = ort::value::Tensor::from_array((input.shape, input.data)).map_err(err)?;
        let mut session = self.session();
        let outputs = session.run(ort::inputs![value]).map_err(err)?;
        outputs
            .values()
            .map(|out| {
                let (shape, data) = out.try_extract_tensor::<f32>().map_err(err)?;
                Ok(Tensor {
                    shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                    data: data.to_vec(),
                })
            })
            .collect()
    }
}
