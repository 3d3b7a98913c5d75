//! Models: the FLUX-architecture MM-DiT with its condition stream, LoRA sets and K/V cache.
//!
//! Entry points:
//! * [`DitConfig`] — presets (`flux-dev`, `flux-schnell`, `tiny`), JSON, [`DitConfig::hash`];
//! * [`MmDit`] — [`MmDit::load`] (BFL safetensors) / [`MmDit::new`] (any `VarBuilder`),
//!   [`MmDit::forward`], [`MmDit::build_cond_cache`] / [`MmDit::ensure_cond_cache`];
//! * [`LoraSets`] (via [`MmDit::loras_mut`]) — `add`, `set_active`, `make_trainable`,
//!   `trainable_vars`, `freeze`, `save`, `load`;
//! * [`CondCache`] — the per-layer condition K/V;
//! * [`bench::bench_dit`] — the `skeleguide bench dit` numbers.
//!
//! Typical inference (one stage, the cache rebuilt only when the stage or prompt changes):
//!
//! ```text
//! let cfg = DitConfig::preset("tiny")?;
//! let mut dit = MmDit::load("dit.safetensors", &cfg, &Device::Cpu, DType::F32)?;
//! dit.loras_mut().load("skeletal.safetensors")?;
//! dit.loras_mut().set_active(Some("skeletal"))?;
//! let mut cache = None;
//! dit.ensure_cond_cache(&mut cache, &scene_tokens, &img_ids, &y)?;
//! for each step: v = dit.forward(&DitInputs { img: &x, .. }, Condition::Cached(cache.as_ref().unwrap()), Mode::Fast)?;
//! ```
//!
//! Training: `let vars = dit.loras_mut().make_trainable("skeletal")?;` then
//! `dit.forward(&inputs, Condition::Tokens { tokens, ids }, Mode::Train)` and an optimizer over
//! `vars`. Base weights are plain (detached) tensors and never get gradients.
//!
//! Conventions: tokens are 2x2-packed latents ([`pack_latents`]); ids are `[0, row, col]`
//! ([`image_ids`]); text ids are zeros ([`text_ids`]); `timesteps` is σ in [0, 1]; the output
//! is the velocity `noise - x_data` (DESIGN.md). The condition stream is modulated from
//! timestep 0 and, for models with a guidance embedding, guidance 1 (so its K/V depend only on
//! the condition, the LoRA set and `y`).

pub mod adamw;
pub mod allreduce;
pub mod autoencoder;
pub mod bench;
pub mod bench_flux;
pub mod bench_train;
pub mod cond_cache;
pub mod config;
pub mod device;
pub mod error;
mod kernels;
pub(crate) mod layers;
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
pub use layers::max_abs_diff;
pub use lora::{LoraSet, LoraSets, LoraSpec, LoraTarget};
pub use mmdit::{
    bfl_tensor_shapes, image_ids, joint_ids, pack_latents, random_weights,
    random_weights_on_device, save_weights, text_ids, unpack_latents, Condition, DitInputs, MmDit,
    Mode,
};
pub use text::{FluxText, FluxTextOptions, TextEncoder, TextFeatures};
pub use tiny_ae::{
    train_tiny_ae, TinyAe, TinyAeConfig, TinyAeTrainMetrics, TinyAeTrainOptions, TinyAeTrainer,
};
pub use tiny_text::{TinyText, TinyTextConfig};
