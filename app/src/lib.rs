//! The `skeleguide` app: the desktop editor (`gui`) and the command line (`cli`). Models are
//! reached only through the engine.

pub mod cli;
pub mod export;
pub mod gpu_layout;
pub mod gui;
pub mod worker;
