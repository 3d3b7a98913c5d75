//! SkeleGuide trainer: synthetic data and manifest data sets (the curriculum, checkpoints and
//! evaluation build on them).

pub mod ae;
pub mod data;
pub mod inverter;
