//! The `skeleguide` app: the desktop editor (`gui`) and the command line (`cli`). Models are
//! reached only through the engine.

pub mod cli;
pub mod export;
pub mod gpu_layout;
pub mod gui;
pub mod pose_library;
pub mod worker;

use std::path::PathBuf;

/// Environment variable naming the default model directory.
pub const MODEL_ENV: &str = "SKELEGUIDE_MODEL";

/// The model used when none is given: `$SKELEGUIDE_MODEL`, else the tiny model shipped in the
/// repository (`assets/models/tiny`, found from where this binary was built). `None` when
/// neither exists.
pub fn default_model_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(MODEL_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/models/tiny");
    shipped
        .join("config.json")
        .is_file()
        .then(|| shipped.canonicalize().unwrap_or(shipped))
}
