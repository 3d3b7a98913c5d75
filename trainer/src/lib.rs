//! SkeleGuide trainer: synthetic data and manifest data sets, the training curriculum
//! (phases 0-3 and the ablation baselines), checkpoints and run logs.

pub mod ae;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod eval;
pub mod inverter;
pub mod log;
pub mod optim;
pub mod parallel;
pub mod phase;
pub mod phases;
