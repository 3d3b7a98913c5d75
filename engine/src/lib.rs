#![warn(missing_docs)]
//! SkeleGuide engine: poses and the layout rasteriser, models, sampling and the pipeline.
//! It has no GUI; the app and the trainer reach models only through it.

pub mod composite;
pub mod error;
pub mod fsutil;
pub mod hash;
pub mod imageio;
pub mod inverter;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod modeldir;
pub mod pipeline;
pub mod pose;
pub mod sampling;
pub mod select;

pub use pose::PoseError;
