//! Errors of the model layer.

use candle_core::DType;

/// Everything that can go wrong when building, loading or running a model.
///
/// Checkpoint problems name the tensor, the expected shape and the found shape.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An error from candle itself (shape errors inside an op, allocation, ...).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("checkpoint is missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor { name: String, expected: Vec<usize> },
    /// A tensor is in the checkpoint with the wrong shape.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The configuration is inconsistent (e.g. head dim vs RoPE axes).
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    /// An input tensor has the wrong rank or shape.
    #[error("input `{name}` has shape {found:?}, expected {expected}")]
    BadInput {
        name: String,
        expected: String,
        found: Vec<usize>,
    },
    /// An input tensor lives on another device than the model.
    #[error("input `{name}` is on {found}, but the model is on {expected}")]
    WrongDevice {
        name: String,
        expected: String,
        found: String,
    },
    /// An input tensor has another dtype than the model.
    #[error("input `{name}` has dtype {found:?}, but the model runs in {expected:?}")]
    WrongDtype {
        name: String,
        expected: DType,
        found: DType,
    },
    /// The dtype cannot be used on that device (e.g. bf16 on the CPU).
    #[error("dtype {dtype:?} is not supported on {device}: {reason}")]
    UnsupportedDtype {
        dtype: DType,
        device: String,
        reason: String,
    },
    /// The requested device cannot be opened or was not compiled in.
    #[error("device unavailable: {0}")]
    DeviceUnavailable(String),
    /// No LoRA set with that name is loaded.
    #[error("no LoRA set named `{0}` is loaded")]
    UnknownLoraSet(String),
    /// A LoRA set with that name already exists.
    #[error("a LoRA set named `{0}` already exists")]
    DuplicateLoraSet(String),
    /// Invalid LoRA hyper-parameters.
    #[error("invalid LoRA set `{name}`: {reason}")]
    InvalidLora { name: String, reason: String },
    /// The LoRA file was trained for another base model.
    #[error(
        "LoRA file {path} (set `{set}`) was made for base model config {found}, \
         but this model's config hash is {expected}"
    )]
    LoraBaseMismatch {
        path: String,
        set: String,
        expected: String,
        found: String,
    },
    /// The LoRA file is unreadable or lacks our metadata.
    #[error("bad LoRA file {path}: {reason}")]
    BadLoraFile { path: String, reason: String },
    /// A condition cache was used with another LoRA set, pooled vector or batch.
    #[error("stale condition cache: {0}")]
    StaleCache(String),
    /// File system error.
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// JSON (config) error.
    #[error("config json: {0}")]
    Json(#[from] serde_json::Error),
    /// safetensors (de)serialisation error.
    #[error("safetensors: {0}")]
    Safetensors(String),
}

/// Result alias of the model layer.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
