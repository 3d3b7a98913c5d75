//! The error of pose files and of the engine's other file-facing code (images, atomic writes).
//! Every message names the file and, where there is one, the field, so that a user can fix
//! the input.

#[derive(Debug, thiserror::Error)]
pub enum PoseError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: cannot write: {msg}")]
    Write { file: String, msg: String },
    #[error("{file}: malformed JSON: {msg}")]
    Json { file: String, msg: String },
    #[error("{file}: {field}: {msg}")]
    Field {
        file: String,
        field: String,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Unsupported { file: String, msg: String },
    #[error("{file}: {msg}")]
    Image { file: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

impl PoseError {
    pub(crate) fn field(file: &str, field: impl Into<String>, msg: impl Into<String>) -> Self {
        PoseError::Field {
            file: file.to_string(),
            field: field.into(),
            msg: msg.into(),
        }
    }
}
