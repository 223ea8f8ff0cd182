//! Recognition as the server offers it: the engine chosen at start (so a
//! requested ONNX Runtime library that does not load stops the start), the
//! models loaded on first use (a server that never recognises pays nothing),
//! and the bounded [`Pool`] every job goes through.

use super::Recognizer;
use super::backend::{Backend, engine};
use super::engine::Engine;
use super::error::{RecognizeError, Result};
use super::ocr::Ocr;
use super::pool::Pool;
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub struct Service {
    engine: Box<dyn Engine>,
    threads: usize,
    queue: usize,
    pool: OnceLock<std::result::Result<Pool, String>>,
    ocr: OnceLock<std::result::Result<Ocr, String>>,
}

impl Service {
    /// `threads` workers, at most `queue` jobs running or waiting.
    pub fn new(
        backend: Backend,
        library: Option<&Path>,
        threads: usize,
        queue: usize,
    ) -> Result<Self> {
        Ok(Service {
            engine: engine(backend, library, threads)?,
            threads: threads.max(1),
            queue: queue.max(1),
            pool: OnceLock::new(),
            ocr: OnceLock::new(),
        })
    }

    /// Name of the engine, for logs and the start record.
    pub fn engine(&self) -> &'static str {
        self.engine.name()
    }

    /// The pool, loading the models on the first call (blocking: call it
    /// off the async threads).
    pub fn pool(&self) -> Result<&Pool> {
        self.pool
            .get_or_init(|| {
                let recognizer =
                    Recognizer::with_engine(self.engine.as_ref()).map_err(|e| e.to_string())?;
                Pool::new(Arc::new(recognizer), self.threads, self.queue).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| RecognizeError::Model {
                model: "recognizer",
                message: message.clone(),
            })
    }

    /// The OCR models for documents, loaded on the first call (blocking).
    pub fn ocr(&self) -> Result<&Ocr> {
        self.ocr
            .get_or_init(|| Ocr::with_engine(self.engine.as_ref()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|message| RecognizeError::Model {
                model: "ocr",
                message: message.clone(),
            })
    }
}
