//! ONNX Runtime behind a small surface: load the shared library once, build sessions with the configured execution
//! providers, run a batch. Nothing above this module touches `ort` types, so the scheduler and the HTTP layer stay
//! testable and a different backend would be one module.

pub mod convert;
pub mod session;

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::tensor::DataType;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library could not be loaded from '{path}': {reason}")]
    Library { path: String, reason: String },
    #[error("session: {0}")]
    Session(String),
    #[error("execution provider {provider} could not be used: {reason}")]
    Provider { provider: &'static str, reason: String },
    #[error("inference failed: {0}")]
    Run(String),
    #[error("model uses {0}, which the protocol has no datatype for")]
    UnsupportedType(String),
    #[error("input '{name}': {reason}")]
    Input { name: String, reason: String },
}

impl<R> From<ort::Error<R>> for RuntimeError {
    fn from(e: ort::Error<R>) -> Self {
        RuntimeError::Session(e.to_string())
    }
}

/// Loads `libonnxruntime.so` from `path` (or `ORT_DYLIB_PATH` when empty). Must precede every other ort call.
pub fn init(path: &Path) -> Result<(), RuntimeError> {
    let path = if path.as_os_str().is_empty() {
        std::env::var_os("ORT_DYLIB_PATH").map(Into::into).unwrap_or_default()
    } else {
        path.to_path_buf()
    };
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(RuntimeError::Library { path: shown, reason: "no such file (set ort_library / OXINFER_ORT_LIBRARY)".into() });
    }
    if ENV.get().is_some() {
        return Ok(());
    }
    let builder = ort::init_from(&path).map_err(|e| RuntimeError::Library { path: shown.clone(), reason: e.to_string() })?;
    let env = builder.with_name("oxinfer").build().map_err(|e| RuntimeError::Library { path: shown, reason: e.to_string() })?;
    let _ = ENV.set(env);
    Ok(())
}

/// The process-wide ONNX Runtime environment; sessions are created from it. Lives until the process exits.
static ENV: OnceLock<Environment> = OnceLock::new();

pub(crate) fn environment() -> Result<&'static Environment, RuntimeError> {
    ENV.get().ok_or_else(|| RuntimeError::Session("ONNX Runtime is not initialised".into()))
}

/// An input or output as the ONNX graph declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphTensor {
    pub name: String,
    pub datatype: DataType,
    /// Full shape including any batch axis; -1 for symbolic dimensions.
    pub shape: Vec<i64>,
}
