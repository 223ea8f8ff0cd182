//! Which engine runs the models: ONNX Runtime when its library is there (or
//! asked for), tract otherwise.

use super::engine::Engine;
use super::error::{RecognizeError, Result};
use super::ort::{OrtEngine, PACKAGED_LIBRARY};
use super::tract::TractEngine;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// `RECOGNIZER_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// ONNX Runtime when a library is configured or installed, else tract.
    #[default]
    Auto,
    /// Always the embedded tract engine.
    Tract,
    /// ONNX Runtime; starting fails when its library cannot be loaded.
    Ort,
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Backend::Auto),
            "tract" => Ok(Backend::Tract),
            "ort" | "onnxruntime" => Ok(Backend::Ort),
            other => Err(format!("{other:?} is not one of auto, tract, ort")),
        }
    }
}

/// The ONNX Runtime library to use: `configured` (ORT_DYLIB_PATH) when set,
/// else the packaged one when it exists.
pub fn ort_library(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(p) if !p.as_os_str().is_empty() => Some(p.to_path_buf()),
        _ => {
            let packaged = Path::new(PACKAGED_LIBRARY);
            packaged.is_file().then(|| packaged.to_path_buf())
        }
    }
}

/// The engine `backend` names. `library` is ORT_DYLIB_PATH; `threads` how
/// many workers may run a network at once. A library that was asked for
/// (explicitly, or found installed) and fails to load is an error naming it,
/// never a silent fallback to the slower engine.
pub fn engine(backend: Backend, library: Option<&Path>, threads: usize) -> Result<Box<dyn Engine>> {
    match (backend, ort_library(library)) {
        (Backend::Tract, _) | (Backend::Auto, None) => Ok(Box::new(TractEngine)),
        (Backend::Ort, None) => Err(RecognizeError::Library {
            path: PACKAGED_LIBRARY.into(),
            message: "no such file (set ORT_DYLIB_PATH to where libonnxruntime.so is)".into(),
        }),
        (Backend::Auto | Backend::Ort, Some(path)) => {
            Ok(Box::new(OrtEngine::load_library(&path, threads)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse() {
        assert_eq!("auto".parse(), Ok(Backend::Auto));
        assert_eq!(" Tract ".parse(), Ok(Backend::Tract));
        assert_eq!("ort".parse(), Ok(Backend::Ort));
        let err = "cuda".parse::<Backend>().unwrap_err();
        assert!(err.contains("cuda") && err.contains("tract"), "{err}");
    }

    #[test]
    fn a_missing_library_is_an_error_naming_it() {
        let path = Path::new("/nonexistent/libonnxruntime.so");
        let err = engine(Backend::Ort, Some(path), 1).err().expect("refused");
        assert!(
            err.to_string().contains("/nonexistent/libonnxruntime.so"),
            "{err}"
        );
        // Auto with a configured path is a request too.
        let err = engine(Backend::Auto, Some(path), 1).err().expect("refused");
        assert!(matches!(err, RecognizeError::Library { .. }), "{err}");
        assert_eq!(
            engine(Backend::Tract, Some(path), 1).expect("tract").name(),
            "tract"
        );
    }
}
