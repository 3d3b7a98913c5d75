//! The error of pose files and of the engine's other file-facing code (images, atomic writes).
//! Every message names the file and, where there is one, the field, so that a user can fix
//! the input.

/// Why a pose file, image or other file could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum PoseError {
    /// The file cannot be opened or read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file the error is about, as shown to the user.
        file: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be written (or encoded for writing).
    #[error("{file}: cannot write: {msg}")]
    Write {
        /// The file the error is about, as shown to the user.
        file: String,
        /// Why the write failed.
        msg: String,
    },
    /// The file is not valid JSON (empty, not UTF-8, or a syntax error).
    #[error("{file}: malformed JSON: {msg}")]
    Json {
        /// The file the error is about, as shown to the user.
        file: String,
        /// The parser's message, with a hint where one applies.
        msg: String,
    },
    /// A field of the pose JSON has a wrong type or an out-of-range value.
    #[error("{file}: {field}: {msg}")]
    Field {
        /// The file the error is about, as shown to the user.
        file: String,
        /// The path of the field within the document (e.g. `people[0].pose_keypoints_2d`).
        field: String,
        /// What is wrong with the field.
        msg: String,
    },
    /// The file is well-formed but not something that can be used (a directory, too large, an
    /// unknown layout or a canvas over the pixel limit).
    #[error("{file}: {msg}")]
    Unsupported {
        /// The file the error is about, as shown to the user.
        file: String,
        /// Why the file cannot be used.
        msg: String,
    },
    /// An image file cannot be decoded or is over the size limits.
    #[error("{file}: {msg}")]
    Image {
        /// The file the error is about, as shown to the user.
        file: String,
        /// Why the image cannot be used.
        msg: String,
    },
    /// An invalid input not tied to a file; the text is the whole message.
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
