//! Models: the FLUX-architecture MM-DiT with its condition stream, LoRA sets and K/V cache.
//!
//! Entry points:
//! * [`DitConfig`] — presets (`flux-dev`, `flux-schnell`, `tiny`), JSON, [`DitConfig::hash`];
//! * [`MmDit`] — [`MmDit::load`] / [`MmDit::new`], [`MmDit::forward`],
//!   [`MmDit::build_cond_cache`] / [`MmDit::ensure_cond_cache`];
//! * [`LoraSets`] (via [`MmDit::loras_mut`]) — `add`, `set_active`, `make_trainable`, `save`,
//!   `load`;
//! * [`CondCache`] — the per-layer condition K/V;
//! * [`bench::bench_dit`] — the `skeleguide bench dit` numbers.

pub mod autoencoder;
pub mod bench;
pub mod cond_cache;
pub mod config;
pub mod device;
pub mod error;
mod kernels;
pub mod lora;
pub mod mmdit;
pub mod text;
pub mod tiny_ae;
pub mod tiny_text;

pub use autoencoder::{Autoencoder, FluxAe, FluxAeConfig};
pub use cond_cache::{CondCache, CondKey};
pub use config::{DitConfig, PRESETS};
pub use device::{default_device, default_dtype};
pub use error::{ModelError, Result};
pub use lora::{LoraSet, LoraSets, LoraSpec, LoraTarget};
pub use mmdit::{
    bfl_tensor_shapes, image_ids, pack_latents, random_weights, save_weights, text_ids,
    unpack_latents, Condition, DitInputs, MmDit, Mode,
};
pub use text::{FluxText, FluxTextOptions, TextEncoder, TextFeatures};
pub use tiny_ae::{
    train_tiny_ae, TinyAe, TinyAeConfig, TinyAeTrainMetrics, TinyAeTrainOptions, TinyAeTrainer,
};
pub use tiny_text::{TinyText, TinyTextConfig};
