//! Training data: the synthetic human-in-scene generator and manifest data sets.

pub mod body;
pub mod coco;
pub mod manifest;
pub mod people;
pub mod prompt;
pub mod raster;
pub mod rng;
pub mod scene;
pub mod synth;

pub use manifest::{Manifest, ManifestError, Record, Sample};
pub use synth::{
    example_seed, generate_example, write_dataset, Example, Facts, Split, SynthOptions,
};

/// Errors of the data generators.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {msg}")]
    Output { path: String, msg: String },
    #[error(transparent)]
    Engine(#[from] skeleguide_engine::PoseError),
    #[error("{0}")]
    Invalid(String),
}
