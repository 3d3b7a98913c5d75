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
    MissingTensor {
        /// The missing tensor's name.
        name: String,
        /// The shape the architecture expects for it.
        expected: Vec<usize>,
    },
    /// A tensor is in the checkpoint with the wrong shape.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape the architecture expects.
        expected: Vec<usize>,
        /// The shape stored in the checkpoint.
        found: Vec<usize>,
    },
    /// The configuration is inconsistent (e.g. head dim vs RoPE axes).
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    /// An input tensor has the wrong rank or shape.
    #[error("input `{name}` has shape {found:?}, expected {expected}")]
    BadInput {
        /// The input's name (e.g. `images`, `latents`).
        name: String,
        /// A description of the accepted shapes.
        expected: String,
        /// The shape that was given.
        found: Vec<usize>,
    },
    /// An input tensor lives on another device than the model.
    #[error("input `{name}` is on {found}, but the model is on {expected}")]
    WrongDevice {
        /// The input's name.
        name: String,
        /// The model's device.
        expected: String,
        /// The input's device.
        found: String,
    },
    /// An input tensor has another dtype than the model.
    #[error("input `{name}` has dtype {found:?}, but the model runs in {expected:?}")]
    WrongDtype {
        /// The input's name.
        name: String,
        /// The dtype the model runs in.
        expected: DType,
        /// The input's dtype.
        found: DType,
    },
    /// The dtype cannot be used on that device (e.g. bf16 on the CPU).
    #[error("dtype {dtype:?} is not supported on {device}: {reason}")]
    UnsupportedDtype {
        /// The requested dtype.
        dtype: DType,
        /// The device it was requested on.
        device: String,
        /// Why the combination is not supported.
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
    InvalidLora {
        /// The name of the LoRA set.
        name: String,
        /// What is wrong with its rank or alpha.
        reason: String,
    },
    /// The LoRA file was trained for another base model.
    #[error(
        "LoRA file {path} (set `{set}`) was made for base model config {found}, \
         but this model's config hash is {expected}"
    )]
    LoraBaseMismatch {
        /// The LoRA file, as shown to the user.
        path: String,
        /// The name of the LoRA set in the file.
        set: String,
        /// The config hash of the loaded base model.
        expected: String,
        /// The base-model config hash recorded in the LoRA file.
        found: String,
    },
    /// The LoRA file is unreadable or lacks our metadata.
    #[error("bad LoRA file {path}: {reason}")]
    BadLoraFile {
        /// The LoRA file, as shown to the user.
        path: String,
        /// Why the file cannot be used.
        reason: String,
    },
    /// A condition cache was used with another LoRA set, pooled vector or batch.
    #[error("stale condition cache: {0}")]
    StaleCache(String),
    /// File system error.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file or directory being read or written, as shown to the user.
        path: String,
        /// The underlying I/O error.
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
