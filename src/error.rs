//! The library's one error type: every variant names what the user gave and how to fix it.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between a `--model` string and a written file.
///
/// Each message is meant to be printed as-is on one line of stderr, so it says
/// what was wrong *and* what would fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("model {model:?}: {message}")]
    ModelSource { model: String, message: String },

    #[error("{path}: {message}")]
    ModelFile { path: PathBuf, message: String },

    #[error("model_type {found:?} is not supported (in {path}); supported: {supported}")]
    UnsupportedArchitecture { found: String, path: PathBuf, supported: String },

    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("{0}")]
    Input(String),

    #[error("layer {layer} is out of range: this model has layers 0-{max} ({count} layers)", max = .count - 1)]
    LayerOutOfRange { layer: usize, count: usize },

    #[error("head {head} is out of range: this model has heads 0-{max} ({count} heads per layer)", max = .count - 1)]
    HeadOutOfRange { head: usize, count: usize },

    #[error("layer {layer}, head {head}: attention is not finite (query {query}, key {key} = {value}); the weights produce NaN/inf, so the map is not drawn")]
    NonFinite { layer: usize, head: usize, query: usize, key: usize, value: f32 },

    #[error("{path}: {message}")]
    Output { path: PathBuf, message: String },

    #[error("model computation failed: {}; this is a bug or an unsupported model layout, please report it with the model id", first_line(.0))]
    Compute(#[from] candle_core::Error),

    #[error("rendering failed: {0}")]
    Render(#[from] crate::render::RenderError),
}

impl Error {
    pub(crate) fn model_file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::ModelFile { path: path.into(), message: message.to_string() }
    }

    pub(crate) fn output(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Output { path: path.into(), message: message.to_string() }
    }

    pub(crate) fn source(model: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::ModelSource { model: model.into(), message: message.to_string() }
    }
}

/// candle errors may carry a multi-line backtrace (RUST_BACKTRACE); users get one line.
pub(crate) fn first_line(error: &impl std::fmt::Display) -> String {
    error.to_string().lines().next().unwrap_or_default().trim().to_string()
}

thread_local! {
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run third-party parsing that may panic on malformed input (candle's GGUF
/// reader does on some corrupt headers) and turn a panic into `None`.
pub(crate) fn contain_panics<T>(f: impl FnOnce() -> T) -> Option<T> {
    CONTAINED.with(|c| c.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    CONTAINED.with(|c| c.set(false));
    result
}

/// Whether a panic now is one [`contain_panics`] will report as an error (the
/// binary's panic hook then stays quiet).
pub fn panic_is_contained() -> bool {
    CONTAINED.with(|c| c.get())
}
